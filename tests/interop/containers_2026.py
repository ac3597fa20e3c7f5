"""Run by tests/test_containers.py with the python of a caterva2 2026.9.2 venv.

Browses a TreeStore `.b2z` and an HDF5 file through that release's own client
and prints what it saw as JSON; it imports only that venv's packages.
"""

from __future__ import annotations

import json
import sys

import caterva2 as cat2


def main(url: str) -> None:
    client = cat2.Client(url)
    public = client.get("@public")
    tree = public["dir/tree.b2z"]
    h5 = client.get("@public/dir/data.h5")
    got = {
        "version": cat2.__version__,
        "tree_type": type(tree).__name__,
        "tree_leaves": list(tree),
        "tree_len": len(tree),
        "has_small": "a/small" in tree,
        "inner_type": type(tree["a"]).__name__,
        "inner_leaves": list(tree["a"]),
        "small": tree["a/small"][:].tolist(),
        "big_box": tree["a/big"][5:9, 10:20].tolist(),
        "cube_row": tree["a"]["b/cube"][1].tolist(),
        "h5_type": type(h5).__name__,
        "h5_leaves": list(h5),
        "h5_big_box": h5["grp/big"][100:103, 7:11].tolist(),
        "h5_cube": h5["grp"]["sub/cube"][:].tolist(),
    }
    print(json.dumps(got))


if __name__ == "__main__":
    main(sys.argv[1])
