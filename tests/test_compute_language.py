"""The expression language of lazy expressions, checked without a server."""

from __future__ import annotations

import time

import pytest

from caterva2.common.errors import BadRequest
from caterva2.subscriber.compute_budget import piece_shape, pieces, region_of
from caterva2.subscriber.expression_language import (
    check_operand_name,
    constructor_size,
    parse_expression,
)

MB = 1024 * 1024


def parse(text: str, operands=("a", "b"), max_bytes: int = 100 * MB):
    return parse_expression(text, operands, max_bytes)


@pytest.mark.parametrize(
    "text",
    [
        "a + 1",
        "(a < 500) & (b >= .1)",
        "sqrt(abs(a)) * sin(b) ** 2",
        "where(a > 5, a, 0)",
        "~(a > b) | (a == 3)",
        "a ** 0.5 + a ** (1 / 2) + a ** -1",
        "sum(a, axis=0) + mean(b)",
        "std(a, axis=(0, 1), ddof=1)",
        "a[:10] + b[2:12]",
        "a[1, ::2] - a[-1]",
        "linspace(0, 100, 1000_0000)",
        "linspace(0, 10, num=50)",
        "arange(10) + a",
        "zeros((10, 20), dtype='float32') + ones(20) + full((10, 20), 3) + eye(10, 20)",
        "a + nan + inf + 1j",
        "contains(a, 'foo')",
        "2 ** 10 * a",
    ],
)
def test_expressions_of_blosc2s_language_are_accepted(text):
    parsed = parse(text)
    assert parsed.names <= {"a", "b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.__class__", "attribute access ('.__class__') is not allowed"),
        ("a.sum()", "attribute access ('.sum') is not allowed"),
        ("__import__('os')", "names starting with '_' (__import__) are not allowed"),
        ("_secret + a", "names starting with '_' (_secret) are not allowed"),
        ("open('/etc/passwd')", "function open() is not allowed"),
        ("eval('1')", "function eval() is not allowed"),
        ("getattr(a, 'x')", "function getattr() is not allowed"),
        ("asarray(a)", "function asarray() is not allowed"),
        ("frombuffer(b'x')", "function frombuffer() is not allowed"),
        ("np.sin(a)", "attribute access ('.sin') is not allowed"),
        ("lambda: a", "lambda is not allowed"),
        ("[x for x in a]", "a comprehension is not allowed"),
        ("a if b else 1", "'x if c else y' is not allowed"),
        ("a and b", "'and'/'or' are not supported"),
        ("not a", "'not' is not supported"),
        ("a @ b", "operator '@' is not supported"),
        ("a in b", "comparison 'in' is not supported"),
        ("9 ** 9 ** 9 ** 9", "too large a constant"),
        ("1 << 100000", "too large a constant"),
        ("a ** 100000", "larger than 1024"),
        ("(a := 1)", "':=' is not allowed"),
        ("f'{a}'", "an f-string is not allowed"),
        ("sin", "sin is a function: call it"),
        ("sin(*a)", "* and ** arguments are not allowed"),
        ("sum(a, axis='x')", "must be an integer or a tuple of integers"),
        ("sum(a, where=b)", "does not take the keyword 'where'"),
        ("linspace(0, 1, a)", "must be a literal"),
        ("zeros((10, 10), chunks=(1, 1))", "does not take the keyword 'chunks'"),
        ("zeros(10, dtype='O')", "only builds numeric or boolean arrays"),
        ("a[b]", "b must be a literal"),
        ("a[1.5]", "must be integer literals or slices"),
        ("(a + b)[0]", "only operands can be subscripted"),
        ("a +", "syntax error"),
        ("", "the expression is empty"),
        ("a; import os", "syntax error"),
        ("a + ('x' * 1000)", "cannot be used in arithmetic"),
    ],
)
def test_anything_else_is_refused_with_a_clear_400(text, message):
    with pytest.raises(BadRequest) as info:
        parse(text)
    assert info.value.status == 400
    assert message in info.value.detail
    assert info.value.detail.startswith("Invalid name or expression")


def test_unknown_name_says_it_is_not_an_available_dataset():
    with pytest.raises(BadRequest) as info:
        parse("a + c")
    assert info.value.detail == "Expression error: c is not in the list of available datasets"


