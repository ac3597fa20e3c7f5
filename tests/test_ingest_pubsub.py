"""An array published by chunked ingestion into a publisher's root propagates like any change.

The ingesting subscriber runs in this process; a real `cat2pub` process watches
its `@public` directory (`statedir/public`) and announces over the local
RabbitMQ; a second subscriber (a real `cat2sub` process) follows that root.
Staging lives outside the watched directory, so the publisher never sees, nor
announces, a partial array: only the one complete file `publish` moves in.
"""

from __future__ import annotations

import uuid

import blosc2
import numpy as np

from .app_support import in_process_subscriber, served
from .broker_support import RUN
from .services import PublisherProcess, wait_for
from .test_chunked_ingestion import NCHUNKS, SOURCE, chunk_of, lay_out, writer
from .test_pubsub import ChangeSpy, Lab, fetch, follow, listing, remote_shape


def test_a_published_array_reaches_a_following_subscriber_and_a_partial_one_never(
    tmp_path, broker_url
):
    ingesting = in_process_subscriber(tmp_path / "ingest")
    name = f"ingest-{RUN}-{uuid.uuid4().hex[:4]}"
    publisher = PublisherProcess(
        name, tmp_path / "ingest" / "public", tmp_path / "pub", broker_url, heartbeat=1.0
    )
    lab = Lab(tmp_path, broker_url)
    lab.processes.append(publisher)
    spy = None
    try:
        publisher.start()
        follower = lab.subscriber()
        follow(follower, name)
        spy = ChangeSpy(broker_url, name)
        with served(ingesting.subscriber.app) as base, writer(base) as client:
            array = lay_out(client)
            for n in range(NCHUNKS):
                array.fill_chunk(n, chunk_of(SOURCE, n))
            # A change after the fill: once it is routed, the publisher has gone past
            # everything the fill did to the disk, and announced none of it.
            marker = client.lay_out("@public/marker.b2nd", (4,), np.int8, chunks=(4,), blocks=(4,))
            marker.fill_chunk(0, blosc2.compress2(np.arange(4, dtype=np.int8), typesize=1))
            marker.publish()
            wait_for(lambda: "marker.b2nd" in spy.routed(), "the marker announced")
            assert [p for p in spy.routed() if "run" in p] == []
            assert "run.b2nd" not in listing(follower, name)

            client.publish("@public/run.b2nd")
            path = f"{name}/run.b2nd"
            wait_for(lambda: remote_shape(follower, path) == SOURCE.shape, "the published array")
            np.testing.assert_array_equal(fetch(follower, path), SOURCE)
            assert set(spy.routed()) == {"marker.b2nd", "run.b2nd"}
    finally:
        if spy is not None:
            spy.close()
        lab.close()
        ingesting.subscriber.close()
