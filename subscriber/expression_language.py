"""The expression language of `/api/lazyexpr/`: Blosc2's lazy expressions, checked before use.

An expression is parsed with Python's `ast` and walked node by node against a
whitelist: numbers and strings, operand names, arithmetic, comparisons and
bitwise operators, subscripts with literal indices, and calls of Blosc2's
element-wise functions, reductions and a few constructors, by bare name.
Everything else (attribute access, names starting with `_`, other calls,
lambdas, comprehensions, `and`/`or`, ...) is refused with a message that says
what and where, so nothing but arithmetic on the named datasets ever reaches
Blosc2's evaluator.

Work that Python itself would do while building the expression is bounded too:
constant sub-expressions are folded here with bounded integers (no `9**9**9`),
constructors and subscripts are sized before anything is allocated.
"""

from __future__ import annotations

import ast
import copy
import math
import operator
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..common.errors import BadRequest
from .compute_budget import format_bytes

MAX_EXPRESSION_LENGTH = 4096
MAX_DEPTH = 64
MAX_INT_BITS = 256
MAX_POWER = 1024

ELEMENTWISE_FUNCTIONS = frozenset(
    """abs acos acosh add arccos arccosh arcsin arcsinh arctan arctan2 arctanh asin asinh
    atan atan2 atanh bitwise_and bitwise_invert bitwise_left_shift bitwise_or
    bitwise_right_shift bitwise_xor ceil clip conj contains copysign cos cosh divide
    endswith equal exp expm1 floor floor_divide greater greater_equal hypot imag isfinite
    isinf isnan less less_equal log log1p log2 log10 logaddexp logical_and logical_not
    logical_or logical_xor lower maximum minimum multiply negative nextafter not_equal
    positive pow real reciprocal remainder round sign signbit sin sinh sqrt square
    startswith subtract tan tanh trunc upper where""".split()
)
# Reductions: keyword arguments each accepts (all must be literals).
REDUCTIONS: dict[str, frozenset[str]] = {
    **{name: frozenset({"axis", "keepdims"}) for name in ("sum", "prod", "min", "max", "mean")},
    **{name: frozenset({"axis", "keepdims"}) for name in ("any", "all", "count_nonzero")},
    **{name: frozenset({"axis", "keepdims"}) for name in ("argmax", "argmin")},
    "std": frozenset({"axis", "keepdims", "ddof"}),
    "var": frozenset({"axis", "keepdims", "ddof"}),
}
# Constructors: their parameters, in positional order.
CONSTRUCTORS: dict[str, tuple[str, ...]] = {
    "arange": ("start", "stop", "step", "dtype"),
    "linspace": ("start", "stop", "num", "endpoint", "dtype"),
    "zeros": ("shape", "dtype"),
    "ones": ("shape", "dtype"),
    "full": ("shape", "fill_value", "dtype"),
    "eye": ("N", "M", "k", "dtype"),
}
FUNCTIONS = ELEMENTWISE_FUNCTIONS | REDUCTIONS.keys() | CONSTRUCTORS.keys()
CONSTANT_NAMES = {"nan": math.nan, "inf": math.inf}
# Names Blosc2 gives a meaning of its own: never operand names.
RESERVED_NAMES = frozenset(
    """np blosc2 nan inf int8 int16 int32 int64 uint8 uint16 uint32 uint64 float32 float64
    complex64 complex128 bool str bytes i1 i2 i4 i8 u1 u2 u4 u8 f4 f8 c8 c16 b1 S V""".split()
)

BINARY_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
UNARY_OPERATORS: dict[type, Any] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
NUMERIC_KINDS = "?biufc"

INVALID = "Invalid name or expression"


def refuse(message: str) -> BadRequest:
    return BadRequest(f"{INVALID}: {message}")


def check_operand_name(name: object) -> str:
    """400 unless `name` can name an operand in an expression."""
    if not isinstance(name, str) or not name.isidentifier():
        raise BadRequest(f"Operand name {name!r} is not a valid identifier")
    if name.startswith("_"):
        raise BadRequest(f"Operand name {name!r} must not start with '_'")
    if name in FUNCTIONS or name in RESERVED_NAMES:
        raise BadRequest(f"Operand name {name!r} is reserved (a function or type of Blosc2)")
    return name


