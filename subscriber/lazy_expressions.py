"""Saved lazy expressions: how they are stored, resolved with the reader's rights, and evaluated.

A saved expression is an ordinary `.b2nd` file (an empty array) whose vlmeta
holds `{"expression", "operands"}`, operands being logical paths. So it is
listed, moved, copied and removed like any dataset, and reading it evaluates
it *then*: operands are opened anew, with the rights of whoever reads, so a
changed operand shows in the next read. Operands may be arrays of the local
roots, other saved expressions, or arrays of remote roots, read through the
chunk cache (a `blosc2.Proxy` fetches only the chunks the evaluation touches).

Reads of a saved expression (info, fetch, chunk, download) come here from
`api_data`; creation comes from `api_compute`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..common.chunk_plan import chunk_region
from ..common.errors import BadRequest, Caterva2Error, NotFound, ServiceUnavailable
from ..common.paths import join_logical, split_logical_path
from ..common.slices import Key, normalise_key
from . import containers, datasets, hdf5_shells
from .chunk_cache import FETCH_CONCURRENCY
from .compute_budget import (
    Budget,
    check_result_size,
    empty_like_region,
    piece_shape,
    pieces,
    region_of,
)
from .expression_language import INVALID, ParsedExpression, check_operand_name, parse_expression
from .file_ops import quota_exceeded
from .local_roots import LocalRoots, Location
from .remote_roots import RemoteRoots
from .store import User

# The vlmeta key of a saved expression; plain arrays never carry it.
MARKER = "_caterva2_lazyexpr"
FORMAT_VERSION = 1
MAX_NESTING = 16
# Operand references of an expression once its saved expressions are written out in full:
# Blosc2 builds that text, so a chain that doubles at every level is refused early.
MAX_EXPANDED_OPERANDS = 128
CREATE_ACTION = "Creating lazy expressions"
# What Blosc2 and NumPy raise for an expression that cannot be built or evaluated.
EVALUATION_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    NotImplementedError,
    ArithmeticError,
    RuntimeError,
    SyntaxError,
    NameError,
    MemoryError,
)


class MissingOperands(Exception):
    """Some operands of a saved expression (at any depth) do not exist."""

    def __init__(self, expression: str, missing: dict[str, str]) -> None:
        super().__init__(expression, missing)
        self.expression = expression
        self.missing = missing


class _Missing(Exception):
    pass


@dataclass
class ArrayOperand:
    logical: str
    array: blosc2.NDArray


@dataclass
class ShellOperand:
    """An unfolded HDF5 dataset: its data is read from the HDF5 file, chunk by chunk."""

    logical: str
    loc: Location
    shell: blosc2.NDArray
    src: hdf5_shells.Source | None = None  # known already (a dataset inside an .h5)


@dataclass
class RemoteOperand:
    logical: str
    root: str
    relpath: str
    meta: dict


@dataclass
class ExpressionOperand:
    logical: str
    expression: str
    paths: dict[str, str]
    parsed: ParsedExpression
    operands: dict[str, ArrayOperand | ShellOperand | RemoteOperand | ExpressionOperand]
    expanded: int = 1  # operand references once nested expressions are written out


def expanded_size(operands: dict) -> int:
    """Operand references of an expression over `operands`, nested expressions written out."""
    return sum(op.expanded if isinstance(op, ExpressionOperand) else 1 for op in operands.values())


Operand = ArrayOperand | ShellOperand | RemoteOperand | ExpressionOperand


# --- storage ----------------------------------------------------------------


def read_definition(array: blosc2.NDArray) -> tuple[str, dict[str, str]] | None:
    """(expression, operands) of a saved expression, or None for a plain array."""
    vlmeta = array.schunk.vlmeta
    if MARKER not in vlmeta:
        return None
    value = vlmeta[MARKER]
    expression = value.get("expression") if isinstance(value, dict) else None
    operands = value.get("operands") if isinstance(value, dict) else None
    if not isinstance(expression, str) or not isinstance(operands, dict):
        raise BadRequest("Malformed saved lazy expression")
    return expression, {str(k): str(v) for k, v in operands.items()}


def open_definition(
    path: Path, st: os.stat_result | None = None
) -> tuple[str, dict[str, str]] | None:
    """The definition stored at `path` (`st`: its stat, just taken) if a saved expression."""
    if not path.name.endswith(".b2nd"):
        return None
    try:
        # Shared with the read that usually follows, and so is the answer.
        opened = datasets.CONTAINERS.get(path, st)
    except Exception:
        return None  # not ours to judge: the plain read path reports unreadable files
    definition = opened.derive(
        "definition", lambda obj: read_definition(obj) if isinstance(obj, blosc2.NDArray) else None
    )
    return None if definition is None else (definition[0], dict(definition[1]))


def write_shell(path: Path, expression: str, operands: dict[str, str]) -> None:
    """Store an expression as an empty `.b2nd` whose vlmeta holds its definition."""
    shell = blosc2.zeros((0,), dtype=np.int8, urlpath=str(path), mode="w")
    shell.schunk.vlmeta[MARKER] = {
        "version": FORMAT_VERSION,
        "expression": expression,
        "operands": operands,
    }
    del shell


# --- resolving operands with the caller's rights ------------------------------


def _operand_error(label: str, logical: str, detail: object) -> BadRequest:
    return BadRequest(f"{label} ({logical}): {detail}")


class Resolver:
    """Opens the operands of an expression as `user` may read them.

    A saved expression used many times (at any depth) is resolved once, so the
    work grows with the number of distinct expressions, not with the paths to
    them; `budget` is checked at every operand.
    """

    def __init__(
        self,
        roots: LocalRoots,
        remote: RemoteRoots | None,
        user: User | None,
        max_bytes: int,
        budget: Budget | None = None,
    ) -> None:
        self.roots = roots
        self.remote = remote
        self.user = user
        self.max_bytes = max_bytes
        self.budget = budget
        # (file, depth) -> resolved: the depth decides the nesting check below it.
        self._resolved: dict[tuple[Path, int], ExpressionOperand] = {}

    def expression(
        self, logical: str, expression: object, paths: dict[str, str], chain: frozenset[Path]
    ) -> ExpressionOperand:
        """Check an expression and open the operands it uses (MissingOperands if any is gone)."""
        for var in paths:
            check_operand_name(var)
        parsed = parse_expression(expression, paths.keys(), self.max_bytes)
        operands: dict[str, Operand] = {}
        missing: dict[str, str] = {}
        for var in sorted(parsed.names):
            try:
                operands[var] = self.operand(f"Operand {var!r}", paths[var], chain)
            except _Missing:
                missing[var] = paths[var]
        if missing:
            raise MissingOperands(parsed.text, missing)
        expanded = expanded_size(operands)
        if expanded > MAX_EXPANDED_OPERANDS:
            raise BadRequest(
                f"{INVALID}: {logical} written out in full uses {expanded} operands, more than "
                f"{MAX_EXPANDED_OPERANDS}; save an intermediate result with compute=true"
            )
        return ExpressionOperand(logical, parsed.text, paths, parsed, operands, expanded)

    def operand(self, label: str, logical: str, chain: frozenset[Path]) -> Operand:
        """Open one operand; 400 when it is not an array the user may read."""
        if self.budget is not None:
            self.budget.check()
        try:
            root, relpath = split_logical_path(logical)
        except BadRequest as exc:
            raise _operand_error(label, logical, exc.detail) from None
        if self.remote is not None and not self.roots.is_local(root):
            return self._remote(label, logical, root, relpath)
        try:
            found = containers.inside_container(
                relpath, lambda rel: self.roots.locate(join_logical(root, rel), self.user)
            )
        except Caterva2Error as exc:
            raise _operand_error(label, logical, exc.detail) from None
        if found is not None:
            return self._container_leaf(label, logical, *found)
        try:
            loc = self.roots.locate(logical, self.user)
        except Caterva2Error as exc:
            raise _operand_error(label, logical, exc.detail) from None
        if loc.path.is_dir() or not relpath:
            raise _operand_error(label, logical, "is a directory, not an array")
        if not loc.path.is_file():
            raise _Missing
        if not relpath.endswith(".b2nd"):
            raise _operand_error(label, logical, "is not an array (only .b2nd datasets are)")
        try:
            array = blosc2.open(str(loc.path), mode="r")
        except Exception:
            raise _operand_error(label, logical, "is not a readable Blosc2 array") from None
        if not isinstance(array, blosc2.NDArray):
            raise _operand_error(label, logical, "is not a Blosc2 NDArray")
        definition = read_definition(array)
        if definition is None:
            if hdf5_shells.is_shell(array):
                return ShellOperand(logical, loc, array)
            if "_ftype" in array.schunk.vlmeta:
                raise _operand_error(label, logical, "is backed by another file and cannot be used")
            return ArrayOperand(logical, array)
        real = loc.path.resolve()
        if real in chain:
            raise _operand_error(label, logical, "refers back to itself (circular expressions)")
        if len(chain) >= MAX_NESTING:
            raise _operand_error(label, logical, f"nests expressions deeper than {MAX_NESTING}")
        # A cycle through a resolved expression would have failed when it was resolved.
        key = (real, len(chain))
        if key not in self._resolved:
            self._resolved[key] = self.expression(
                logical, definition[0], definition[1], chain | {real}
            )
        return self._resolved[key]

    def _container_leaf(self, label: str, logical: str, loc: Location, inner: str) -> Operand:
        """An array inside a `.b2z` or HDF5 file browsed as a folder."""
        try:
            container = containers.container_at(loc)
            node = container.node(inner) if container is not None else None
        except NotFound:
            raise _Missing from None
        except Caterva2Error as exc:
            raise _operand_error(label, logical, exc.detail) from None
        if node is None:
            raise _operand_error(label, logical, f"{loc.logical} is not a container")
        if isinstance(node, containers.HDF5Leaf):
            return ShellOperand(logical, loc, node.shell, node.source())
        if isinstance(node, containers.B2zLeaf) and isinstance(node.obj, blosc2.NDArray):
            return ArrayOperand(logical, node.obj)
        raise _operand_error(label, logical, "is not an array")

    def _remote(self, label: str, logical: str, root: str, relpath: str) -> RemoteOperand:
        try:
            _etag, meta = self.remote.dataset(root, relpath)
        except NotFound:
            if self.remote.is_known(root):
                raise _Missing from None
            raise _operand_error(label, logical, f"root {root} does not exist") from None
        except ServiceUnavailable:
            raise
        except Caterva2Error as exc:
            raise _operand_error(label, logical, exc.detail) from None
        if "shape" not in meta:
            raise _operand_error(label, logical, "is not an array")
        return RemoteOperand(logical, root, relpath, meta)


# --- evaluating ---------------------------------------------------------------


def _remote_leaves(node: Operand) -> Iterator[RemoteOperand]:
    if isinstance(node, RemoteOperand):
        yield node
    elif isinstance(node, ExpressionOperand):
        for child in node.operands.values():
            yield from _remote_leaves(child)


def _chunkable(node: Operand) -> bool:
    """Whether pieces of the result can be evaluated independently (nothing but element-wise)."""
    if not isinstance(node, ExpressionOperand):
        return True
    return node.parsed.elementwise and all(_chunkable(c) for c in node.operands.values())


def _operand_region(
    region: tuple[slice, ...], shape: tuple[int, ...], op_shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """The part of a broadcast operand that a region of the result reads."""
    offset = len(shape) - len(op_shape)
    return tuple(
        slice(0, 1) if size == 1 and shape[offset + axis] != 1 else region[offset + axis]
        for axis, size in enumerate(op_shape)
    )


class ShellSource(blosc2.ProxyNDSource):
    """The chunks of an unfolded HDF5 dataset, read by the HDF5 worker processes."""

    def __init__(self, op: ShellOperand) -> None:
        self.shell = op.shell
        self.source = op.src or hdf5_shells.source(op.loc, op.shell)

    @property
    def shape(self) -> tuple:
        return tuple(self.shell.shape)

    @property
    def chunks(self) -> tuple:
        return tuple(self.shell.chunks)

    @property
    def blocks(self) -> tuple:
        return tuple(self.shell.blocks)

    @property
    def dtype(self) -> np.dtype:
        return self.shell.dtype

    @property
    def cparams(self) -> blosc2.CParams:
        return self.shell.cparams

    def get_chunk(self, nchunk: int) -> bytes:
        return hdf5_shells.run(hdf5_shells.chunk_task, self.source, nchunk)


class Evaluation:
    """A resolved expression built as a Blosc2 LazyExpr, its remote operands' caches locked.

    Remote operands are `blosc2.Proxy` objects over the chunk cache, which
    fetch from the publisher only the chunks an evaluation touches. Their
    cache locks are held (in a fixed order) while the expression is in use,
    so no concurrent fetch or replacement changes a container under it.
    """

    def __init__(self, top: ExpressionOperand, remote: RemoteRoots | None, max_bytes: int):
        self.top = top
        self.remote = remote
        self.max_bytes = max_bytes
        self.proxies: dict[tuple[str, str], Any] = {}
        self._built: dict[int, Any] = {}  # id of a resolved expression -> its LazyExpr
        self.chunkable = _chunkable(top)
        self._stack = ExitStack()

    def __enter__(self) -> Evaluation:
        try:
            leaves = {(op.root, op.relpath): op for op in _remote_leaves(self.top)}
            for key in sorted(leaves):
                self._stack.enter_context(self.remote.cache.lock(*key))
                self.proxies[key] = self._proxy(leaves[key])
            self.lazy = self._build(self.top)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            for key in self.proxies:
                self.remote.cache.account(*key)  # the chunks this evaluation fetched
        finally:
            self._stack.close()
        if self.proxies:
            self.remote.cache.enforce_budget()  # holding no lock now

    def _proxy(self, op: RemoteOperand) -> blosc2.Proxy:
        # The cache's own proxy (its lock is held): one record of what the file holds.
        # Never read yet: its container is created now, for the version resolved.
        found = self.remote.store.dataset(op.root, op.relpath)
        etag = found[0] if found is not None and found[1] == op.meta else None
        try:
            return self.remote.cache.proxy(
                op.root, op.relpath, op.meta, etag, self.remote.client(op.root)
            )
        except FileNotFoundError:
            raise NotFound(f"{op.logical} is not in the cache yet; try again") from None

    def _build(self, node: Operand) -> Any:
        if isinstance(node, ArrayOperand):
            return node.array
        if isinstance(node, ShellOperand):
            return blosc2.Proxy(ShellSource(node))  # chunks cached in memory, for this request
        if isinstance(node, RemoteOperand):
            return self.proxies[(node.root, node.relpath)]
        if id(node) not in self._built:
            self._built[id(node)] = self._build_expression(node)
        return self._built[id(node)]

    def _build_expression(self, node: ExpressionOperand) -> Any:
        operands = {var: self._build(child) for var, child in node.operands.items()}
        shapes = {var: tuple(op.shape) for var, op in operands.items()}
        itemsizes = {var: np.dtype(op.dtype).itemsize for var, op in operands.items()}
        text = node.parsed.prepared(shapes, itemsizes, self.max_bytes)
        try:
            lazy = blosc2.lazyexpr(text, operands)
            lazy.shape, lazy.dtype  # noqa: B018 - shape inference is where most errors show
        except Caterva2Error:
            raise
        except EVALUATION_ERRORS as exc:
            raise BadRequest(f"{INVALID}: {exc}") from None
        if not isinstance(lazy, blosc2.LazyExpr):
            raise BadRequest(f"{INVALID}: Evaluates to {type(lazy).__name__}, not an array")
        return lazy

    def prefetch(self, region: tuple[slice, ...]) -> None:
        """Fetch at once (concurrently) the remote chunks a region of the result reads."""
        if not self.top.parsed.elementwise:
            return
        shape = tuple(self.lazy.shape)
        for child in self.top.operands.values():
            if isinstance(child, RemoteOperand):
                proxy = self.proxies[(child.root, child.relpath)]
                key = _operand_region(region, shape, tuple(child.meta["shape"]))
                proxy.fetch(key, max_concurrency=FETCH_CONCURRENCY)


def grid_of(lazy: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunks and blocks of a result: its operands' when they share them, else Blosc2's choice."""
    try:
        return tuple(lazy.chunks), tuple(lazy.blocks)
    except ValueError:  # Blosc2 cannot tell for expressions of constructors alone
        chunks, blocks = blosc2.compute_chunks_blocks(lazy.shape, None, None, dtype=lazy.dtype)
        return tuple(chunks), tuple(blocks)


