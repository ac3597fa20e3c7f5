"""Run by tests/test_ingest_upstream.py with the python of a caterva2 2026.9.2 venv.

Lays out, fills (a duplicate included), inspects and publishes an array
through that release's own client, then prints what it saw as JSON; it
imports only that venv's packages, never this repository's code.
"""

from __future__ import annotations

import json
import sys

import blosc2
import numpy as np

import caterva2 as cat2

SHAPE, CHUNKS, BLOCKS = (50, 20), (10, 20), (5, 10)
PATH = "@public/upstream.b2nd"


def main(url: str, user: str, password: str) -> None:
    client = cat2.Client(url, (user, password))
    source = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)
    # The chunks as a blosc2 array of the same geometry stores them.
    local = blosc2.asarray(source, chunks=CHUNKS, blocks=BLOCKS)
    array = client.lay_out(PATH, SHAPE, np.float64, chunks=CHUNKS, blocks=BLOCKS)
    answers = [array.fill_chunk(0, local.schunk.get_chunk(0))]
    try:
        client.fill_chunk(PATH, 0, local.schunk.get_chunk(0))
        duplicate = "accepted"
    except blosc2.ChunkAlreadyWritten as exc:
        duplicate = f"raised {type(exc).__name__}"
    for nchunk in range(1, local.schunk.nchunks - 1):
        answers.append(client.fill_chunk(PATH, nchunk, local.schunk.get_chunk(nchunk)))
    midway = client.written_chunks(PATH).tolist()
    last = local.schunk.nchunks - 1
    answers.append(client.fill_chunk(PATH, last, local.schunk.get_chunk(last)))
    published = client.publish(PATH)
    values = client.get(PATH)[:]
    print(
        json.dumps(
            {
                "version": cat2.__version__,
                "first": answers[0],
                "last": answers[-1],
                "duplicate": duplicate,
                "midway": midway,
                "published": str(published),
                "values": np.asarray(values).tolist(),
                "listed": PATH.split("/", 1)[1] in client.get_list("@public"),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
