"""Run by tests/test_containers_remote.py with the python of a caterva2 2026.9.2 venv.

Browses the containers of a subscriber's remote root (`<root>/dir/tree.b2z`,
`<root>/dir/dict.b2z`) through that release's own client and prints what it saw
as JSON; it imports only that venv's packages.
"""

from __future__ import annotations

import json
import sys

import caterva2 as cat2


def main(url: str, root: str) -> None:
    client = cat2.Client(url)
    tree = client.get(root)["dir/tree.b2z"]
    store = client.get(f"{root}/dir/dict.b2z")
    got = {
        "version": cat2.__version__,
        "tree_type": type(tree).__name__,
        "tree_leaves": list(tree),
        "inner_type": type(tree["a"]).__name__,
        "inner_leaves": list(tree["a"]),
        "small": tree["a/small"][:].tolist(),
        "big_box": tree["a/big"][5:9, 10:20].tolist(),
        "cube_row": tree["a"]["b/cube"][1].tolist(),
        "dict_type": type(store).__name__,
        "dict_leaves": list(store),
        "dict_big_box": store["q/r"][140:160, 3:5].tolist(),
    }
    print(json.dumps(got))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
