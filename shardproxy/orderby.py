"""``order_by_fields`` on query and search, as Milvus defines it (pure; no I/O).

What pymilvus sends: ``order_by_fields`` in ``query_params`` / ``search_params`` as one string,
``"price:desc,brand"`` (``field[:asc|desc]`` joined by commas; the direction defaults to asc,
``ascending`` / ``descending`` are accepted too). A spec is a scalar field of the schema (bool,
int8..int64, float, double, varchar), a JSON path into a JSON field (``meta["price"]``), or, on a
collection with a dynamic field, a dynamic key (``age``, ``user["score"]``).

Comparison (milvus-io/milvus ``internal/proxy`` order-by operator): numbers numerically, strings
byte-wise, false < true; JSON values of the same kind likewise, of different kinds by their JSON
text; nulls (a null row, a missing JSON key, a JSON null) first, whatever the direction.

- Query (Milvus: "ORDER BY requires explicit limit"): the rows matching the filter ordered by the
  keys, ties by primary key ascending (the proxy's deterministic choice; Milvus's segment merge
  leaves the order of equal keys unspecified), then ``offset`` / ``limit``.
- Search: the first ``offset + limit`` hits by distance, stably re-sorted by the keys (equal keys
  keep their distance order), then ``offset`` / ``limit``; with group-by, whole groups are sorted
  by their first hit and ``offset`` / ``limit`` count groups.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymilvus.grpc_gen import schema_pb2

from shardproxy import fielddata
from shardproxy.errors import InvalidArgument

DataType = schema_pb2.DataType
SORTABLE = {
    DataType.Bool, DataType.Int8, DataType.Int16, DataType.Int32, DataType.Int64,
    DataType.Float, DataType.Double, DataType.String, DataType.VarChar,
}
_SEGMENT = re.compile(r'\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[\s*(\d+)\s*\]')


@dataclass(frozen=True)
class OrderKey:
    spec: str  # as the caller wrote it
    field: str  # the schema field whose column holds the value ("" for a dynamic key)
    path: tuple[str | int, ...]  # keys into a JSON value (empty for a scalar field)
    ascending: bool
    request: str  # the output field to ask the nodes for

    @property
    def dynamic(self) -> bool:
        return not self.field


def _split_direction(pair: str) -> tuple[str, str]:
    """``field[:direction]``, the colon looked for outside brackets."""
    depth, last = 0, -1
    for i, ch in enumerate(pair):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == ":" and depth == 0:
            last = i
    if last < 0:
        return pair.strip(), ""
    return pair[:last].strip(), pair[last + 1:].strip()


def _path(spec: str, base: str) -> tuple[str | int, ...]:
    rest = spec[len(base):].strip()
    out: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _SEGMENT.match(rest, pos)
        if m is None:
            raise InvalidArgument(f"invalid JSON path in order_by field '{spec}'")
        out.append(json.loads(f'"{m.group(1)}"') if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
        while pos < len(rest) and rest[pos] == " ":
            pos += 1
    return tuple(out)


def parse(value: str | None, fields: Mapping[str, int], dynamic: bool) -> list[OrderKey]:
    """The order keys of an ``order_by_fields`` value; ``fields`` maps field name -> DataType.
    Milvus's checks and messages (``parseOrderByFields`` in internal/proxy/search_util.go)."""
    if not value or not value.strip():
        return []
    keys: list[OrderKey] = []
    for pair in value.split(","):
        pair = pair.strip()
        if not pair:
            continue
        spec, direction = _split_direction(pair)
        if not spec:
            raise InvalidArgument("empty field name in order_by_fields")
        d = direction.lower()
        if d not in ("", "asc", "ascending", "desc", "descending"):
            raise InvalidArgument(f"invalid order direction '{direction}' for field '{spec}', expected 'asc' or 'desc'")
        asc = d not in ("desc", "descending")
        if "[" in spec and "]" in spec:
            base = spec.split("[", 1)[0].strip()
            if base in fields:
                if fields[base] != DataType.JSON:
                    raise InvalidArgument(f"order_by field '{spec}' has brackets but is not a JSON type")
                keys.append(OrderKey(spec, base, _path(spec, base), asc, base))
            elif dynamic:
                keys.append(OrderKey(spec, "", (base, *_path(spec, base)), asc, base))
            else:
                raise InvalidArgument(f"order_by field '{base}' not found in schema and no dynamic field available")
        elif spec in fields:
            if fields[spec] not in SORTABLE:
                name = DataType.Name(fields[spec]) if fields[spec] in DataType.values() else str(fields[spec])
                raise InvalidArgument(
                    f"order_by field '{spec}' has unsortable type {name}; supported types: bool, int8/16/32/64, "
                    'float, double, string, varchar; for JSON fields use path syntax like field["key"]')
            keys.append(OrderKey(spec, spec, (), asc, spec))
        elif dynamic:
            keys.append(OrderKey(spec, "", (spec,), asc, spec))
        else:
            raise InvalidArgument(f"order_by field '{spec}' does not exist in collection schema")
    return keys


