"""Array writes of the REST API: concatenate, stack and append.

Results are written piece by piece into a temporary file (memory stays flat
whatever the sizes), checked against the quota as they grow, and moved into
place atomically: a reader sees the old dataset or the new one, never half of
one. Sources are read with the caller's rights and may be saved expressions.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, BinaryIO

import blosc2
import numpy as np

from ..common.errors import BadRequest
from ..common.paths import SPECIAL_ROOTS, suffix
from .compute_budget import Budget, piece_shape, pieces
from .file_ops import COPY_BLOCK, quota_exceeded
from .lazy_expressions import open_definition
from .saved_expressions import Expressions
from .store import User

ROOTS_ONLY = "Only @personal, @shared or @public datasets can be {verb}"


def _check_special(path: object, verb: str) -> str:
    if not isinstance(path, str) or path.split("/", 1)[0] not in SPECIAL_ROOTS:
        raise BadRequest(f"{ROOTS_ONLY.format(verb=verb)}, not {path!r}")
    return path


def _quota_check(path: Path, room: int | None, what: str) -> None:
    if room is not None and path.stat().st_size > room:
        raise quota_exceeded(what)


class ArrayOps:
    """concat, stack and append over local roots."""

    def __init__(self, expressions: Expressions) -> None:
        self.expressions = expressions
        self.roots = expressions.roots
        self.ops = expressions.ops
        self.runner = expressions.runner

    # --- concat and stack --------------------------------------------------

    def combine(
        self, srcs: object, dst: object, axis: object, user: User | None, stack: bool
    ) -> str:
        """Concatenate (or stack) `srcs` along `axis` into `dst`; returns its logical path."""
        action = "Stacking datasets" if stack else "Concatenating datasets"
        verb = "stacked" if stack else "concatenated"
        self.roots.rootdir("@personal", user, action)  # 401 before anything else
        if not isinstance(srcs, list) or not srcs:
            raise BadRequest("srcs must be a non-empty list of dataset paths")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise BadRequest("axis must be an integer")
        srcs = [_check_special(s, verb) for s in srcs]
        dst = _check_special(dst, "written")
        if not suffix(dst):
            dst += ".b2nd"
        elif suffix(dst) != ".b2nd":
            raise BadRequest("Stack/concat destination must be a .b2nd file")
        target = self.roots.locate(dst, user, action)
        if target.is_dir() or not target.relpath:
            raise BadRequest(f"{dst} is a directory")
        shapes, dtypes = [], []
        for src in srcs:  # one at a time: expressions may share locked remote operands
            with self.expressions.open_array(src, user, "Source") as array:
                shapes.append(tuple(array.shape))
                dtypes.append(np.dtype(array.dtype))
        shape, axis = _combined_shape(shapes, axis, stack)
        dtype = _combined_dtype(dtypes)
        room = self.ops.room(target.path)

        def write(tmp: Path, budget: Budget) -> None:
            _write_combined(
                self.expressions, srcs, user, shape, dtype, axis, stack, tmp, budget, room
            )

        what = "Stack" if stack else "Concatenation"
        self.expressions.write_and_install(target.path, what, write)
        return target.logical

    # --- append --------------------------------------------------------------

    def append(self, logical: str, stream: BinaryIO, user: User | None) -> list[int]:
        """Append the rows of an uploaded NDArray frame along axis 0; returns the new shape."""
        loc = self.roots.locate(logical, user, "Appending data")
        if not loc.relpath or not loc.path.is_file():
            raise BadRequest("Target file does not exist or is not a file")
        if not loc.path.name.endswith(".b2nd"):
            raise BadRequest("Target file must be a NDArray")
        if open_definition(loc.path) is not None:
            raise BadRequest("Cannot append to a lazy expression")
        data = self._received_array(stream)

        def work(budget: Budget) -> list[int]:
            # Serialised with every other write: the copy must not miss a concurrent change.
            with self.ops.writing():
                tmp = self.roots.new_tmp_path(loc.path.name)
                try:
                    shape = _append_to_copy(loc.path, tmp, data, budget)
                    budget.check()
                    room = self.ops.room(loc.path)
                    _quota_check(tmp, room, "Append")
                    tmp.replace(loc.path)
                    self.ops.usage.forget()
                    return shape
                finally:
                    tmp.unlink(missing_ok=True)

        return self.runner.run(work)

    def _received_array(self, stream: BinaryIO) -> blosc2.NDArray:
        """The NDArray of an uploaded cframe, refused beyond the per-request size limit."""
        limit = self.expressions.max_bytes
        buf = bytearray()
        while block := stream.read(COPY_BLOCK):
            buf += block
            if len(buf) > limit:
                raise BadRequest(
                    f"The data to append is larger than the limit of {limit} bytes per request "
                    "(compute_max_size); append it in parts"
                )
        try:
            data = blosc2.ndarray_from_cframe(bytes(buf))
        except Exception:
            raise BadRequest("The data to append must be a Blosc2 NDArray frame") from None
        if not isinstance(data, blosc2.NDArray):
            raise BadRequest("The data to append must be a Blosc2 NDArray frame")
        return data


def _combined_shape(
    shapes: list[tuple[int, ...]], axis: int, stack: bool
) -> tuple[tuple[int, ...], int]:
    """The result shape and the normalised axis, or 400 when the shapes do not fit."""
    first = shapes[0]
    ndim = len(first) + (1 if stack else 0)
    if not -ndim <= axis < ndim or ndim == 0:
        raise BadRequest(f"axis {axis} is out of range for {ndim}-dimensional results")
    axis %= ndim
    for shape in shapes[1:]:
        if len(shape) != len(first):
            raise BadRequest(f"All sources must have the same number of dimensions ({shapes})")
        if stack and shape != first:
            raise BadRequest(f"Stacked sources must all have the same shape ({shapes})")
        if not stack and shape[:axis] + shape[axis + 1 :] != first[:axis] + first[axis + 1 :]:
            raise BadRequest(f"Shapes {shapes} differ beyond axis {axis}")
    if stack:
        return first[:axis] + (len(shapes),) + first[axis:], axis
    total = sum(shape[axis] for shape in shapes)
    return first[:axis] + (total,) + first[axis + 1 :], axis


def _combined_dtype(dtypes: list[np.dtype]) -> np.dtype:
    """NumPy's promotion among numbers; anything else (records, text) must match in kind."""
    if any(d.names for d in dtypes):
        if any(d != dtypes[0] for d in dtypes):
            raise BadRequest("Structured sources must all have the same dtype")
        return dtypes[0]
    kinds = {d.kind for d in dtypes}
    if not kinds <= set("?biufc") and len(kinds) > 1:
        raise BadRequest(f"The sources have incompatible dtypes: {[str(d) for d in dtypes]}")
    try:
        return np.result_type(*dtypes)
    except TypeError as exc:
        raise BadRequest(f"The sources have incompatible dtypes: {exc}") from None