def test_constructors_are_sized_before_anything_is_allocated():
    start = time.monotonic()
    with pytest.raises(BadRequest) as info:
        parse("zeros((100000, 100000, 100000))")
    assert time.monotonic() - start < 1
    assert "more than the limit of 100 MiB" in info.value.detail
    assert "compute_max_size" in info.value.detail
    with pytest.raises(BadRequest):
        parse("linspace(0, 1, 1000_0000_0000)")


@pytest.mark.parametrize(
    ("name", "args", "count", "dtype"),
    [
        ("arange", {"start": 10}, 10, "int64"),
        ("arange", {"start": 2, "stop": 11, "step": 3}, 3, "int64"),
        ("arange", {"start": 0, "stop": 1, "step": 0.25}, 4, "float64"),
        ("linspace", {"start": 0, "stop": 1, "num": 7}, 7, "float64"),
        ("linspace", {"start": 0, "stop": 1}, 50, "float64"),
        ("zeros", {"shape": (3, 4), "dtype": "float32"}, 12, "float32"),
        ("full", {"shape": 5, "fill_value": 3}, 5, "int64"),
        ("eye", {"N": 3, "M": 5}, 15, "float64"),
    ],
)
def test_constructor_size_follows_numpy(name, args, count, dtype):
    found_count, found_dtype = constructor_size(name, args)
    assert (found_count, str(found_dtype)) == (count, dtype)


@pytest.mark.parametrize("name", ["sum", "np", "nan", "float32", "_x", "1a", "a-b", ""])
def test_operand_names_that_blosc2_would_misread_are_refused(name):
    with pytest.raises(BadRequest):
        check_operand_name(name)


def test_subscripts_are_rewritten_with_explicit_bounds_and_sized():
    parsed = parse("a[-3:] + a[..., 1] + b[::2]")
    text = parsed.prepared({"a": (10, 4), "b": (10, 4)}, {"a": 8, "b": 8}, 100 * MB)
    assert text == "a[7:10, 0:4] + a[0:10, 1] + b[0:10:2, 0:4]"
    with pytest.raises(BadRequest) as info:
        parsed.prepared({"a": (10, 4), "b": (10**9, 4)}, {"a": 8, "b": 8}, 100 * MB)
    assert "b[::2] would take" in info.value.detail
    with pytest.raises(BadRequest) as info:
        parse("a[20]").prepared({"a": (10,)}, {"a": 8}, MB)
    assert "index 20 out of range" in info.value.detail
    with pytest.raises(BadRequest) as info:
        parse("a[1, ::2]").prepared({"a": (10, 4)}, {"a": 8}, MB)
    assert "cannot mix integer indices with steps" in info.value.detail


def test_elementwise_expressions_are_told_apart_from_reductions_and_subscripts():
    assert parse("a + sin(b) * linspace(0, 1, 10)").elementwise
    assert not parse("sum(a) + b").elementwise
    assert not parse("a[:3] + 1").elementwise


def test_pieces_cover_a_region_exactly_once_aligned_to_chunks():
    shape, chunks = (37, 23, 5), (10, 7, 5)
    region = (slice(3, 30), slice(0, 23), slice(1, 4))
    seen = {}
    piece = piece_shape(shape, chunks, 1_000_000)  # huge items: pieces of one chunk
    assert piece == chunks
    for absolute, relative in pieces(region, piece):
        for a, r, reg in zip(absolute, relative, region, strict=True):
            assert a.start - reg.start == r.start and a.stop - reg.start == r.stop
        cells = [range(s.start, s.stop) for s in absolute]
        for i in cells[0]:
            for j in cells[1]:
                for k in cells[2]:
                    seen[i, j, k] = seen.get((i, j, k), 0) + 1
    assert len(seen) == 27 * 23 * 3 and set(seen.values()) == {1}


def test_region_of_turns_integer_indices_into_unit_slices():
    assert region_of((2, slice(1, None)), (5, 6, 7)) == (
        (slice(2, 3), slice(1, 6), slice(0, 7)),
        (0,),
    )
    assert region_of((slice(None, None, 2),), (5,)) is None