def request_fields(keys: Sequence[OrderKey]) -> list[str]:
    """The output fields the nodes must return for the keys (each once, in key order)."""
    out: list[str] = []
    for k in keys:
        if k.request not in out:
            out.append(k.request)
    return out


# ---------------------------------------------------------------- values
_MISSING = object()


def column_with_nulls(fd: schema_pb2.FieldData) -> list[Any]:
    """One scalar column as Python values, None for null rows; JSON decoded."""
    values = fielddata.column_values(fd)
    if fd.type == DataType.JSON:
        values = [_decode(v) for v in values]
    if not len(fd.valid_data):
        return values
    valid = list(fd.valid_data)
    if len(values) == len(valid):
        return [v if ok else None for v, ok in zip(values, valid)]
    it = iter(values)  # compact storage: values of valid rows only
    return [next(it) if ok else None for ok in valid]


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return None


def _walk(value: Any, path: Sequence[str | int]) -> Any:
    for p in path:
        if isinstance(p, int) and isinstance(value, list) and 0 <= p < len(value):
            value = value[p]
        elif isinstance(value, dict) and str(p) in value:
            value = value[str(p)]
        else:
            return None
    return value


def key_columns(columns: Sequence[schema_pb2.FieldData], keys: Sequence[OrderKey]) -> list[list[Any]]:
    """For each key, the value of every row (None for null / missing)."""
    out = []
    for k in keys:
        if k.dynamic:
            col = next((fd for fd in columns if fd.is_dynamic), None)
        else:
            col = next((fd for fd in columns if fd.field_name == k.field and not fd.is_dynamic), None)
        if col is None:
            raise InvalidArgument(f"order_by field '{k.spec}' not found in the nodes' results")
        values = column_with_nulls(col)
        out.append([_walk(v, k.path) for v in values] if k.path else values)
    return out


# ---------------------------------------------------------------- comparison
def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    return "raw"


def _cmp_values(a: Any, b: Any) -> int:
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka == "raw":
        a, b = json.dumps(a, separators=(",", ":")), json.dumps(b, separators=(",", ":"))
    return (a > b) - (a < b)


def compare(a: Any, b: Any, ascending: bool) -> int:
    """Milvus's order: nulls first in either direction, then by value (reversed for desc)."""
    if a is None or b is None:
        return (b is None) - (a is None) if not (a is None and b is None) else 0
    c = _cmp_values(a, b)
    return c if ascending else -c


def row_comparator(cols: Sequence[Sequence[Any]], keys: Sequence[OrderKey]) -> Callable[[int, int], int]:
    def cmp(i: int, j: int) -> int:
        for col, k in zip(cols, keys):
            c = compare(col[i], col[j], k.ascending)
            if c:
                return c
        return 0
    return cmp


def _pk_key(pk: int | str) -> tuple[int, int | str]:
    return (0, pk) if isinstance(pk, int) else (1, pk)


