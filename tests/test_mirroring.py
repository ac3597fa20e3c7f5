"""The mirror loop: fetches every chunk once, then sleeps, making no reads until a change.

In-process, against a real publisher app on 127.0.0.1 (`inprocess_publisher`).
"""

from __future__ import annotations

import numpy as np
import pytest

from caterva2.common.config import ConfigError
from caterva2.subscriber.mirroring import MirrorLoop
from caterva2.subscriber.settings import build_settings, cache_quotas

from .inprocess_publisher import ROOT, ROWS, read_row, running_publisher, subscriber, write_rows
from .services import wait_for


@pytest.fixture
def publisher(tmp_path):
    with running_publisher(tmp_path) as running:
        yield running


def test_a_complete_mirror_reads_no_more_chunks_until_a_change_arrives(tmp_path, publisher):
    remote = subscriber(tmp_path / "sub", publisher, budget=None, mirror=True)
    loop = MirrorLoop(remote, rate=0).start()
    try:
        wait_for(lambda: loop.sleeping.is_set(), "the mirror to finish and sleep")
        assert publisher.stats.chunks == {("a.b2nd", n): 1 for n in range(ROWS)}
        passes = loop.passes
        assert remote.mirror_complete(ROOT)

        # Asleep: reads by users (all hits) neither wake it nor reach the publisher.
        np.testing.assert_array_equal(read_row(remote, 7), publisher.data[7])
        assert loop.sleeping.is_set() and loop.passes == passes
        assert sum(publisher.stats.chunks.values()) == ROWS

        # A new version arrives (the resync a heartbeat with a new root etag starts).
        data = write_rows(publisher.file, seed=17)
        remote.sync(ROOT)
        wait_for(
            lambda: all(publisher.transfers(n) == 2 for n in range(ROWS)),
            "the new version mirrored",
        )
        wait_for(lambda: loop.sleeping.is_set(), "the mirror to sleep again")
        assert sum(publisher.stats.chunks.values()) == 2 * ROWS
        np.testing.assert_array_equal(read_row(remote, 7), data[7])
    finally:
        loop.close()
        remote.close()


def test_mirrored_chunks_are_pinned_outside_the_budget(tmp_path, publisher):
    remote = subscriber(tmp_path / "sub", publisher, budget=1024 * 1024, mirror=True)
    loop = MirrorLoop(remote, rate=0).start()
    try:
        wait_for(lambda: loop.sleeping.is_set(), "the mirror to finish and sleep")
        usage = remote.cache.budget.usage(ROOT)
        assert usage["pinned"] and usage["evictions"] == 0
        assert usage["bytes"] > 1024 * 1024
        assert sum(publisher.stats.chunks.values()) == ROWS
    finally:
        loop.close()
        remote.close()


def test_mirror_rate_and_cache_size_come_from_the_subscriber_section():
    settings = build_settings({"mirror_rate": 50, "cache_size": "4M"}, {})
    assert settings.mirror_rate == 50.0 and settings.cache_size == 4 * 1024**2
    assert build_settings({}, {}).mirror_rate == 200.0
    with pytest.raises(ConfigError, match="mirror_rate must not be negative"):
        build_settings({"mirror_rate": -1}, {})
    with pytest.raises(ConfigError, match="mirror_rate must be a number"):
        build_settings({"mirror_rate": "fast"}, {})
    with pytest.raises(ConfigError, match="invalid size"):
        build_settings({"cache_size": "lots"}, {})


def test_cache_quotas_table_names_roots_and_sizes():
    assert cache_quotas({"foo": "10G", "bar": 1024}) == {"foo": 10 * 1024**3, "bar": 1024}
    with pytest.raises(ConfigError, match="must be a table"):
        cache_quotas(["foo"])
    with pytest.raises(ConfigError, match=r"\[cache_quotas\]"):
        cache_quotas({"../x": "1G"})
    with pytest.raises(ConfigError, match="invalid size"):
        cache_quotas({"foo": "huge"})
    with pytest.raises(ConfigError, match="above 0"):
        cache_quotas({"foo": 0})


def test_mirror_pace_obeys_the_stricter_of_chunks_and_bytes_per_second():
    from caterva2.subscriber.remote_roots import mirror_pause

    meta = {"shape": [100], "schunk": {"chunksize": 1_000_000, "nchunks": 4}}
    assert mirror_pause(meta, 0, 0) == 0
    assert mirror_pause(meta, 10, 0) == 0.1
    assert mirror_pause(meta, 0, 2_000_000) == 0.5
    assert mirror_pause(meta, 10, 2_000_000) == 0.5  # bytes are the stricter limit here
    assert mirror_pause(meta, 1, 2_000_000) == 1.0  # and chunks here


def test_mirror_bandwidth_is_a_size_per_second_in_the_settings():
    from caterva2.common.config import ConfigError
    from caterva2.subscriber.settings import build_settings

    assert build_settings({"mirror_bandwidth": "20M"}, {}).mirror_bandwidth == 20 * 1024**2
    assert build_settings({}, {}).mirror_bandwidth == 0
    with pytest.raises(ConfigError):
        build_settings({"mirror_bandwidth": "fast"}, {})