@contextmanager
def evaluation_errors() -> Iterator[None]:
    """Errors of Blosc2 while evaluating become 400 `Runtime error: ...`."""
    try:
        yield
    except Caterva2Error:
        raise
    except EVALUATION_ERRORS as exc:
        raise BadRequest(f"Runtime error: {exc}") from None


def evaluate_selection(ev: Evaluation, key: Key, budget: Budget) -> np.ndarray:
    """The values a key selects, evaluated piece by piece (memory bounded by the limit)."""
    lazy = ev.lazy
    shape, dtype = tuple(lazy.shape), np.dtype(lazy.dtype)
    items = normalise_key(key, shape)
    selected = np.broadcast_to(np.empty((), np.int8), shape)[items].shape if shape else ()
    check_result_size(selected, dtype.itemsize, ev.max_bytes, "The result")
    with evaluation_errors():
        found = region_of(items, shape) if shape else None
        if found is not None:
            ev.prefetch(found[0])
        if found is None or not ev.chunkable:
            return np.asarray(lazy[items] if items else lazy[()])
        region = found[0]
        out = empty_like_region(region, dtype)
        piece = piece_shape(shape, grid_of(lazy)[0], dtype.itemsize)
        for absolute, relative in pieces(region, piece):
            budget.check()
            out[relative] = lazy[absolute]
        return out.reshape(selected)


