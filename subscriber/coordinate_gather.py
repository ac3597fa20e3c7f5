"""Coordinates gathered from the chunks they touch, not from the whole box they span.

`ds[[0, 99_999], [0, 99_999]]` spans a box of 10^10 elements but touches two
chunks: reading the box would read (and, on a remote root, fetch from the
publisher) every chunk between the two points.  So the points are grouped by the
chunk they fall in along their axes; each group reads the smallest box around
its own points, and the groups' answers are put where NumPy's indexing puts them
(the indexed axes in place when they are adjacent, first otherwise).  The whole
box is still read when it is not much bigger than the groups' boxes together
(dense coordinates: one read beats many small ones), or when the groups would be
too many reads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..common.coordinates import parse_indices
from ..common.errors import BadRequest
from .fetch_values import values_of
from .root_interface import ArrayResult, Dataset

ARRAYS_ONLY = "Coordinates (indices) select in arrays of one dimension or more only"
SPARSE_RATIO = 2
"""Read group by group only when the box holds over this many times their elements."""
MAX_GROUPS = 4096
"""More groups than this are read as the one box: each group is a read of its own."""


def gather(dataset: Dataset, indices: str) -> ArrayResult:
    """The values at `indices` (the `indices` parameter of `/api/fetch`)."""
    meta, _tag = dataset.info()
    shape = meta.get("shape")
    if not shape or "dtype" not in meta:
        raise BadRequest(ARRAYS_ONLY)
    box, inner = parse_indices(indices, tuple(shape))
    lists = [axis for axis, entry in enumerate(inner) if isinstance(entry, np.ndarray)]
    if lists:
        try:
            points = np.broadcast_arrays(*(inner[axis] for axis in lists))
        except ValueError:
            sizes = ", ".join(str(inner[axis].size) for axis in lists)
            raise BadRequest(
                f"Invalid indices: coordinate lists of sizes {sizes} do not broadcast"
            ) from None
        groups = _groups(box, lists, points, meta.get("chunks"))
        if groups is not None:
            return ArrayResult(_gathered(dataset, box, inner, lists, points, groups))
    return ArrayResult(np.ascontiguousarray(_read(dataset, box)[inner]))


def _read(dataset: Dataset, box: tuple[slice, ...]) -> np.ndarray:
    values = values_of(dataset.fetch(box))
    if not isinstance(values, np.ndarray):
        raise BadRequest(ARRAYS_ONLY)
    return values


def _groups(
    box: tuple[slice, ...], lists: list[int], points: list[np.ndarray], chunks: Any
) -> list[np.ndarray] | None:
    """The points' positions grouped by chunk, or None when the whole box is the better read."""
    if not chunks or len(chunks) < len(box) or points[0].size == 0:
        return None
    absolute = [coords + box[axis].start for axis, coords in zip(lists, points, strict=True)]
    chunk_ids = np.stack(
        [coords // chunks[axis] for axis, coords in zip(lists, absolute, strict=True)]
    )
    _ids, group_of = np.unique(chunk_ids, axis=1, return_inverse=True)
    group_of = group_of.reshape(-1)
    order = np.argsort(group_of, kind="stable")
    starts = np.flatnonzero(np.diff(group_of[order], prepend=-1))
    groups = np.split(order, starts[1:])
    if len(groups) > MAX_GROUPS:
        return None
    box_size = math.prod(s.stop - s.start for s in box)
    others = math.prod(s.stop - s.start for axis, s in enumerate(box) if axis not in lists)
    spans = [
        math.prod(int(np.ptp(coords[group])) + 1 for coords in absolute) * others
        for group in groups
    ]
    return groups if box_size > SPARSE_RATIO * sum(spans) else None


def _gathered(
    dataset: Dataset,
    box: tuple[slice, ...],
    inner: tuple,
    lists: list[int],
    points: list[np.ndarray],
    groups: list[np.ndarray],
) -> np.ndarray:
    indexed = [axis for axis, entry in enumerate(inner) if not isinstance(entry, slice)]
    adjacent = indexed == list(range(indexed[0], indexed[-1] + 1))
    at = indexed[0] if adjacent else 0  # where NumPy puts the points' axis in the answer
    result = None
    for group in groups:
        sub_box = list(box)
        sub_inner = list(inner)
        for axis, coords in zip(lists, points, strict=True):
            mine = coords[group] + box[axis].start
            low = int(mine.min())
            sub_box[axis] = slice(low, int(mine.max()) + 1)
            sub_inner[axis] = mine - low
        part = _read(dataset, tuple(sub_box))[tuple(sub_inner)]
        if result is None:
            shape = list(part.shape)
            shape[at] = points[0].size
            result = np.empty(shape, dtype=part.dtype)
        result[(slice(None),) * at + (group,)] = part
    return result