@dataclass
class Subscript:
    """A subscript of an operand, with its literal index (resolved against the shape later)."""

    node: ast.Subscript
    operand: str
    items: tuple


@dataclass
class ParsedExpression:
    """A checked expression: its tree, the operands it uses, what it needs to be evaluated."""

    text: str
    tree: ast.Expression
    names: set[str] = field(default_factory=set)
    subscripts: list[Subscript] = field(default_factory=list)
    reductions: bool = False

    @property
    def elementwise(self) -> bool:
        """Whether every result element depends only on the same (broadcast) operand elements."""
        return not self.subscripts and not self.reductions

    def prepared(
        self, shapes: Mapping[str, tuple[int, ...]], itemsizes: Mapping[str, int], max_bytes: int
    ) -> str:
        """The text for Blosc2, with subscripts checked and spelled with explicit bounds.

        Blosc2 mishandles negative and open bounds in subscripts, so each one is
        rewritten against the operand's current shape; a subscript larger than
        `max_bytes` is refused (Blosc2 materialises it).
        """
        if not self.subscripts:
            return self.text
        tree = copy.deepcopy(self.tree)
        nodes = {id(s.node): s for s in self.subscripts}
        # Deep copies lose identity: walk both trees in parallel to find the copies.
        for original, copied in zip(ast.walk(self.tree), ast.walk(tree), strict=True):
            sub = nodes.get(id(original))
            if sub is None:
                continue
            items, out_shape = normalise_index(sub.items, shapes[sub.operand], sub.operand)
            nbytes = math.prod(out_shape) * itemsizes[sub.operand]
            if nbytes > max_bytes:
                raise refuse(
                    f"{ast.unparse(sub.node)} would take {format_bytes(nbytes)}, more than the "
                    f"limit of {format_bytes(max_bytes)} per request (compute_max_size)"
                )
            copied.slice = index_node(items)
        return ast.unparse(tree)


def normalise_index(items: tuple, shape: tuple[int, ...], name: str) -> tuple[tuple, tuple]:
    """Explicit, non-negative index items for `shape`, and the shape they select."""
    if sum(item is Ellipsis for item in items) > 1:
        raise refuse(f"more than one '...' in a subscript of {name}")
    if Ellipsis in items:
        pos = items.index(Ellipsis)
        fill = len(shape) - (len(items) - 1)
        items = items[:pos] + (slice(None),) * max(fill, 0) + items[pos + 1 :]
    if len(items) > len(shape):
        raise refuse(f"{len(items)} indices for {name}, which has {len(shape)} dimensions")
    out, selected = [], []
    for axis, size in enumerate(shape):
        item = items[axis] if axis < len(items) else slice(None)
        if isinstance(item, int):
            if not -size <= item < size:
                raise refuse(f"index {item} out of range for axis {axis} of {name} (size {size})")
            out.append(item % size)
            continue
        start, stop, step = item.indices(size)
        if step < 1:
            raise refuse(f"negative steps are not supported (in a subscript of {name})")
        stop = max(start, stop)
        out.append(slice(start, stop, None if step == 1 else step))
        selected.append(len(range(start, stop, step)))
    stepped = any(isinstance(i, slice) and i.step for i in out)
    if stepped and any(isinstance(i, int) for i in out):
        # Blosc2 fails on these; better a clear refusal than its IndexError.
        raise refuse(f"a subscript of {name} cannot mix integer indices with steps")
    return tuple(out), tuple(selected)


def index_node(items: tuple) -> ast.expr:
    """The AST of an index made of ints and slices."""

    def one(item: int | slice) -> ast.expr:
        if isinstance(item, int):
            return ast.Constant(item)
        parts = [None if v is None else ast.Constant(v) for v in (item.start, item.stop, item.step)]
        return ast.Slice(*parts)

    nodes = [one(item) for item in items]
    return nodes[0] if len(nodes) == 1 else ast.Tuple(nodes, ast.Load())


