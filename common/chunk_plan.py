"""Which stored chunks and blocks an array selection touches, and where their values go.

Shared by the subscriber, which sends the blocks a selection needs as they are
stored (the `application/x-caterva2-blocks` answer of `/api/fetch`), and the
client, which decompresses them into the result: both derive the same plan from
the same shape, chunks, blocks and bounds, so the stream needs no geometry.

Within a chunk, Blosc2 stores blocks in C order of the chunk's block grid, each
block in C order of its own shape, edge blocks padded to the full block shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Bounds = list[tuple[int, int]]


@dataclass(frozen=True)
class Part:
    """One chunk's share of a selection."""

    nchunk: int
    box: tuple[tuple[int, int], ...]  # blocks wanted: [first, stop) per axis of the block grid
    src: tuple[slice, ...]  # the wanted elements within that box of blocks
    dst: tuple[slice, ...]  # where they go in the result


@dataclass(frozen=True)
class Plan:
    """How a selection is assembled from blocks."""

    shape: tuple[int, ...]  # of the selection, every axis kept
    squeeze: tuple[int, ...]  # axes indexed by an int, dropped at the end
    blocks: tuple[int, ...]
    grid: tuple[int, ...]  # blocks per chunk, per axis (edge blocks padded)
    parts: list[Part]

    @property
    def result_shape(self) -> tuple[int, ...]:
        return tuple(n for axis, n in enumerate(self.shape) if axis not in self.squeeze)


def chunk_coords(shape: Sequence[int], chunks: Sequence[int], nchunk: int) -> tuple[int, ...]:
    """Grid coordinates of chunk `nchunk` (Blosc2 numbers chunks in row-major order)."""
    coords = []
    for size, chunk in zip(reversed(shape), reversed(chunks), strict=True):
        nchunk, index = divmod(nchunk, -(-size // chunk))
        coords.append(index)
    return tuple(reversed(coords))


def chunk_region(shape: Sequence[int], chunks: Sequence[int], nchunk: int) -> tuple[slice, ...]:
    """The region of an array that chunk `nchunk` covers, clipped to the shape."""
    return tuple(
        slice(i * c, min((i + 1) * c, s))
        for i, c, s in zip(chunk_coords(shape, chunks, nchunk), chunks, shape, strict=True)
    )


def selection_bounds(items: tuple, shape: tuple[int, ...]) -> tuple[Bounds, list[int]] | None:
    """[start, stop) per axis and the int-indexed axes of a checked key; None if not a box.

    `items`: ints in range and slices, at most one per axis (`slices.normalise_key`).
    """
    bounds, squeeze = [], []
    for axis, size in enumerate(shape):
        item = items[axis] if axis < len(items) else slice(None)
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            index = int(item) % size if size else 0
            bounds.append((index, index + 1))
            squeeze.append(axis)
        elif isinstance(item, slice) and item.step in (None, 1):
            start, stop, _ = item.indices(size)
            bounds.append((start, max(start, stop)))
        else:
            return None
    return bounds, squeeze


def plan(
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    blocks: tuple[int, ...],
    bounds: Bounds,
    squeeze: list[int] | tuple[int, ...] = (),
) -> Plan:
    """The parts, in C order of the chunk grid, that cover `bounds`."""
    grid = tuple(-(-c // b) for c, b in zip(chunks, blocks, strict=True))
    nchunks = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))
    sel_shape = tuple(stop - start for start, stop in bounds)
    ranges = [
        range(start // c, -(-stop // c)) if stop > start else range(0)
        for (start, stop), c in zip(bounds, chunks, strict=True)
    ]
    parts = []
    for index in np.ndindex(*(len(r) for r in ranges)):
        coords = [r[i] for r, i in zip(ranges, index, strict=True)]
        box, src, dst = [], [], []
        for axis, coord in enumerate(coords):
            origin = coord * chunks[axis]
            lo = max(bounds[axis][0], origin) - origin
            hi = min(bounds[axis][1], origin + chunks[axis], shape[axis]) - origin
            first, stop = lo // blocks[axis], -(-hi // blocks[axis])
            box.append((first, stop))
            base = first * blocks[axis]
            src.append(slice(lo - base, hi - base))
            dst.append(slice(origin + lo - bounds[axis][0], origin + hi - bounds[axis][0]))
        nchunk = int(np.ravel_multi_index(coords, nchunks))
        parts.append(Part(nchunk, tuple(box), tuple(src), tuple(dst)))
    return Plan(sel_shape, tuple(squeeze), tuple(blocks), grid, parts)


def block_indices(part: Part, grid: tuple[int, ...]) -> list[int] | None:
    """Flat indices of a part's blocks in its chunk (ascending); None for all of them."""
    if all(first == 0 and stop == n for (first, stop), n in zip(part.box, grid, strict=True)):
        return None
    axes = [np.arange(first, stop) for first, stop in part.box]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.ravel_multi_index([m.ravel() for m in mesh], grid).tolist()


def place(plan: Plan, part: Part, values: np.ndarray, whole: bool, out: np.ndarray) -> None:
    """Copy a part's decompressed blocks into `out` (shape `plan.shape`).

    `values`: the blocks in C order of the part's box, or of the whole chunk if `whole`.
    """
    box = [(0, n) for n in plan.grid] if whole else part.box
    counts = [stop - first for first, stop in box]
    nd = len(counts)
    blocked = values.reshape(*counts, *plan.blocks)
    # (n0, n1, .., b0, b1, ..) -> (n0, b0, n1, b1, ..): a view of the box as one array
    # (numpy copies only when the blocks do not span whole rows of the chunk).
    order = [axis for pair in zip(range(nd), range(nd, 2 * nd), strict=True) for axis in pair]
    sizes = [c * b for c, b in zip(counts, plan.blocks, strict=True)]
    joined = blocked.transpose(order).reshape(sizes)
    src = part.src
    if whole:  # the box is the whole chunk: the wanted elements start further in
        src = tuple(
            slice(s.start + first * b, s.stop + first * b)
            for s, (first, _), b in zip(part.src, part.box, plan.blocks, strict=True)
        )
    out[part.dst] = joined[src]


def nbytes(plan: Plan, itemsize: int) -> int:
    """Size of the result."""
    return math.prod(plan.shape) * itemsize
