"""The quota's usage: one walk of the state now and then, each write charged as it goes in place."""

from __future__ import annotations

import io

import blosc2
import numpy as np
import pytest

from caterva2.common.errors import BadRequest
from caterva2.subscriber.file_ops import FileOps
from caterva2.subscriber.local_roots import LocalRoots
from caterva2.subscriber.quota_ledger import UsageLedger
from caterva2.subscriber.store import User


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_ledger_walks_when_stale_or_told_and_adds_changes_in_between():
    sizes = iter([1000, 5000, 7000])
    clock = Clock()
    ledger = UsageLedger(lambda: next(sizes), fresh_for=5.0, clock=clock)
    ledger.changed(50)  # before any walk: nothing to move, the first ask walks
    assert ledger.used() == 1000 and ledger.walks == 1
    ledger.changed(300)
    ledger.changed(-100)
    clock.now += 4.9
    assert ledger.used() == 1200 and ledger.walks == 1
    clock.now += 0.1  # stale: walked again, what was added is in the walk
    assert ledger.used() == 5000 and ledger.walks == 2
    ledger.forget()
    assert ledger.used() == 7000 and ledger.walks == 3


def frame(n: int, seed: int) -> bytes:
    """An incompressible array as a Blosc2 frame (stored as it comes)."""
    return blosc2.asarray(np.random.default_rng(seed).random(n)).to_cframe()


WRITER = User("0" * 32, "writer@example.com", "-", True, False, True)


def upload(ops: FileOps, name: str, data: bytes) -> None:
    ops.upload(f"@public/{name}", name, io.BytesIO(data), WRITER)


def test_uploads_are_charged_as_they_go_in_place_and_removals_free_at_once(tmp_path):
    roots = LocalRoots(tmp_path, login=True)
    data = frame(2000, 1)
    ops = FileOps(roots, quota=roots.disk_usage(with_tmp=False) + 5 * len(data) + 100)
    for i in range(5):
        upload(ops, f"a{i}.b2nd", data)
    with pytest.raises(BadRequest, match="quota limit has been exceeded"):
        upload(ops, "a5.b2nd", data)
    assert ops.usage.walks == 1  # six writes, one walk
    assert ops.usage.used() == roots.disk_usage(with_tmp=False)

    # Replacing a file is charged the difference only: the same size fits.
    upload(ops, "a0.b2nd", frame(2000, 2))
    # A smaller replacement makes room that the next write may take.
    upload(ops, "a1.b2nd", frame(1000, 3))
    upload(ops, "small.b2nd", frame(500, 4))
    assert ops.usage.walks == 1
    assert ops.usage.used() == roots.disk_usage(with_tmp=False)

    ops.remove("@public/a2.b2nd", WRITER)  # freed at once: the next ask walks
    upload(ops, "a5.b2nd", data)
    assert ops.usage.walks == 2
    assert ops.usage.used() == roots.disk_usage(with_tmp=False)
    assert not list(roots.tmpdir.iterdir())


def test_files_added_behind_its_back_are_counted_at_the_next_walk(tmp_path):
    roots = LocalRoots(tmp_path, login=True)
    data = frame(2000, 5)
    ops = FileOps(roots, quota=roots.disk_usage(with_tmp=False) + 3 * len(data) + 100)
    ops.usage.fresh_for = 0.0  # every ask walks, as after `fresh_for` seconds
    upload(ops, "a.b2nd", data)
    (roots.statedir / "public" / "dropped.b2nd").write_bytes(data + data)
    with pytest.raises(BadRequest, match="quota limit has been exceeded"):
        upload(ops, "b.b2nd", data)