def sort_rows(rows: Sequence[int], cols: Sequence[Sequence[Any]], keys: Sequence[OrderKey]) -> list[int]:
    """``rows`` stably sorted by the keys (:func:`compare` order). One stable pass per key, last
    key first; a pass over values of one kind (numbers, strings, bools: every scalar field) sorts
    with a plain key in C, a pass over mixed JSON kinds with :func:`compare`."""
    order = list(rows)
    for col, k in reversed(list(zip(cols, keys))):
        nulls = [i for i in order if col[i] is None]
        rest = [i for i in order if col[i] is not None]
        if len({_kind(col[i]) for i in rest}) <= 1 and not any(_kind(col[i]) == "raw" for i in rest[:1]):
            rest.sort(key=lambda i: col[i], reverse=not k.ascending)  # reverse keeps equal keys in order
        else:
            rest.sort(key=functools.cmp_to_key(lambda i, j: compare(col[i], col[j], k.ascending)))
        order = nulls + rest
    return order


def query_order(pks: Sequence[int | str], cols: Sequence[Sequence[Any]], keys: Sequence[OrderKey],
                offset: int, limit: int) -> list[int]:
    """Rows (indices) of a query page: ordered by the keys, ties by primary key, each primary key
    once, then ``offset`` / ``limit``."""
    first: dict[int | str, int] = {}
    for i, pk in enumerate(pks):
        first.setdefault(pk, i)
    rows = sorted(first.values(), key=lambda i: _pk_key(pks[i]))  # the tie-break order
    return sort_rows(rows, cols, keys)[offset:offset + limit]


def search_order(rows: Sequence[int], cols: Sequence[Sequence[Any]], keys: Sequence[OrderKey],
                 offset: int, limit: int) -> list[int]:
    """One query's hits (global row indices, in distance order) stably sorted by the keys, then
    ``offset`` / ``limit``."""
    return sort_rows(rows, cols, keys)[offset:offset + limit]


def group_order(groups: Sequence[Sequence[int]], cols: Sequence[Sequence[Any]], keys: Sequence[OrderKey],
                offset: int, limit: int) -> list[list[int]]:
    """Groups of hits sorted (stably) by their first hit's keys, then ``offset`` / ``limit`` groups."""
    kept = [list(g) for g in groups if g]
    by_first = {g[0]: g for g in kept}
    return [by_first[r] for r in sort_rows([g[0] for g in kept], cols, keys)][offset:offset + limit]


def reorder_result(out: schema_pb2.SearchResultData, per_query: Sequence[Sequence[int]], drop: Sequence[str],
                   top_k: int) -> schema_pb2.SearchResultData:
    """A new result holding, per query, the given rows of ``out`` in the given order, without the
    columns in ``drop`` (order keys the caller did not ask for)."""
    flat = [r for q in per_query for r in q]
    pks = fielddata.pk_values(out.ids)
    res = schema_pb2.SearchResultData(
        num_queries=out.num_queries, top_k=top_k, primary_field_name=out.primary_field_name,
        scores=[out.scores[r] for r in flat], topks=[len(q) for q in per_query],
        ids=fielddata.make_ids([pks[r] for r in flat], out.ids.WhichOneof("id_field") == "str_id"),
    )
    res.output_fields.extend(n for n in out.output_fields if n not in drop)
    res.fields_data.extend(fielddata.take(fd, flat) for fd in out.fields_data
                           if fd.field_name not in drop and not (fd.is_dynamic and _only_dropped(out, drop)))
    if out.HasField("group_by_field_value"):
        res.group_by_field_value.CopyFrom(fielddata.take(out.group_by_field_value, flat))
    res.group_by_field_values.extend(fielddata.take(fd, flat) for fd in out.group_by_field_values)
    return res


def _only_dropped(out: schema_pb2.SearchResultData, drop: Sequence[str]) -> bool:
    """The dynamic column is there only for dropped order keys (no kept output field is dynamic)."""
    static = {fd.field_name for fd in out.fields_data if not fd.is_dynamic}
    return bool(drop) and not any(n not in static and n not in drop for n in out.output_fields)
