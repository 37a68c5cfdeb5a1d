"""Validation: filters, primary-key lists, limits, vectors — pure, no servers."""

from __future__ import annotations

import numpy as np
import pytest

from shardproxy.errors import InvalidArgument
from shardproxy.validation import (
    pk_list,
    validate_filter,
    validate_limit,
    validate_matrix,
    validate_output_fields,
    validate_vectors,
)

FIELDS = ["id", "vector", "color", "price", "tags", "meta"]


@pytest.mark.parametrize(
    "expr",
    [
        'color == "red"',
        "price > 10 and price <= 20.5",
        'color in ["red", "blue"] or not (price < 3)',
        'color like "re%"',
        "array_contains(tags, 3)",
        'json_contains(meta["k"], 1)',
        "id in [1, 2, 3]",
        "price + 1 > 2 * 3",
        "price >= {low}",
        "color is null",
    ],
)
def test_valid_filters_pass(expr: str) -> None:
    validate_filter(expr, FIELDS, dynamic=False)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("price > 10 and (color == 'a'", "unclosed"),
        ("price > 10)", "unbalanced"),
        ("price >", "ends with"),
        ("price > > 3", "followed by"),
        ("color == 'x'; DROP", "unexpected character"),
        ("__import__('os')", "unknown function"),
        ("eval('1')", "unknown function"),
        ("color.upper()", "unexpected character"),
        ("weight > 3", "does not exist"),
        ("price 3", "missing operator"),
        ("(" * 100 + "price > 1" + ")" * 100, "nesting"),
        ('color == "unterminated', "unexpected character"),
    ],
)
def test_bad_filters_are_rejected_with_reason(expr: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_filter(expr, FIELDS, dynamic=False)


def test_dynamic_collections_accept_unknown_identifiers() -> None:
    validate_filter("weight > 3", FIELDS, dynamic=True)


def test_pk_list_parses_what_pymilvus_sends() -> None:
    assert pk_list("id in [1,2,30]", "id", False) == [1, 2, 30]
    assert pk_list("pk in ['a','b\\'c']", "pk", True) == ["a", "b'c"]
    assert pk_list('pk in ["x"]', "pk", True) == ["x"]
    assert pk_list("id in []", "id", False) == []
    assert pk_list("id in [1,2] and price > 3", "id", False) is None
    assert pk_list("other in [1]", "id", False) is None
    assert pk_list("id in [1.5]", "id", False) is None


@pytest.mark.parametrize("limit, offset", [(0, 0), (16385, 0), (10, -1), (16000, 1000), (-5, 0)])
def test_limits(limit: int, offset: int) -> None:
    with pytest.raises(InvalidArgument):
        validate_limit(limit, offset, 16384)


def test_limits_ok() -> None:
    validate_limit(1, 0, 16384)
    validate_limit(16384, 0, 16384)


def test_vectors_dimension_and_finiteness() -> None:
    validate_vectors([np.zeros(8, np.float32)], 8)
    with pytest.raises(InvalidArgument, match="dimension 7"):
        validate_vectors([np.zeros(7, np.float32)], 8)
    with pytest.raises(InvalidArgument, match="NaN"):
        validate_vectors([np.array([0, np.nan], np.float32)], 2)
    m = np.ones((5, 3), np.float32)
    m[2, 1] = np.inf
    with pytest.raises(InvalidArgument, match=r"rows \[2\]"):
        validate_matrix(m, 3, "vector")


def test_output_fields() -> None:
    validate_output_fields(["color", "*"], FIELDS, dynamic=False)
    with pytest.raises(InvalidArgument, match="'nope'"):
        validate_output_fields(["nope"], FIELDS, dynamic=False)


@pytest.mark.parametrize(
    "expr",
    [
        "TEXT_MATCH(text, 'red')",
        'PHRASE_MATCH(text, "red shoes", 2)',
        'x == 0x1F or x == 0b101',
        'element_filter(s, $[x] > 1)',
        'MATCH_LEAST(s, $[x] > 1, 2)',
        'ts > ISO "2025-01-01T00:00:00Z"',
        'meta["a"]["b"] == 1 and tags[0] == "a" and x is not null',
        'ARRAY_CONTAINS_ALL(tags, ["a"]) and json_contains_any(meta["t"], [1, 2])',
    ],
)
def test_valid_milvus_filters_pass(expr: str) -> None:
    validate_filter(expr, ["x", "s", "ts", "meta", "tags", "text"], dynamic=False)