def parse_expression(text: object, operands: Collection[str], max_bytes: int) -> ParsedExpression:
    """Parse and check an expression whose variables are `operands`; 400 when it is refused."""
    if not isinstance(text, str) or not text.strip():
        raise refuse("the expression is empty")
    text = text.strip()
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise refuse(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise refuse(f"syntax error in {text!r}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise refuse(f"cannot parse {text!r}: {exc}") from None
    parsed = ParsedExpression(text, tree)
    _Checker(parsed, set(operands), max_bytes).value(tree.body, 0)
    return parsed


class _Checker:
    """Walks an expression tree, refusing anything outside the language."""

    def __init__(self, parsed: ParsedExpression, operands: set[str], max_bytes: int) -> None:
        self.parsed = parsed
        self.operands = operands
        self.max_bytes = max_bytes

    def value(self, node: ast.expr, depth: int) -> None:
        """An array-valued (or scalar) sub-expression."""
        if depth > MAX_DEPTH:
            raise refuse(f"the expression is nested more than {MAX_DEPTH} levels deep")
        depth += 1
        if is_constant(node, self.operands):
            if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
                return  # text for comparisons and string functions
            fold(node)
            return
        if isinstance(node, ast.Name):
            self.name(node)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in BINARY_OPERATORS:
                raise refuse(f"operator {_op_text(node.op)} is not supported")
            self.value(node.left, depth)
            self.value(node.right, depth)
            if isinstance(node.op, ast.Pow | ast.LShift | ast.RShift) and is_constant(
                node.right, self.operands
            ):
                exponent = fold(node.right)
                if isinstance(exponent, int) and abs(exponent) > MAX_POWER:
                    raise refuse(f"exponent or shift {exponent} is larger than {MAX_POWER}")
        elif isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                raise refuse("'not' is not supported: use '~' on boolean arrays")
            self.value(node.operand, depth)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if not isinstance(op, COMPARISONS):
                    raise refuse(f"comparison {_op_text(op)} is not supported")
            self.value(node.left, depth)
            for comparator in node.comparators:
                self.value(comparator, depth)
        elif isinstance(node, ast.BoolOp):
            raise refuse("'and'/'or' are not supported: use '&' and '|' on boolean arrays")
        elif isinstance(node, ast.Call):
            self.call(node, depth)
        elif isinstance(node, ast.Subscript):
            self.subscript(node)
        elif isinstance(node, ast.Attribute):
            raise refuse(f"attribute access ('.{node.attr}') is not allowed")
        elif isinstance(node, ast.Constant):
            raise refuse(f"the constant {node.value!r} is not allowed")
        else:
            raise refuse(f"{_describe(node)} is not allowed")

    def name(self, node: ast.Name) -> None:
        name = node.id
        if name.startswith("_"):
            raise refuse(f"names starting with '_' ({name}) are not allowed")
        if name in self.operands:
            self.parsed.names.add(name)
            return
        if name in CONSTANT_NAMES:
            return
        if name in FUNCTIONS:
            raise refuse(f"{name} is a function: call it, e.g. {name}(...)")
        raise BadRequest(f"Expression error: {name} is not in the list of available datasets")

    def call(self, node: ast.Call, depth: int) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            raise refuse(f"attribute access ('.{func.attr}') is not allowed")
        if not isinstance(func, ast.Name):
            raise refuse("only functions called by their name are allowed")
        name = func.id
        if name.startswith("_"):
            raise refuse(f"names starting with '_' ({name}) are not allowed")
        if name not in FUNCTIONS:
            raise refuse(f"function {name}() is not allowed (not in Blosc2's expression language)")
        if any(isinstance(arg, ast.Starred) for arg in node.args) or any(
            kw.arg is None for kw in node.keywords
        ):
            raise refuse(f"* and ** arguments are not allowed (in {name}())")
        if name in CONSTRUCTORS:
            self.constructor(node, name)
        elif name in REDUCTIONS:
            self.reduction(node, name, depth)
        else:
            if node.keywords:
                raise refuse(f"{name}() takes no keyword arguments here")
            for arg in node.args:
                self.value(arg, depth)

    def reduction(self, node: ast.Call, name: str, depth: int) -> None:
        if not node.args:
            raise refuse(f"{name}() needs an argument")
        self.value(node.args[0], depth)
        if len(node.args) > 2:
            raise refuse(f"{name}() takes at most an array and an axis as positional arguments")
        for arg in node.args[1:]:
            _axis(literal(arg), name)
        for kw in node.keywords:
            if kw.arg not in REDUCTIONS[name]:
                raise refuse(f"{name}() does not take the keyword {kw.arg!r} here")
            value = literal(kw.value)
            if kw.arg == "axis":
                _axis(value, name)
        self.parsed.reductions = True

    def constructor(self, node: ast.Call, name: str) -> None:
        params = CONSTRUCTORS[name]
        if len(node.args) > len(params):
            raise refuse(f"{name}() takes at most {len(params)} arguments")
        values = {p: literal(arg) for p, arg in zip(params, node.args, strict=False)}
        for kw in node.keywords:
            if kw.arg not in params:
                raise refuse(f"{name}() does not take the keyword {kw.arg!r} here")
            if kw.arg in values:
                raise refuse(f"{name}() got {kw.arg!r} twice")
            values[kw.arg] = literal(kw.value)
        count, dtype = constructor_size(name, values)
        nbytes = count * dtype.itemsize
        if nbytes > self.max_bytes:
            raise refuse(
                f"{ast.unparse(node)} would create {format_bytes(nbytes)}, more than the limit "
                f"of {format_bytes(self.max_bytes)} per request (compute_max_size)"
            )

    def subscript(self, node: ast.Subscript) -> None:
        if not isinstance(node.value, ast.Name):
            raise refuse("only operands can be subscripted (e.g. a[:10])")
        self.name(node.value)
        if node.value.id not in self.operands:
            raise refuse("only operands can be subscripted (e.g. a[:10])")
        index = node.slice
        raw = index.elts if isinstance(index, ast.Tuple) else [index]
        items = tuple(_index_item(item) for item in raw)
        self.parsed.subscripts.append(Subscript(node, node.value.id, items))


def _axis(value: Any, name: str) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, tuple):
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok and value is not None:
        raise refuse(f"the axis of {name}() must be an integer or a tuple of integers")


def _index_item(node: ast.expr) -> int | slice | type(Ellipsis):
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return Ellipsis
    if isinstance(node, ast.Slice):
        parts = []
        for part in (node.lower, node.upper, node.step):
            value = None if part is None else literal(part)
            if value is not None and not _is_int(value):
                raise refuse("slice bounds must be integer literals")
            parts.append(value)
        if parts[2] == 0:
            raise refuse("slice step cannot be zero")
        return slice(*parts)
    value = literal(node)
    if not _is_int(value):
        raise refuse("indices must be integer literals or slices (e.g. a[2], a[:10, 1:3])")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_constant(node: ast.expr, operands: Collection[str]) -> bool:
    """Whether a sub-expression is made of literals only (Python would fold it)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id in CONSTANT_NAMES and node.id not in operands
    if isinstance(node, ast.UnaryOp):
        return is_constant(node.operand, operands)
    if isinstance(node, ast.BinOp):
        return is_constant(node.left, operands) and is_constant(node.right, operands)
    return False


def _check_int(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise refuse(f"integer constants must fit in {MAX_INT_BITS} bits")
    return value


def fold(node: ast.expr) -> Any:
    """The value of a constant sub-expression, computed with bounded integers."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool | int | float | complex):
            return _check_int(value)
        raise refuse(f"the constant {value!r} cannot be used in arithmetic")
    if isinstance(node, ast.Name) and node.id in CONSTANT_NAMES:
        return CONSTANT_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY_OPERATORS:
        value = fold(node.operand)
        try:
            return _check_int(UNARY_OPERATORS[type(node.op)](value))
        except TypeError as exc:
            raise refuse(f"{ast.unparse(node)}: {exc}") from None
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPERATORS:
        left, right = fold(node.left), fold(node.right)
        if isinstance(node.op, ast.Pow | ast.LShift) and _is_int(left) and _is_int(right):
            bits = max(1, left.bit_length()) * abs(right)
            if abs(right) > MAX_POWER or bits > MAX_INT_BITS:
                raise refuse(f"{ast.unparse(node)} is too large a constant")
        try:
            return _check_int(BINARY_OPERATORS[type(node.op)](left, right))
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise refuse(f"{ast.unparse(node)}: {exc}") from None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        raise refuse("'not' is not supported: use '~' on boolean arrays")
    raise refuse(f"{_describe(node)} is not allowed")


def literal(node: ast.expr) -> Any:
    """A literal argument: a number, a string, True/False/None, or a tuple/list of them."""
    if isinstance(node, ast.Tuple | ast.List):
        if len(node.elts) > 32:
            raise refuse("tuples of more than 32 items are not allowed")
        return tuple(literal(elt) for elt in node.elts)
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, str)):
        return node.value
    if is_constant(node, ()):
        return fold(node)
    raise refuse(f"{ast.unparse(node)} must be a literal (a number, a string or a tuple)")


