"""Containers in remote roots: the leaves a publisher announces as `x.b2z/<inner>`, seen as folders.

A publisher serves a TreeStore/DictStore `.b2z` as its leaf arrays, each a
dataset `dir/x.b2z/a/v` (see `publisher.b2z_groups`).  Here a path component
named like a container (`*.b2z`, `*.h5`, `*.hdf5`) with datasets below it is a
container, as it is on local roots: listing the folder that holds it names the
container file, listing the container or an inner group names its leaves (deep,
relative to it), and its info is upstream's group shape.  Names only are used:
they were checked (`check_remote_path`) when the listing or message arrived.
"""

from __future__ import annotations

import re
from typing import Any

from ..common.errors import BadRequest, NotFound

# A component ending like a container and followed by more of the path.
_CONTAINER_PART = re.compile(r"\.(?:b2z|h5|hdf5)/", re.IGNORECASE)
NOT_A_DATASET = "{} is a group, not a dataset: list it or read one of its leaves"


def in_container(relpath: str) -> bool:
    """Whether a dataset path names a leaf inside a container (`x.b2z/a/v`)."""
    return _CONTAINER_PART.search(relpath) is not None


def is_group_path(relpath: str) -> bool:
    """Whether a path may name a container or a group inside one (`x.b2z`, `x.b2z/a`)."""
    return in_container(relpath + "/")


def split_container(relpath: str) -> tuple[str, str] | None:
    """(`dir/x.b2z`, `a/v`) for a path into a container, None for any other path."""
    found = _CONTAINER_PART.search(relpath)
    return (relpath[: found.end() - 1], relpath[found.end() :]) if found else None


def collapse(paths: list[str]) -> list[str]:
    """A folder's listing: the leaves of each container stand for its file (`x.b2z`), once.

    `paths` itself when it holds no container (no copy of a big listing).
    """
    seen: set[str] = set()
    listed = []
    for path in paths:
        found = _CONTAINER_PART.search(path)
        name = path[: found.end() - 1] if found else path
        if name not in seen:
            seen.add(name)
            listed.append(name)
    return listed if len(listed) < len(paths) else paths


def leaves_below(paths: list[str], relpath: str) -> list[str]:
    """The dataset paths below `relpath`, relative to it."""
    prefix = relpath + "/"
    return [p[len(prefix) :] for p in paths if p.startswith(prefix)]


def listed(paths: list[str], relpath: str) -> list[str]:
    """`/api/list` of `relpath` in a root whose datasets are `paths` (sorted)."""
    if not relpath:
        return collapse(paths)
    if relpath in paths:
        return [relpath.rsplit("/", 1)[-1]]
    below = leaves_below(paths, relpath)
    if is_group_path(relpath):
        if not below:
            raise NotFound(f"Not Found: no container or group {relpath}")
        return below  # a container or inner group: its leaves, as local roots list them
    return collapse(below)


def group_info(leaves: list[str], leaf_meta: dict[str, Any] | None) -> dict[str, Any]:
    """`/api/info` of a container or inner group (as local roots answer it).

    Its mtime is the container file's (every leaf carries it); its size is not
    known here (the file itself never travels).
    """
    return {
        "kind": "group",
        "mtime": (leaf_meta or {}).get("mtime"),
        "size": None,
        "nfiles": len(leaves),
    }


def group_of(store: Any, root: str, relpath: str, paths: list[str]) -> dict[str, Any] | None:
    """The group info of `relpath` in a root whose datasets are `paths`; None if no group."""
    if store.dataset(root, relpath) is not None:
        return None  # a dataset of that name (a table, a plain file) is no group
    leaves = leaves_below(paths, relpath)
    if not leaves:
        return None
    found = store.dataset(root, f"{relpath}/{leaves[0]}")
    return group_info(leaves, found[1] if found else None)


def refuse_group(logical: str) -> None:
    """A group is listed or described, never read."""
    raise BadRequest(NOT_A_DATASET.format(logical))
