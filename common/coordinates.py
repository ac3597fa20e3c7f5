"""Coordinates in a fetch: NumPy's integer-array indexing answered in one round trip.

`/api/fetch/<path>?indices=<JSON>` (the spelling the newest upstream Caterva2
uses, so its client and ours speak the same): a JSON list with one entry per
leading axis, each a list of integers (coordinates on that axis), an integer,
a `"start:stop"` string (step 1; either bound may be empty) or `null` (the
whole axis).  The server reads the box the entries span, through the same path
as a slice (so a remote root fetches only the chunks of that box), and indexes
it with the entries shifted into the box: the answer is NumPy's own, its
broadcasting rules and the placement of the indexed axes included.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import BadRequest

Entry = list[int] | int | str | None


def encode_indices(key: Any, ndim: int | None = None) -> str | None:
    """The `indices` parameter of `key`, or None when it has no list (a plain slice)."""
    items = list(key) if isinstance(key, tuple) else [key]
    if not any(isinstance(item, list | np.ndarray) for item in items):
        return None
    if any(item is Ellipsis for item in items):
        if ndim is None or sum(item is Ellipsis for item in items) > 1:
            raise IndexError("An ellipsis with coordinates needs the number of dimensions")
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * max(ndim - (len(items) - 1), 0)
    return json.dumps([_encode(item) for item in items], separators=(",", ":"))


def _encode(item: Any) -> Entry:
    if isinstance(item, list | np.ndarray):
        coords = np.asarray(item)
        if coords.dtype == np.bool_:  # a mask travels as the coordinates it keeps
            coords = np.flatnonzero(coords)
        if coords.ndim != 1 or not (coords.size == 0 or np.issubdtype(coords.dtype, np.integer)):
            raise IndexError(f"Coordinates must be a flat list of integers, not {item!r}")
        return [int(v) for v in coords]
    if isinstance(item, int | np.integer) and not isinstance(item, bool):
        return int(item)
    if isinstance(item, slice):
        if item.step not in (None, 1):
            raise IndexError("Only slices of step 1 go with coordinates")
        if item == slice(None):
            return None
        start = "" if item.start is None else str(int(item.start))
        stop = "" if item.stop is None else str(int(item.stop))
        return f"{start}:{stop}"
    raise IndexError(f"Unsupported index item with coordinates: {item!r}")


def parse_indices(text: str, shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple]:
    """(the box to read, the key that indexes that box as `text` indexes the array)."""
    try:
        entries = json.loads(text)
    except ValueError:
        raise BadRequest(f"Invalid indices {text[:100]!r}: not JSON") from None
    if not isinstance(entries, list):
        raise BadRequest("Invalid indices: a JSON list with one entry per axis is expected")
    if len(entries) > len(shape):
        raise BadRequest(
            f"Invalid indices: {len(entries)} entries for a dataset of {len(shape)} dimensions"
        )
    box: list[slice] = []
    inner: list[Any] = []
    for axis, (entry, size) in enumerate(zip(entries, shape, strict=False)):
        where = f"axis {axis} (size {size})"
        if entry is None:
            box.append(slice(0, size))
            inner.append(slice(None))
        elif isinstance(entry, bool | float | dict):
            raise BadRequest(f"Invalid indices: {entry!r} on {where}")
        elif isinstance(entry, int):
            at = _checked(entry, size, where)
            box.append(slice(at, at + 1))
            inner.append(0)
        elif isinstance(entry, str):
            start, stop = _bounds(entry, size, where)
            box.append(slice(start, stop))
            inner.append(slice(None))
        else:  # a list of coordinates
            coords = _coordinates(entry, size, where)
            low = int(coords.min()) if coords.size else 0
            high = int(coords.max()) + 1 if coords.size else 0
            box.append(slice(low, high))
            inner.append(coords - low)
    return tuple(box), tuple(inner)


def _checked(index: int, size: int, where: str) -> int:
    if not -size <= index < size:
        raise BadRequest(f"Invalid indices: {index} is out of range on {where}")
    return index % size


def _bounds(text: str, size: int, where: str) -> tuple[int, int]:
    parts = text.split(":")
    if len(parts) != 2:
        raise BadRequest(f"Invalid indices: {text!r} on {where} is not start:stop")
    try:
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise BadRequest(f"Invalid indices: {text!r} on {where} is not start:stop") from None
    start, stop, _step = slice(start, stop).indices(size)
    return start, max(start, stop)


def _coordinates(entry: list, size: int, where: str) -> np.ndarray:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in entry):
        raise BadRequest(f"Invalid indices: coordinates on {where} must be integers")
    coords = np.asarray(entry, dtype=np.int64)
    if coords.size and (coords.min() < -size or coords.max() >= size):
        bad = next(v for v in entry if not -size <= v < size)
        raise BadRequest(f"Invalid indices: {bad} is out of range on {where}")
    return np.where(coords < 0, coords + size, coords)
