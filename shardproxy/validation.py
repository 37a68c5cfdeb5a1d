"""Request validation: pure functions that raise :class:`InvalidArgument` with a precise message.

Everything a caller can get wrong is checked here, before any node sees the request: vector
dimension and finiteness, limits and offsets, field names, and the filter expression (length,
nesting, balanced brackets and quotes, known tokens only, no unknown functions, no unknown fields
on a fixed schema). The filter check is deliberately conservative: it accepts the Milvus boolean
expression grammar's tokens and rejects anything else with the offending position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pymilvus.grpc_gen import common_pb2

from shardproxy.errors import InvalidArgument

MAX_FILTER_CHARS = 4 * 1024 * 1024  # pymilvus packs `id in [...]` for large gets/deletes
MAX_FILTER_DEPTH = 64

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>0[xX][0-9a-fA-F]+|0[bB][01]+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<template>\{[A-Za-z_][A-Za-z0-9_]*\})
  | (?P<ident>\$meta|\$\[[A-Za-z_][A-Za-z0-9_]*\]|[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||\*\*|<<|>>|[<>+\-*/%&|^~!(),\[\]])
    """,
    re.VERBOSE,
)

KEYWORDS = frozenset(
    {"and", "or", "not", "in", "like", "is", "null", "true", "false", "exists", "iso", "interval"}
)
FUNCTIONS = frozenset(
    {
        "json_contains", "json_contains_all", "json_contains_any",
        "array_contains", "array_contains_all", "array_contains_any", "array_length",
        "text_match", "phrase_match", "random_sample", "exists",
        "st_equals", "st_touches", "st_overlaps", "st_crosses", "st_contains",
        "st_intersects", "st_within", "st_dwithin", "st_isvalid",
        # struct arrays: element predicates use $[subfield]
        "element_filter", "match_all", "match_any", "match_least", "match_most", "match_exact",
    }
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(expr: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if m is None:
            snippet = expr[pos : pos + 20]
            raise InvalidArgument(
                f"invalid filter expression: unexpected character {expr[pos]!r} at position {pos} (near {snippet!r})"
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    return out


def validate_filter(
    expr: str,
    fields: Iterable[str] | None = None,
    dynamic: bool = True,
) -> list[Token]:
    """Check a boolean filter expression; return its tokens.

    ``fields`` are the collection's field names; when ``dynamic`` is false an identifier that is
    not a field, keyword or known function is an unknown field.
    """
    if len(expr) > MAX_FILTER_CHARS:
        raise InvalidArgument(
            f"filter expression too long: {len(expr)} characters (limit {MAX_FILTER_CHARS})"
        )
    tokens = tokenize(expr)
    known = set(fields or ())
    depth = 0
    stack: list[str] = []
    pairs = {")": "(", "]": "["}
    for i, t in enumerate(tokens):
        if t.kind == "op" and t.text in "([":
            stack.append(t.text)
            depth = max(depth, len(stack))
            if depth > MAX_FILTER_DEPTH:
                raise InvalidArgument(
                    f"invalid filter expression: nesting deeper than {MAX_FILTER_DEPTH} at position {t.pos}"
                )
        elif t.kind == "op" and t.text in ")]":
            if not stack or stack[-1] != pairs[t.text]:
                raise InvalidArgument(
                    f"invalid filter expression: unbalanced {t.text!r} at position {t.pos}"
                )
            stack.pop()
        elif t.kind == "ident":
            low = t.text.lower()
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            is_call = nxt is not None and nxt.kind == "op" and nxt.text == "("
            if is_call and low not in KEYWORDS:
                if low not in FUNCTIONS:
                    raise InvalidArgument(
                        f"invalid filter expression: unknown function {t.text!r} at position {t.pos}"
                    )
            elif is_call or low in KEYWORDS or t.text == "$meta" or t.text.startswith("$["):
                pass
            elif fields is not None and not dynamic and t.text not in known:
                raise InvalidArgument(
                    f"invalid filter expression: field {t.text!r} does not exist in the collection"
                )
    if stack:
        raise InvalidArgument(f"invalid filter expression: unclosed {stack[-1]!r}")
    _check_no_dangling_operator(tokens)
    return tokens


_BINARY = {"==", "!=", "<", ">", "<=", ">=", "&&", "||", "+", "-", "*", "/", "%", "**", "&", "|", "^", "<<", ">>"}


def _check_no_dangling_operator(tokens: Sequence[Token]) -> None:
    if not tokens:
        return
    last = tokens[-1]
    if (last.kind == "op" and last.text in _BINARY | {"!", "~", ","}) or (
        last.kind == "ident" and last.text.lower() in {"and", "or", "not", "in", "like"}
    ):
        raise InvalidArgument(f"invalid filter expression: it ends with {last.text!r}")
    first = tokens[0]
    if first.kind == "op" and first.text in _BINARY - {"-", "+"}:
        raise InvalidArgument(f"invalid filter expression: it starts with {first.text!r}")
    for a, b in zip(tokens, tokens[1:]):
        if a.kind == "op" and b.kind == "op" and a.text in _BINARY and b.text in _BINARY - {"-", "+"}:
            raise InvalidArgument(
                f"invalid filter expression: {a.text!r} followed by {b.text!r} at position {b.pos}"
            )
        a_operand = a.kind in {"number", "string", "template"} or (
            a.kind == "ident" and a.text.lower() not in KEYWORDS
        )
        b_operand = b.kind in {"number", "string", "template"} or (
            b.kind == "ident" and b.text.lower() not in KEYWORDS
        )
        if a_operand and b_operand:
            raise InvalidArgument(
                f"invalid filter expression: missing operator between {a.text[:20]!r} and {b.text[:20]!r} at position {b.pos}"
            )


def _unquote(s: str) -> str:
    body = s[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def pk_list(expr: str, pk_field: str, pk_is_str: bool) -> list[int] | list[str] | None:
    """If ``expr`` is exactly ``<pk> in [v1, v2, ...]`` (what pymilvus sends for get/delete by
    ids), return the values; otherwise None."""
    tokens = tokenize(expr)
    if len(tokens) < 4 or tokens[0].kind != "ident" or tokens[0].text != pk_field:
        return None
    if tokens[1].kind != "ident" or tokens[1].text.lower() != "in":
        return None
    if tokens[2].text != "[" or tokens[-1].text != "]":
        return None
    body = tokens[3:-1]
    values: list = []
    expect_value = True
    for t in body:
        if expect_value:
            if pk_is_str and t.kind == "string":
                values.append(_unquote(t.text))
            elif not pk_is_str and t.kind == "number" and re.fullmatch(r"\d+", t.text):
                values.append(int(t.text))
            else:
                return None
        elif t.text != ",":
            return None
        expect_value = not expect_value
    if body and expect_value:  # trailing comma
        return None
    return values


def validate_limit(limit: int, offset: int, max_top_k: int, what: str = "limit") -> None:
    if limit < 1 or limit > max_top_k:
        raise InvalidArgument(f"{what} ({limit}) is out of range [1, {max_top_k}]")
    if offset < 0:
        raise InvalidArgument(f"offset ({offset}) must not be negative")
    if offset + limit > max_top_k:
        raise InvalidArgument(
            f"offset + {what} ({offset} + {limit} = {offset + limit}) exceeds {max_top_k}"
        )


_PH = common_pb2.PlaceholderType


def query_vectors(placeholder_group: bytes) -> tuple[int, list[np.ndarray] | None, int]:
    """Parse a search request's placeholder group: (placeholder type, float vectors or None, nq)."""
    group = common_pb2.PlaceholderGroup()
    try:
        group.ParseFromString(placeholder_group)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError or others
        raise InvalidArgument(f"malformed placeholder group: {exc}") from exc
    if not group.placeholders:
        raise InvalidArgument("search request carries no query vectors")
    ph = group.placeholders[0]
    if ph.type == _PH.FloatVector:
        vecs = []
        for i, raw in enumerate(ph.values):
            if len(raw) % 4:
                raise InvalidArgument(f"query vector {i}: {len(raw)} bytes is not a whole number of float32")
            vecs.append(np.frombuffer(raw, dtype="<f4"))
        return ph.type, vecs, len(ph.values)
    return ph.type, None, len(ph.values)


def validate_vectors(vectors: Sequence[np.ndarray], dim: int, what: str = "query vector") -> None:
    for i, v in enumerate(vectors):
        if v.shape[-1] != dim:
            raise InvalidArgument(
                f"{what} {i} has dimension {v.shape[-1]}, but the collection's vector field has dimension {dim}"
            )
        if not np.all(np.isfinite(v)):
            raise InvalidArgument(f"{what} {i} contains NaN or infinite values")


def validate_matrix(matrix: np.ndarray, dim: int, field: str) -> None:
    """Inserted float vectors: right dimension, finite values."""
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise InvalidArgument(
            f"field {field!r}: vectors have dimension {matrix.shape[-1] if matrix.size else 0}, expected {dim}"
        )
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise InvalidArgument(
            f"field {field!r}: {int(bad.sum())} vector(s) contain NaN or infinite values (rows {rows})"
        )


def validate_output_fields(requested: Iterable[str], fields: Iterable[str], dynamic: bool) -> None:
    known = set(fields)
    for name in requested:
        if name in ("*", "count(*)", "%") or name in known:
            continue
        if dynamic and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            continue
        raise InvalidArgument(f"field {name!r} does not exist in the collection")
