"""A container (TreeStore `.b2z`) in a publisher's root, over a real RabbitMQ to a subscriber.

Real `cat2pub` and `cat2sub` processes: the container's leaves are announced when
it appears, announced again (new values seen) when it is replaced, and gone with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import blosc2
import httpx
import numpy as np

import caterva2 as cat2

from .services import wait_for
from .test_pubsub import follow, lab, listing

__all__ = ["lab"]  # the fixture, used by the tests below


def write_tree(path: Path, scale: int) -> None:
    """A TreeStore written aside (a hidden name is never announced), then renamed into place."""
    tmp = path.with_name(f".tmp-{path.name}")  # ends in .b2z: blosc2 writes a zip
    with blosc2.TreeStore(str(tmp), mode="w", threshold=1000) as tree:
        tree["/a/big"] = blosc2.asarray(np.arange(2000) * scale, chunks=(500,), blocks=(100,))
        tree["/a/small"] = np.arange(5) * scale
    os.replace(tmp, path)


def leaf_values(base: str, path: str) -> np.ndarray | None:
    with cat2.Client(base) as client:
        try:
            return client.get(path)[:]
        except Exception:
            return None


def test_a_container_is_announced_as_its_leaves_changed_and_removed(lab):
    pub = lab.publisher("tree")
    sub = lab.subscriber()
    follow(sub, pub.name)
    write_tree(pub.rootdir / "tree.b2z", 1)
    wait_for(lambda: listing(sub, pub.name) == ["tree.b2z"], "the container's announcement")
    group = httpx.get(f"{sub.urlbase}/api/info/{pub.name}/tree.b2z").json()
    assert group["kind"] == "group" and group["nfiles"] == 2
    assert httpx.get(f"{sub.urlbase}/api/list/{pub.name}/tree.b2z").json() == ["a/big", "a/small"]
    big = f"{pub.name}/tree.b2z/a/big"
    np.testing.assert_array_equal(leaf_values(sub.urlbase, big), np.arange(2000))

    write_tree(pub.rootdir / "tree.b2z", 3)
    wait_for(
        lambda: np.array_equal(leaf_values(sub.urlbase, big), np.arange(2000) * 3), "new values"
    )
    small = leaf_values(sub.urlbase, f"{pub.name}/tree.b2z/a/small")
    np.testing.assert_array_equal(small, np.arange(5) * 3)

    (pub.rootdir / "tree.b2z").unlink()
    wait_for(lambda: listing(sub, pub.name) == [], "the container's removal")
    assert httpx.get(f"{sub.urlbase}/api/info/{big}").status_code == 404
