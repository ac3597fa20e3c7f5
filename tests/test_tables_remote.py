"""A table (CTable `.b2z`) in a publisher's root, read through a subscriber: what works today.

A real publisher served from a thread, a subscriber following it: the table is
listed and downloads whole (its bytes, as the publisher stores them), while a
filter or sort is refused with a message saying why (remote tables are not queried yet).
"""

from __future__ import annotations

import blosc2
import httpx
import numpy as np

import caterva2 as cat2
from caterva2.subscriber.app import create_subscriber
from caterva2.subscriber.settings import SubscriberSettings
from caterva2.tables import as_records

from .app_support import served
from .inprocess_publisher import ROOT, running_publisher, subscriber
from .table_support import table_values, write_table


def test_a_remote_table_is_listed_downloads_whole_and_refuses_a_sort_clearly(tmp_path):
    values = table_values(300, seed=2)
    with running_publisher(tmp_path) as publisher:
        write_table(publisher.file.parent / "t.b2z", values)
        remote = subscriber(tmp_path / "sub", publisher, None)
        app = create_subscriber(
            SubscriberSettings(statedir=tmp_path / "sub", login=False), lambda _s: remote
        )
        try:
            with served(app.app) as base, cat2.Client(base) as client:
                assert "t.b2z" in client.get_list(ROOT)
                local = client.download(f"{ROOT}/t.b2z", tmp_path / "copy.b2z")
                url = f"{base}/api/fetch/{ROOT}/t.b2z"
                refused = [
                    httpx.get(url, params={"sort_by": "b"}),
                    httpx.get(url, params={"filter": "a > 1"}),
                ]
            np.testing.assert_array_equal(as_records(blosc2.open(str(local), mode="r")), values)
            for answer in refused:
                assert answer.status_code == 400
                assert "remote root" in answer.json()["detail"]
        finally:
            app.close()