def _write_combined(
    expressions: Expressions,
    srcs: list[str],
    user: User | None,
    shape: tuple[int, ...],
    dtype: np.dtype,
    axis: int,
    stack: bool,
    tmp: Path,
    budget: Budget,
    room: int | None,
) -> None:
    """Write the sources into a new array at `tmp`, in pieces aligned to its chunks."""
    out = blosc2.empty(shape, dtype=dtype, urlpath=str(tmp), mode="w")
    piece = piece_shape(shape, out.chunks, dtype.itemsize)
    offset = 0
    for src in srcs:
        # One source open at a time: expressions may share (locked) remote operands.
        with expressions.open_array(src, user, "Source") as array:
            length = 1 if stack else array.shape[axis]
            # The part of the result this source fills, walked in the result's own pieces.
            region = tuple(
                slice(offset, offset + length) if i == axis else slice(0, s)
                for i, s in enumerate(shape)
            )
            for absolute, relative in pieces(region, piece):
                budget.check()
                if stack:
                    key = absolute[:axis] + absolute[axis + 1 :]
                    values = np.expand_dims(np.asarray(array[key] if key else array[()]), axis)
                else:
                    key = absolute[:axis] + (relative[axis],) + absolute[axis + 1 :]
                    values = np.asarray(array[key])
                out[absolute] = values
        offset += length
        _quota_check(tmp, room, "Concatenation")


def _append_to_copy(path: Path, tmp: Path, data: blosc2.NDArray, budget: Budget) -> list[int]:
    """Copy the dataset to `tmp` and append `data` to the copy along axis 0."""
    shutil.copyfile(path, tmp)
    array = blosc2.open(str(tmp), mode="a")
    if not isinstance(array, blosc2.NDArray):
        raise BadRequest("Target file must be a NDArray")
    if array.ndim == 0:
        raise BadRequest("Cannot append to a 0-dimensional array")
    rows: Any = data
    if data.ndim == array.ndim - 1 and tuple(data.shape) == tuple(array.shape[1:]):
        rows = data[()].reshape((1, *data.shape))  # a single row
    if rows.ndim != array.ndim or tuple(rows.shape[1:]) != tuple(array.shape[1:]):
        raise BadRequest(
            "The shapes of the original dataset and the data to append are not compatible"
        )
    target_dtype, data_dtype = np.dtype(array.dtype), np.dtype(rows.dtype)
    if data_dtype != target_dtype and not np.can_cast(data_dtype, target_dtype, "same_kind"):
        raise BadRequest(f"Cannot append {data_dtype} data to a dataset of {target_dtype}")
    old = array.shape[0]
    count = rows.shape[0]
    array.resize((old + count, *array.shape[1:]))
    itemsize = target_dtype.itemsize
    region = tuple(slice(0, s) for s in rows.shape)
    chunks = tuple(getattr(rows, "chunks", rows.shape)) or rows.shape
    for absolute, _relative in pieces(region, piece_shape(rows.shape, chunks, itemsize)):
        budget.check()
        dest = (slice(old + absolute[0].start, old + absolute[0].stop), *absolute[1:])
        array[dest] = np.asarray(rows[absolute]).astype(target_dtype, copy=False)
    return list(array.shape)
