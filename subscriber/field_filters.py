"""Row filters over the fields of structured arrays, e.g. `(a < 500) & (b >= .1)`.

The text is parsed with Python's `ast` and only comparisons, arithmetic,
boolean operators, numbers, strings and field names pass; nothing else (no
attributes, calls, subscripts or other names) ever reaches an evaluator.
Blosc2 then evaluates it chunk by chunk.
"""

from __future__ import annotations

import ast

import blosc2
import numpy as np

from ..common.errors import BadRequest

ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.And,
    ast.Or,
    ast.BitAnd,
    ast.BitOr,
    ast.BitXor,
    ast.Invert,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
)


def check_filter(expr: str, dtype: np.dtype) -> str:
    """Validate a filter against a structured dtype; returns the text to evaluate."""
    names = dtype.names
    if not names:
        raise BadRequest("Filters work only on structured arrays (with fields)")
    expr = expr.strip()
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise BadRequest(f"Invalid filter {expr!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, ALLOWED_NODES):
            raise BadRequest(f"Invalid filter {expr!r}: {type(node).__name__} is not allowed")
        if isinstance(node, ast.Name) and node.id not in names:
            raise BadRequest(f"Invalid filter {expr!r}: {node.id!r} is not a field ({list(names)})")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str | bytes):
            raise BadRequest(f"Invalid filter {expr!r}: constant {node.value!r} is not allowed")
    if isinstance(tree.body, ast.Name):
        if dtype[tree.body.id] != np.bool_:
            raise BadRequest(f"Invalid filter {expr!r}: field {tree.body.id!r} is not boolean")
        return f"{tree.body.id} == True"
    return expr


def filter_rows(array: blosc2.NDArray, expr: str) -> np.ndarray:
    """The rows of a structured array where `expr` holds, in their original order."""
    text = check_filter(expr, array.dtype)
    try:
        return np.asarray(array[text][()])
    except (ValueError, TypeError, KeyError, SyntaxError) as exc:
        raise BadRequest(f"Invalid filter {expr!r}: {exc}") from None
