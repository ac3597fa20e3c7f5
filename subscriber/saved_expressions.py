"""Saved lazy expressions as a service: created by `/api/lazyexpr`, read as datasets.

How expressions are stored, resolved and evaluated is `lazy_expressions`'
job; this module holds the service that creates them (`Expressions`) and the
dataset kind that reads them (`SavedExpression`, a `root_interface.Dataset`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..common import b2meta
from ..common.errors import BadRequest, NotFound, PreconditionFailed
from ..common.falcon_app import etag_matches
from ..common.paths import check_relpath, join_logical
from ..common.slices import Key, normalise_key
from . import datasets, field_filters
from .compute_budget import Budget, Runner
from .expression_language import INVALID, check_operand_name
from .file_ops import FileOps
from .lazy_expressions import (
    CREATE_ACTION,
    ArrayOperand,
    Evaluation,
    ExpressionOperand,
    MissingOperands,
    RemoteOperand,
    Resolver,
    ShellOperand,
    ShellSource,
    _chunkable,
    _Missing,
    compute_chunk,
    compute_to_file,
    evaluate_selection,
    open_definition,
    write_shell,
)
from .local_roots import LocalRoots, Location
from .remote_roots import RemoteRoots
from .root_interface import ArrayResult, Dataset, Download
from .store import User


class Expressions:
    """Creates saved expressions and serves reads of them."""

    def __init__(
        self, roots: LocalRoots, remote: RemoteRoots | None, ops: FileOps, runner: Runner
    ) -> None:
        self.roots = roots
        self.remote = remote
        self.ops = ops
        self.runner = runner

    @property
    def max_bytes(self) -> int:
        return self.runner.limits.max_bytes

    def resolver(self, user: User | None, budget: Budget | None = None) -> Resolver:
        return Resolver(self.roots, self.remote, user, self.max_bytes, budget)

    def resolve(
        self, user: User | None, logical: str, expression: object, paths: dict, chain: frozenset
    ) -> ExpressionOperand:
        """Resolve an expression for `user` within the time limit of a request (503 after)."""
        with self.runner.deadline() as budget:
            return self.resolver(user, budget).expression(logical, expression, paths, chain)

    def evaluation(self, top: ExpressionOperand) -> Evaluation:
        return Evaluation(top, self.remote, self.max_bytes)

    def saved(self, loc: Location, user: User | None) -> SavedExpression | None:
        """The saved expression stored at `loc`, to be read by `user`; None for anything else."""
        definition = open_definition(loc.path, loc.found)
        if definition is None:
            return None
        return SavedExpression(self, loc, user, *definition)

    def create(
        self, name: object, expression: object, operands: object, compute: bool, user: User | None
    ) -> str:
        """Save `expression` as `@personal/<name>.b2nd` (computed now if `compute`)."""
        self.roots.rootdir("@personal", user, CREATE_ACTION)
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"{INVALID}: the name is empty")
        relname = check_relpath(name.strip())
        if not relname:
            raise BadRequest(f"{INVALID}: the name is empty")
        if not relname.endswith(".b2nd"):
            relname += ".b2nd"
        logical = join_logical("@personal", relname)
        target = self.roots.locate(logical, user, CREATE_ACTION)
        if target.is_dir():
            raise BadRequest(f"{INVALID}: {logical} is a directory")
        if not isinstance(operands, dict):
            raise BadRequest("operands must be an object mapping names to dataset paths")
        paths = {}
        for var, path in operands.items():
            if not isinstance(path, str):
                raise BadRequest(f"Operand {var!r} must be a dataset path (a string)")
            paths[check_operand_name(var)] = path
        # A lazy expression must not read itself; a computed one may overwrite its operand.
        chain = frozenset() if compute else frozenset({target.path.resolve()})
        try:
            top = self.resolve(user, logical, expression, paths, chain)
        except MissingOperands as exc:
            listed = ", ".join(f"{var} = {path}" for var, path in exc.missing.items())
            raise BadRequest(f"Expression error: operands not found: {listed}") from None
        room = self.ops.room(target.path)

        def write(tmp: Path, budget: Budget) -> None:
            with self.evaluation(top) as ev:
                if compute:
                    compute_to_file(ev, tmp, budget, room)
            if not compute:
                write_shell(tmp, expression, paths)

        self.write_and_install(target.path, "Computing" if compute else "Saving", write)
        return logical

    def write_and_install(
        self, target: Path, what: str, write: Callable[[Path, Budget], None]
    ) -> None:
        """`write(tmp, budget)` in the compute pool, then `tmp` moved onto `target` (quota kept).

        A result that comes too late is dropped: nobody waits for it any more.
        """
        tmp = self.roots.new_tmp_path(target.name)

        def work(budget: Budget) -> None:
            try:
                write(tmp, budget)
                budget.check()
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

        self.runner.run(work)
        self.ops.install(tmp, target, what)

    @contextmanager
    def open_array(self, logical: str, user: User | None, label: str) -> Iterator[Any]:
        """A readable array (NDArray or evaluated expression) at `logical`, for `user`."""
        try:
            with self.runner.deadline() as budget:
                node = self.resolver(user, budget).operand(label, logical, frozenset())
        except _Missing:
            raise NotFound(f"{label} {logical} does not exist") from None
        except MissingOperands as exc:
            raise NotFound(
                f"{label} {logical}: lazy expression with missing operands {exc.missing}"
            ) from None
        if isinstance(node, ArrayOperand):
            yield node.array
            return
        if isinstance(node, RemoteOperand):
            raise BadRequest(f"{label} {logical} must be in @personal, @shared or @public")
        if isinstance(node, ShellOperand):
            yield blosc2.Proxy(ShellSource(node))
            return
        with self.evaluation(node) as ev:
            yield ev.lazy


class SavedExpression(Dataset):
    """A saved expression read by one user: every read resolves and evaluates it anew.

    Computed chunks have no stored version: no ETag, and `If-Match` matches only `*`.
    """

    def __init__(
        self, service: Expressions, loc: Location, user: User | None, expression: str, paths: dict
    ) -> None:
        self.service = service
        self.loc = loc
        self.logical = loc.logical
        self.user = user
        self.expression = expression
        self.paths = paths

    def _resolve(self) -> ExpressionOperand:
        chain = frozenset({self.loc.path.resolve()})
        return self.service.resolve(self.user, self.loc.logical, self.expression, self.paths, chain)

    def _run(self, use) -> Any:
        """`use(evaluation, budget)` in the compute pool, under the time limit."""
        try:
            top = self._resolve()
        except MissingOperands as exc:
            raise NotFound(f"Lazy expression with missing operands: {exc.missing}") from None

        def work(budget: Budget) -> Any:
            with self.service.evaluation(top) as ev:
                return use(ev, budget)

        return self.service.runner.run(work)

    def info(self) -> tuple[dict, str | None]:
        """3.3 (c), or (d) when operands are missing; no version."""
        return self._info(), None

    def _info(self) -> dict:
        mtime = self.loc.path.stat().st_mtime
        try:
            top = self._resolve()
        except MissingOperands as exc:
            return {
                "mtime": None,
                "error": "Lazy expression with missing operands",
                "expr": self.expression,
                "missing_ops": exc.missing,
            }

        def infer(budget: Budget | None = None) -> tuple[tuple[int, ...], np.dtype]:
            with self.service.evaluation(top) as ev:
                return tuple(ev.lazy.shape), np.dtype(ev.lazy.dtype)

        # Inferring shape and dtype of element-wise expressions evaluates nothing (constructors
        # are sized before they run), so it stays out of the compute pool: info answers even
        # when the pool is busy. Blosc2 computes reductions as it builds them: those run in
        # the pool, under the time limit.
        shape, dtype = infer() if _chunkable(top) else self.service.runner.run(infer)
        return {
            "shape": list(shape),
            "dtype": b2meta.dtype_to_str(dtype),
            "expression": self.expression,
            "operands": self.paths,
            "mtime": b2meta.iso_mtime(mtime),
        }

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> ArrayResult:
        """The evaluated selection (a field of it, or the rows a filter keeps)."""
        if field and filter_:
            raise BadRequest("Cannot use 'field' and 'filter' together")

        def use(ev: Evaluation, budget: Budget) -> np.ndarray:
            if not filter_:
                return evaluate_selection(ev, key, budget)
            rows = field_filters.filter_rows(
                blosc2.asarray(evaluate_selection(ev, None, budget)), filter_
            )
            items = normalise_key(key, rows.shape)
            return rows[items] if items else rows

        values = self._run(use)
        if field:
            names = values.dtype.names or ()
            if field not in names:
                raise BadRequest(
                    f"{field!r} is not a field of this dataset (fields: {list(names)})"
                )
            values = values[field]
        return ArrayResult(np.asarray(values))

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        if if_match is not None and not etag_matches(if_match, ""):
            raise PreconditionFailed(f"{self.logical} is computed: it has no version to match")
        return self._run(lambda ev, budget: compute_chunk(ev, nchunk)), None

    def download(self) -> Download:
        """The computed result as a whole `.b2nd` frame, streamed from a temporary file."""
        tmp = self.service.roots.new_tmp_path(self.loc.path.name)

        def use(ev: Evaluation, budget: Budget) -> None:
            try:
                compute_to_file(ev, tmp, budget, None)
                budget.check()  # nobody waits for a late result: drop it
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

        self._run(use)
        filename = self.loc.relpath.rsplit("/", 1)[-1]
        return Download(filename, None, _blocks_then_delete(tmp), tmp.stat().st_size)


def _blocks_then_delete(path: Path) -> Iterator[bytes]:
    try:
        yield from datasets.file_blocks(path)
    finally:
        path.unlink(missing_ok=True)
