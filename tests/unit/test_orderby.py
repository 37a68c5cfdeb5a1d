"""order_by parsing and ordering (pure), checked against a brute-force reference written
independently (partition nulls, then one stable sort per key from the last key to the first)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus.grpc_gen import schema_pb2

from shardproxy import orderby
from shardproxy.errors import InvalidArgument

DT = schema_pb2.DataType
FIELDS = {"id": DT.Int64, "price": DT.Double, "brand": DT.VarChar, "ok": DT.Bool, "meta": DT.JSON,
          "v": DT.FloatVector, "tags": DT.Array}


def test_parse_specs_and_directions() -> None:
    keys = orderby.parse('price:desc, brand ,ok:ASCENDING,meta["a"]["b"]:descending,meta[0]', FIELDS, False)
    assert [(k.spec, k.field, k.path, k.ascending, k.request) for k in keys] == [
        ("price", "price", (), False, "price"), ("brand", "brand", (), True, "brand"), ("ok", "ok", (), True, "ok"),
        ('meta["a"]["b"]', "meta", ("a", "b"), False, "meta"), ("meta[0]", "meta", (0,), True, "meta")]
    dyn = orderby.parse('age:desc,user["score"]', FIELDS, True)
    assert [(k.field, k.path, k.request, k.dynamic) for k in dyn] == [("", ("age",), "age", True),
                                                                      ("", ("user", "score"), "user", True)]
    assert orderby.request_fields(orderby.parse("price,price:desc,brand", FIELDS, False)) == ["price", "brand"]
    assert orderby.parse("", FIELDS, False) == [] and orderby.parse(None, FIELDS, False) == []


@pytest.mark.parametrize("spec, msg", [
    ("price:up", "invalid order direction 'up' for field 'price'"),
    ("nope", "order_by field 'nope' does not exist in collection schema"),
    ("v", "order_by field 'v' has unsortable type FloatVector"),
    ("tags:desc", "has unsortable type Array"),
    ("meta", "has unsortable type JSON"),
    ('price["a"]', "has brackets but is not a JSON type"),
    ('nope["a"]', "not found in schema and no dynamic field available"),
    (":desc", "empty field name in order_by_fields"),
    ('meta["a"]x', "invalid JSON path"),
    ('meta["a"', "does not exist in collection schema"),
])
def test_parse_refuses_like_milvus(spec: str, msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg.replace("[", r"\[")):
        orderby.parse(spec, FIELDS, False)


def test_values_nulls_and_json() -> None:
    fd = schema_pb2.FieldData(type=DT.Double, field_name="price")
    fd.scalars.double_data.data.extend([1.5, 2.5])
    fd.valid_data.extend([True, False, True])  # compact: values of valid rows only
    assert orderby.column_with_nulls(fd) == [1.5, None, 2.5]
    js = schema_pb2.FieldData(type=DT.JSON, field_name="$meta", is_dynamic=True)
    js.scalars.json_data.data.extend([json.dumps({"age": 3, "u": {"s": "x"}}).encode(), b'{"u": null}', b""])
    keys = orderby.parse('age,u["s"]', {"id": DT.Int64}, True)
    assert orderby.key_columns([js], keys) == [[3, None, None], ["x", None, None]]


def test_compare_nulls_first_both_directions_and_mixed_json() -> None:
    assert orderby.compare(None, 1, True) < 0 and orderby.compare(None, 1, False) < 0
    assert orderby.compare(2, 1, False) < 0 and orderby.compare(False, True, True) < 0
    assert orderby.compare("b", "a", True) > 0 and orderby.compare(1, 1.0, True) == 0
    assert orderby.compare("1", 2, True) < 0  # different kinds: by JSON text, '"' < '2'


# ---------------------------------------------------------------- vs brute force
def _reference(rows: list[int], cols: list[list], asc: list[bool], tie: list) -> list[int]:
    order = sorted(rows, key=lambda i: tie[i])
    for c, a in reversed(list(zip(cols, asc))):
        nulls = [i for i in order if c[i] is None]
        rest = sorted((i for i in order if c[i] is not None), key=lambda i: c[i], reverse=not a)
        order = nulls + rest
    return order


values = st.one_of(st.none(), st.integers(-3, 3))


@settings(max_examples=200, deadline=None)
@given(data=st.lists(st.tuples(values, st.sampled_from(["a", "b", "c", None])), min_size=0, max_size=40),
       asc=st.tuples(st.booleans(), st.booleans()), offset=st.integers(0, 10), limit=st.integers(1, 20),
       dup=st.integers(0, 5))
def test_query_order_matches_reference(data, asc, offset, limit, dup) -> None:  # type: ignore[no-untyped-def]
    pks = list(range(100, 100 + len(data)))[::-1]  # keys not in row order
    cols = [[d[0] for d in data], [d[1] for d in data]]
    keys = orderby.parse(f"p:{'asc' if asc[0] else 'desc'},q:{'asc' if asc[1] else 'desc'}",
                         {"p": DT.Int64, "q": DT.VarChar}, False)
    # a row present twice (a replica): kept once
    extra = list(range(min(dup, len(data))))
    all_pks = pks + [pks[i] for i in extra]
    all_cols = [c + [c[i] for i in extra] for c in cols]
    got = orderby.query_order(all_pks, all_cols, keys, offset, limit)
    want = _reference(list(range(len(data))), cols, list(asc), pks)[offset:offset + limit]
    assert [all_pks[i] for i in got] == [pks[i] for i in want]


@settings(max_examples=200, deadline=None)
@given(data=st.lists(values, min_size=0, max_size=30), asc=st.booleans(), offset=st.integers(0, 8),
       limit=st.integers(1, 15))
def test_search_order_is_stable_in_distance_order(data, asc, offset, limit) -> None:  # type: ignore[no-untyped-def]
    keys = orderby.parse(f"p:{'asc' if asc else 'desc'}", {"p": DT.Int64}, False)
    rows = list(range(len(data)))  # already in distance order
    got = orderby.search_order(rows, [data], keys, offset, limit)
    assert got == _reference(rows, [data], [asc], rows)[offset:offset + limit]


def test_group_order_sorts_whole_groups_by_first_hit() -> None:
    keys = orderby.parse("p:desc", {"p": DT.Int64}, False)
    col = [1, 9, 5, 7, None, 3]
    groups = [[0, 1], [2, 3], [4], [5]]
    assert orderby.group_order(groups, [col], keys, 0, 10) == [[4], [2, 3], [5], [0, 1]]
    assert orderby.group_order(groups, [col], keys, 1, 2) == [[2, 3], [5]]


def test_reorder_result_drops_key_only_columns() -> None:
    out = schema_pb2.SearchResultData(num_queries=2, top_k=3, scores=[0.1, 0.2, 0.3, 0.4], topks=[3, 1])
    out.ids.int_id.data.extend([7, 8, 9, 10])
    out.output_fields.extend(["brand", "price"])
    for name, typ, attr, vals in (("brand", DT.VarChar, "string_data", ["a", "b", "c", "d"]),
                                  ("price", DT.Double, "double_data", [1.0, 2.0, 3.0, 4.0])):
        fd = out.fields_data.add(type=typ, field_name=name)
        getattr(fd.scalars, attr).data.extend(vals)
    res = orderby.reorder_result(out, [[2, 0], [3]], ["price"], 2)
    assert list(res.ids.int_id.data) == [9, 7, 10] and list(res.topks) == [2, 1]
    assert [round(s, 3) for s in res.scores] == [0.3, 0.1, 0.4]
    assert list(res.output_fields) == ["brand"] and [fd.field_name for fd in res.fields_data] == ["brand"]
    assert list(res.fields_data[0].scalars.string_data.data) == ["c", "a", "d"]


def test_concat_shards_fills_a_missing_dynamic_column() -> None:
    from shardproxy.handlers.ordered import _concat_shards

    def pk(vals: list[int]) -> schema_pb2.FieldData:
        fd = schema_pb2.FieldData(type=DT.Int64, field_name="id")
        fd.scalars.long_data.data.extend(vals)
        return fd

    meta = schema_pb2.FieldData(type=DT.JSON, field_name="$meta", is_dynamic=True)
    meta.scalars.json_data.data.extend([b'{"age": 1}'])
    cols = _concat_shards([[pk([5, 6])], [pk([1]), meta], []])
    keys = orderby.parse("age", {"id": DT.Int64}, True)
    assert orderby.key_columns(cols, keys) == [[None, None, 1]]
    # nulls first, ties by primary key: 5, 6 (no age), then 1 (age 1)
    assert orderby.query_order([5, 6, 1], orderby.key_columns(cols, keys), keys, 0, 3) == [0, 1, 2]


mixed = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(-2, 2, allow_nan=False),
                  st.sampled_from(["a", "b", "1"]), st.lists(st.integers(0, 1), max_size=2))


@settings(max_examples=200, deadline=None)
@given(a=st.lists(mixed, max_size=25), b=st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=25, max_size=25),
       asc=st.tuples(st.booleans(), st.booleans()))
def test_sort_rows_fast_passes_equal_the_comparator(a, b, asc) -> None:  # type: ignore[no-untyped-def]
    """The per-key stable passes give the order of the one lexicographic comparator, JSON values of
    mixed kinds included."""
    import functools

    b = b[:len(a)]
    keys = [orderby.OrderKey("a", "", ("a",), asc[0], "a"), orderby.OrderKey("b", "b", (), asc[1], "b")]
    rows = list(range(len(a)))
    want = sorted(rows, key=functools.cmp_to_key(orderby.row_comparator([a, b], keys)))
    assert orderby.sort_rows(rows, [a, b], keys) == want
