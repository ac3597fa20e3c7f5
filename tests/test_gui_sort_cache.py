"""The GUI's cache of sorted rows never shows one user the rows of another's @personal."""

from __future__ import annotations

import os

import blosc2
import numpy as np

from .app_support import SUPERUSER, USER, in_process_subscriber


def test_sorted_rows_of_a_personal_dataset_stay_with_their_owner(tmp_path):
    app = in_process_subscriber(tmp_path)
    try:
        dtype = np.dtype([("x", "<i4")])
        for who, first in ((SUPERUSER, 1000), (USER, 2000)):
            user = app.store.get_user_by_email(who[0])
            folder = app.subscriber.roots.personal_dir(user)
            folder.mkdir(parents=True, exist_ok=True)
            rows = np.array([(first + i,) for i in range(5)], dtype=dtype)
            path = folder / "t.b2nd"
            blosc2.asarray(rows, urlpath=str(path), mode="w")
            os.utime(path, ns=(1_700_000_000_000_000_000,) * 2)  # same size, same time
        pages = {}
        for who in (SUPERUSER, USER):
            resp = app.client.simulate_get(
                "/roots/@personal/t.b2nd",
                query_string="view=data&sort=x&desc=1",
                headers=app.cookie(who),
            )
            assert resp.status_code == 200
            pages[who] = resp.text
        assert "1004" in pages[SUPERUSER] and "2004" not in pages[SUPERUSER]
        assert "2004" in pages[USER] and "1004" not in pages[USER]
    finally:
        app.subscriber.close()