def _count(name: str, value: Any, what: str) -> int:
    if not _is_int(value) or value < 0:
        raise refuse(f"{what} of {name}() must be a non-negative integer")
    return value


def _shape_size(name: str, shape: Any) -> int:
    shape = shape if isinstance(shape, tuple) else (shape,)
    return math.prod(_count(name, s, "the shape") for s in shape)


def _dtype(name: str, value: Any, default: str) -> np.dtype:
    if value is None:
        return np.dtype(default)
    if not isinstance(value, str):
        raise refuse(f"the dtype of {name}() must be a string such as 'float32'")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise refuse(f"{value!r} is not a data type") from None
    if dtype.kind not in NUMERIC_KINDS:
        raise refuse(f"{name}() only builds numeric or boolean arrays, not {value!r}")
    return dtype


def _real(name: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refuse(f"{what} of {name}() must be a real number")
    return value


def constructor_size(name: str, args: dict[str, Any]) -> tuple[int, np.dtype]:
    """How many elements a constructor call creates, and of which type (nothing is allocated)."""
    if name == "arange":
        if "stop" not in args:
            args = {**args, "start": 0, "stop": args.get("start")}
        start = _real(name, args.get("start", 0), "start")
        stop = _real(name, args.get("stop"), "stop")
        step = _real(name, args.get("step", 1), "step")
        if step == 0:
            raise refuse("the step of arange() cannot be zero")
        count = max(0, math.ceil((stop - start) / step))
        ints = all(_is_int(v) for v in (start, stop, step))
        return count, _dtype(name, args.get("dtype"), "int64" if ints else "float64")
    if name == "linspace":
        _real(name, args.get("start"), "start")
        _real(name, args.get("stop"), "stop")
        return _count(name, args.get("num", 50), "num"), _dtype(name, args.get("dtype"), "float64")
    if name in ("zeros", "ones"):
        return _shape_size(name, args.get("shape")), _dtype(name, args.get("dtype"), "float64")
    if name == "full":
        fill = args.get("fill_value")
        if isinstance(fill, str) or fill is None or isinstance(fill, tuple):
            raise refuse("the fill_value of full() must be a number")
        default = "bool" if isinstance(fill, bool) else "int64" if _is_int(fill) else "float64"
        return _shape_size(name, args.get("shape")), _dtype(name, args.get("dtype"), default)
    if name == "eye":
        rows = _count(name, args.get("N"), "N")
        cols = rows if args.get("M") is None else _count(name, args.get("M"), "M")
        return rows * cols, _dtype(name, args.get("dtype"), "float64")
    raise AssertionError(name)


def _op_text(op: ast.AST) -> str:
    texts = {ast.MatMult: "@", ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
    return repr(texts.get(type(op), type(op).__name__))


def _describe(node: ast.AST) -> str:
    names = {
        ast.Lambda: "lambda",
        ast.IfExp: "'x if c else y'",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a generator expression",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.List: "a list",
        ast.Tuple: "a tuple",
        ast.NamedExpr: "':='",
        ast.JoinedStr: "an f-string",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.Starred: "'*'",
        ast.Slice: "a slice outside a subscript",
    }
    return names.get(type(node), type(node).__name__)
