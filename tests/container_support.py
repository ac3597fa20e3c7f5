"""Container files written by blosc2 for the container tests, local and remote alike.

A TreeStore `.b2z` and a DictStore `.b2z`, each with a big leaf stored in the
zip and small leaves that blosc2 packs into `embed.b2e` (`threshold`), plus the
values every leaf must read back as.
"""

from __future__ import annotations

import os
from pathlib import Path

import blosc2
import numpy as np

BIG = np.arange(300 * 400, dtype=np.float64).reshape(300, 400)
SMALL = np.arange(10, dtype=np.int32)
CUBE = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
TREE_LEAVES = ["a/b/cube", "a/big", "a/small", "top"]
B2Z_LEAVES = {
    "tree big (external)": ("dir/tree.b2z/a/big", BIG),
    "tree small (embedded)": ("dir/tree.b2z/a/small", SMALL),
    "tree nested": ("dir/tree.b2z/a/b/cube", CUBE),
    "dict big": ("dir/dict.b2z/q/r", BIG),
    "dict small": ("dir/dict.b2z/p", SMALL),
}
"""Test id → (path below the root, the leaf's values), for `write_stores(root / "dir")`."""
B2Z_LISTINGS = [
    ("dir/tree.b2z", TREE_LEAVES),
    ("dir/tree.b2z/a", ["b/cube", "big", "small"]),
    ("dir/tree.b2z/a/b", ["cube"]),
    ("dir/tree.b2z/a/small", ["small"]),
    ("dir/dict.b2z", ["p", "q/r"]),
]
"""(a container, inner group or leaf below the root, what `/api/list` of it answers)."""


def write_tree(path: Path, big: np.ndarray = BIG) -> None:
    """A TreeStore at `path` (swapped in whole): big leaves in the zip, small ones embedded."""
    tmp = path.with_name("tmp-" + path.name)
    # threshold: leaves under 1000 bytes are packed into the store's embed.b2e.
    with blosc2.TreeStore(str(tmp), mode="w", threshold=1000) as tree:
        tree["/a/big"] = blosc2.asarray(big, chunks=(100, 100), blocks=(20, 50))
        tree["/a/small"] = SMALL
        tree["/a/b/cube"] = CUBE
        tree["/top"] = np.arange(5.0)
    os.replace(tmp, path)


def write_stores(folder: Path) -> None:
    """`tree.b2z` and `dict.b2z` in `folder` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tree(folder / "tree.b2z")
    with blosc2.DictStore(str(folder / "dict.b2z"), mode="w", threshold=1000) as store:
        store["/p"] = SMALL
        store["/q/r"] = blosc2.asarray(BIG, chunks=(150, 400))
