"""Expressions over datasets of a remote root: only the chunks a read needs travel.

Real processes: RabbitMQ, a publisher, and a subscriber with logins following it.
"""

from __future__ import annotations

import uuid

import blosc2
import httpx
import numpy as np
import pytest

import caterva2 as cat2

from .broker_support import RUN
from .http_helpers import unique
from .services import PublisherProcess, SubscriberProcess
from .test_compute_lazyexpr import upload_array
from .test_pubsub import delete_queue, follow, remote_shape, wait_for, write_array

SHAPE = (100, 120)
A_CHUNKS, B_CHUNKS = (10, 30), (25, 40)  # grids of 10 x 4 and 4 x 3 chunks


def a_values(scale: int = 1) -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) * scale


def b_values() -> np.ndarray:
    return np.linspace(-1, 1, np.prod(SHAPE)).reshape(SHAPE)


@pytest.fixture(scope="module")
def remote(tmp_path_factory, broker_url):
    """(publisher, subscriber): the publisher's root holds a.b2nd and b.b2nd."""
    base = tmp_path_factory.mktemp("remote-compute")
    name = f"compute-{RUN}-{uuid.uuid4().hex[:4]}"
    rootdir = base / name
    rootdir.mkdir()
    write_array(rootdir / "a.b2nd", a_values(), chunks=A_CHUNKS)
    write_array(rootdir / "b.b2nd", b_values(), chunks=B_CHUNKS)
    pub = PublisherProcess(name, rootdir, base / f"pub-{name}", broker_url).start()
    sub_id = f"test-{RUN}-{uuid.uuid4().hex[:6]}"
    statedir = base / f"sub-{sub_id}"
    statedir.mkdir()
    sub = SubscriberProcess(statedir, conf={"login": True, "id": sub_id}, broker_url=broker_url)
    sub.add_user(*sub.user)
    try:
        sub.start()
        follow(sub, pub.name, user=sub.user)
        for ds in ("a.b2nd", "b.b2nd"):
            wait_for(lambda d=ds: remote_shape(sub, f"{pub.name}/{d}") == SHAPE, f"{ds} listed")
        yield pub, sub
    finally:
        sub.stop()
        pub.stop()
        delete_queue(broker_url, sub_id)


def reset_stats(pub: PublisherProcess) -> None:
    httpx.delete(f"{pub.url}/api/stats").raise_for_status()


def test_expression_over_two_remote_datasets_transfers_only_the_chunks_of_the_slice(remote):
    pub, sub = remote
    reset_stats(pub)
    with cat2.Client(sub.urlbase, sub.user) as client:
        path = client.lazyexpr(
            unique("remote"), "a + b * 2", {"a": f"{pub.name}/a.b2nd", "b": f"{pub.name}/b.b2nd"}
        )
        assert client.get_info(path)["shape"] == list(SHAPE)
        assert pub.chunk_transfers("a.b2nd") == {} and pub.chunk_transfers("b.b2nd") == {}
        got = client.get(path)[12:18, 35:50]
        np.testing.assert_allclose(got, (a_values() + b_values() * 2)[12:18, 35:50])
        # a: row chunk 1, column chunk 1 → chunk 5; b: row chunk 0, column chunks 0 and 1.
        assert pub.chunk_transfers("a.b2nd") == {5: 1}
        assert pub.chunk_transfers("b.b2nd") == {0: 1, 1: 1}
        # Read again: everything comes from the cache.
        np.testing.assert_allclose(client.get(path)[12:18, 35:50], got)
        assert pub.chunk_transfers("a.b2nd") == {5: 1}
        assert pub.chunk_transfers("b.b2nd") == {0: 1, 1: 1}


def test_chunk_of_remote_expression_transfers_only_what_it_covers(remote):
    pub, sub = remote
    reset_stats(pub)
    with cat2.Client(sub.urlbase, sub.user) as client:
        path = client.lazyexpr(unique("rchunk"), "a * 3", {"a": f"{pub.name}/a.b2nd"})
        nchunk = 38  # row chunk 9, column chunk 2
        got = np.frombuffer(blosc2.decompress2(client.get_chunk(path, nchunk)), np.float64)
        np.testing.assert_array_equal(got.reshape(A_CHUNKS), (a_values() * 3)[90:100, 60:90])
        assert pub.chunk_transfers("a.b2nd") == {nchunk: 1}


def test_expression_mixing_remote_and_local_operands_equals_numpy(remote):
    pub, sub = remote
    local = np.ones(SHAPE) * 7
    with cat2.Client(sub.urlbase, sub.user) as client:
        operand = upload_array(client, local, chunks=(50, 50))
        path = client.lazyexpr(
            unique("mixed"), "b * l - 1", {"b": f"{pub.name}/b.b2nd", "l": operand}
        )
        np.testing.assert_allclose(
            client.fetch(path, (slice(0, 100), 110)), (b_values() * local - 1)[:, 110]
        )


def test_publisher_side_change_shows_in_the_next_read_of_a_lazy_expression(remote):
    pub, sub = remote
    with cat2.Client(sub.urlbase, sub.user) as client:
        path = client.lazyexpr(unique("follow"), "a - 1", {"a": f"{pub.name}/a.b2nd"})
        np.testing.assert_allclose(
            client.fetch(path, (slice(0, 3), slice(0, 3))), (a_values() - 1)[:3, :3]
        )
        write_array(pub.rootdir / "a.b2nd", a_values(scale=-2), chunks=A_CHUNKS)
        expected = (a_values(scale=-2) - 1)[:3, :3]
        wait_for(
            lambda: np.allclose(client.fetch(path, (slice(0, 3), slice(0, 3))), expected),
            "the new values of a in the expression",
        )
        write_array(pub.rootdir / "a.b2nd", a_values(), chunks=A_CHUNKS)  # as the others expect
        wait_for(
            lambda: np.allclose(
                client.fetch(path, (slice(0, 3), slice(0, 3))), (a_values() - 1)[:3, :3]
            ),
            "a restored",
        )


def test_remote_operand_that_does_not_exist_is_400(remote):
    pub, sub = remote
    with cat2.Client(sub.urlbase, sub.user) as client:
        with pytest.raises(httpx.HTTPStatusError) as info:
            client.lazyexpr(unique("nope"), "z + 1", {"z": f"{pub.name}/nothere.b2nd"})
        assert info.value.response.status_code == 400
        assert "operands not found" in info.value.response.json()["detail"]
