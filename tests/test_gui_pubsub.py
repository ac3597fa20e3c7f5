"""The web GUI over a real followed root: publisher, RabbitMQ and subscriber, seen in Chromium."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import blosc2
import numpy as np
import pika

from caterva2.broker import topology
from caterva2.broker.connection import parameters

from .broker_support import RUN
from .gui_support import LAPTOP, chromium, shot, table_cell, wait_until
from .services import PublisherProcess, SubscriberProcess


def write_array(path: Path, values) -> None:
    """Write a dataset as another program would: aside, then renamed into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    blosc2.asarray(np.asarray(values), urlpath=str(tmp), mode="w")
    tmp.rename(path)


def test_a_followed_root_refreshes_its_pages(broker_url, tmp_path):
    name = f"gui-{RUN}-{uuid.uuid4().hex[:4]}"
    rootdir = tmp_path / name
    rootdir.mkdir()
    write_array(rootdir / "first.b2nd", np.arange(10))
    pub = PublisherProcess(name, rootdir, tmp_path / "pub", broker_url)
    sub_id = f"test-{RUN}-{uuid.uuid4().hex[:6]}"
    (tmp_path / "sub").mkdir()
    sub = SubscriberProcess(
        tmp_path / "sub", conf={"login": False, "id": sub_id}, broker_url=broker_url
    )
    stack = contextlib.ExitStack()
    browser = stack.enter_context(chromium())
    context = browser.new_context(viewport=LAPTOP)
    tab = context.new_page()
    # Waits for conditions, long enough for a loaded machine (the suite runs three
    # workers on two cores; following the root once took over 20 s there).
    tab.set_default_timeout(60_000)
    try:
        pub.start()
        sub.start()
        base = sub.urlbase
        # The roots page shows the publisher's root once announced, without a reload.
        tab.goto(f"{base}/")
        tab.wait_for_selector(f"[data-subscribe='{name}']")
        shot(tab, "remote-roots")
        tab.click(f"[data-subscribe='{name}']")
        tab.wait_for_selector(f"[data-path='{name}/first.b2nd']")
        assert "Now following" in tab.inner_text("#flash")

        # A dataset created at the publisher appears in the open folder page.
        write_array(rootdir / "second.b2nd", np.arange(4))
        tab.wait_for_selector(f"[data-path='{name}/second.b2nd']")

        # An open dataset page shows new values when the dataset changes at the publisher.
        tab.goto(f"{base}/roots/{name}/first.b2nd")
        assert table_cell(tab, 3, 0) == "3"
        write_array(rootdir / "first.b2nd", np.arange(10) * 3)
        wait_until(
            tab,
            "() => document.querySelector('#data-table tbody tr:nth-child(4) td')"
            "?.textContent === '9'",
            timeout=60,
        )
        shot(tab, "remote-dataset")
    finally:
        context.close()
        stack.close()
        sub.stop()
        pub.stop()
        conn = pika.BlockingConnection(parameters(broker_url, "caterva2-tests-cleanup"))
        conn.channel().queue_delete(topology.subscriber_queue(sub_id))
        conn.close()
