"""What `cat2cli tree` draws and `cat2cli show --json` prints."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import blosc2

import caterva2


def materialized(data: Any) -> Any:
    """A fetched Blosc2 array as NumPy values, a byte stream as bytes; anything else as is."""
    if isinstance(data, blosc2.NDArray):
        return data[()] if data.ndim == 0 else data[:]
    if isinstance(data, blosc2.SChunk):
        return data[:]
    return data


def plain_values(data: Any) -> Any:
    """An array or byte stream as JSON values: nested lists, or the text of a byte stream."""
    data = materialized(data)
    if isinstance(data, bytes):
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise ValueError("binary data has no JSON form: use `download` instead") from None
    return data.tolist() if hasattr(data, "tolist") else data


def json_value(value: Any) -> Any:
    # Fields of structured arrays come out of `tolist` as bytes or NumPy scalars.
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} has no JSON form")


CONTAINER_SUFFIXES = (".b2z", ".h5", ".hdf5")


def expanded_paths(client: caterva2.Client, path: str) -> list[str]:
    """The datasets below `path`, the leaves of container files (`.b2z`, HDF5) included."""
    names = []
    for name in client.get_list(path):
        names.append(name)
        if not name.lower().endswith(CONTAINER_SUFFIXES) or path.endswith("/" + name):
            continue
        leaves = client.get_list(f"{path.rstrip('/')}/{name}")
        if leaves != [name.rsplit("/", 1)[-1]]:  # a container: its leaves, not itself
            names.pop()
            names.extend(f"{name}/{leaf}" for leaf in leaves)
    return names


def nested(paths: Sequence[str]) -> dict:
    tree: dict = {}
    for path in paths:
        node = tree
        parts = path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(parts[-1], None)
    return tree


def tree_lines(node: dict, prefix: str = "") -> Iterator[str]:
    items = sorted(node.items())
    for i, (name, child) in enumerate(items):
        last = i == len(items) - 1
        yield f"{prefix}{'└── ' if last else '├── '}{name}"
        if child is not None:
            yield from tree_lines(child, prefix + ("    " if last else "│   "))


def drawing(top: str, paths: Sequence[str]) -> Iterator[str]:
    """The lines of the tree of `paths` below `top`, then a count, as tree(1) ends."""
    tree = nested(paths)
    yield top
    lines = list(tree_lines(tree))
    yield from lines
    groups = len(lines) - len(paths)
    yield f"\n{groups} {'group' if groups == 1 else 'groups'}, {len(paths)} datasets"