def compute_to_file(ev: Evaluation, path: Path, budget: Budget, room: int | None) -> None:
    """Write the whole result as a new `.b2nd` at `path`, piece by piece."""
    lazy = ev.lazy
    shape, dtype = tuple(lazy.shape), np.dtype(lazy.dtype)
    with evaluation_errors():
        if not ev.chunkable or not shape:
            check_result_size(shape, dtype.itemsize, ev.max_bytes, "The result")
            values = np.asarray(lazy[()])
            blosc2.asarray(values, urlpath=str(path), mode="w")
            return
        chunks, blocks = grid_of(lazy)
        out = blosc2.empty(
            shape, dtype=dtype, chunks=chunks, blocks=blocks, urlpath=str(path), mode="w"
        )
        piece = piece_shape(shape, out.chunks, dtype.itemsize)
        whole = tuple(slice(0, s) for s in shape)
        for absolute, _relative in pieces(whole, piece):
            budget.check()
            ev.prefetch(absolute)
            out[absolute] = lazy[absolute]
            if room is not None and path.stat().st_size > room:
                raise quota_exceeded("Computing")


def compute_chunk(ev: Evaluation, nchunk: int) -> bytes:
    """Chunk `nchunk` of the result, on the chunk grid of its operands, compressed."""
    lazy = ev.lazy
    shape, dtype = tuple(lazy.shape), np.dtype(lazy.dtype)
    with evaluation_errors():
        if not shape:
            if nchunk != 0:
                raise BadRequest(f"Chunk {nchunk} out of range (the dataset has 1 chunk)")
            return blosc2.asarray(np.asarray(lazy[()])).schunk.get_chunk(0)
        chunks, blocks = grid_of(lazy)
        grid = [-(-s // c) for s, c in zip(shape, chunks, strict=True)]
        nchunks = math.prod(grid)
        if not 0 <= nchunk < nchunks:
            raise BadRequest(f"Chunk {nchunk} out of range (the dataset has {nchunks} chunks)")
        check_result_size(chunks, dtype.itemsize, ev.max_bytes, "A chunk")
        region = chunk_region(shape, chunks, nchunk)
        ev.prefetch(region)
        # A chunk always has the full chunk shape: edge chunks are padded, as stored ones are.
        out = blosc2.empty(chunks, dtype=dtype, chunks=chunks, blocks=blocks)
        out[tuple(slice(0, r.stop - r.start) for r in region)] = lazy[region]
        return out.schunk.get_chunk(0)
