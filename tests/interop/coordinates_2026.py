"""Run by tests/test_coordinates.py with the python of a caterva2 2026.9.2 venv.

Reads coordinates through that release's own client and prints what it got as
JSON; it imports only that venv's packages, never this repository's code.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import caterva2 as cat2


def main(url: str) -> None:
    client = cat2.Client(url)
    cube = client.get("@public")["cube.b2nd"]
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 7, 3000), rng.integers(0, 11, 3000)
    got = {
        "version": cat2.__version__,
        "points": cube[[0, 6], [1, 10]].tolist(),
        "mixed": cube[[4, 0, 2], 2:5].tolist(),
        "mask": cube[np.array([True, False, True, False, False, False, True])].tolist(),
        "many": cube[rows, cols].tolist(),  # too long for a URL: this client POSTs it
    }
    print(json.dumps(got))


if __name__ == "__main__":
    main(sys.argv[1])
