"""How reads of a remote dataset are planned: the chunks a read needs, and what it answers.

Pure functions of a dataset's metadata (the publisher's info JSON), shared by
`remote_roots` and the mirror.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import blosc2

from ..common.chunk_plan import chunk_region
from ..common.errors import BadRequest
from ..common.paths import CONTAINER_SUFFIXES, logical_name
from ..common.slices import Key, normalise_key
from . import datasets
from .remote_containers import in_container

Plan = Callable[[dict], tuple[Any, Callable[[Any], Any]]]
"""Given the metadata of the version pinned for a read: (key of the chunks it needs, use)."""


def selection_plan(meta: dict, key: Key, field: str | None) -> tuple[Any, Callable]:
    """The chunks a selection touches in this version, and how to answer it."""
    if "shape" in meta:
        items = normalise_key(key, tuple(meta["shape"]))
        proxy_key = items if items else ()
    else:
        if field:
            raise BadRequest("A byte stream has no fields")
        nitems = meta["nbytes"] // meta["cparams"]["typesize"]
        proxy_key = slice(*datasets.item_range(key, nitems))
    return proxy_key, lambda c: datasets.selection_result(c, key, field)


def chunk_plan(nchunk: int) -> Plan:
    """Fetch chunk `nchunk` into the cache (mirroring), whatever the version."""

    def plan(meta: dict) -> tuple[Any, Callable]:
        if nchunk >= meta.get("schunk", meta).get("nchunks", 0):
            return (), lambda c: None  # the version changed under the mirror: nothing to do
        return chunk_key(meta, nchunk), lambda c: None

    return plan


def served_name(relpath: str, meta: dict | None = None) -> str:
    """The file name of what a publisher serves for a dataset: a container as it is, any
    other file (an .h5 too) as `<name>.b2`, which clients decompress; an array inside a
    container file (`meta` says it is an array) as `<name>.b2nd`."""
    name = logical_name(relpath.rsplit("/", 1)[-1])
    if name.endswith(CONTAINER_SUFFIXES):
        return name
    if in_container(relpath) and "shape" in (meta or {}):
        return name + ".b2nd"  # a leaf of a container: an array of its own
    return name + ".b2"


def readable(meta: dict) -> None:
    """400 with the publisher's reason for a dataset it lists but cannot serve."""
    if "error" in meta and "shape" not in meta and "nbytes" not in meta:
        raise BadRequest(f"The dataset cannot be read: {meta['error']}")


def chunked_array(relpath: str, meta: dict) -> bool:
    """Whether clients may assemble reads of a dataset from its chunks (Blosc2 arrays only)."""
    array_path = relpath.endswith(".b2nd") or in_container(relpath)
    return array_path and "shape" in meta and "blocks" in meta


def schunk_of(container):
    return container.schunk if isinstance(container, blosc2.NDArray) else container


def chunk_key(meta: dict, nchunk: int):
    """The slice covering chunk `nchunk` of a dataset (row-major chunk order)."""
    if "shape" not in meta:
        chunksize = meta["chunksize"] // meta["cparams"]["typesize"]
        return slice(nchunk * chunksize, (nchunk + 1) * chunksize)
    return chunk_region(meta["shape"], meta["chunks"], nchunk)
