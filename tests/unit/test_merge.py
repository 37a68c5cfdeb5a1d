"""Merge: property tests against a brute-force global sort, plus protobuf-level merges."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus.grpc_gen import schema_pb2

from shardproxy import fielddata
from shardproxy.merge import Hit, merge_hits, merge_query_rows, merge_search_results


def brute(all_hits: list[tuple[int, float]], metric: str, offset: int, limit: int) -> list[tuple[int, float]]:
    best: dict[int, float] = {}
    asc = metric == "L2"
    for pk, s in all_hits:
        if pk not in best or (s < best[pk] if asc else s > best[pk]):
            best[pk] = s
    items = sorted(best.items(), key=lambda kv: ((kv[1] if asc else -kv[1]), kv[0]))
    return items[offset : offset + limit]


scores = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def sharded(draw: st.DrawFn) -> tuple[list[list[Hit]], list[tuple[int, float]], str, int, int]:
    metric = draw(st.sampled_from(["L2", "IP", "COSINE"]))
    n_shards = draw(st.integers(1, 5))
    # pool of rows: pk -> score; some pks appear on two shards (mid-move duplicates) with the same score
    pks = draw(st.lists(st.integers(0, 500), unique=True, max_size=60))
    rows = {pk: draw(scores) for pk in pks}
    # coarse scores make ties likely
    if draw(st.booleans()):
        rows = {pk: float(round(s)) for pk, s in rows.items()}
    shards: list[list[tuple[int, float]]] = [[] for _ in range(n_shards)]
    for pk, s in rows.items():
        homes = draw(st.lists(st.integers(0, n_shards - 1), min_size=1, max_size=2, unique=True))
        for h in homes:
            shards[h].append((pk, s))
    offset = draw(st.integers(0, 10))
    limit = draw(st.integers(1, 20))
    asc = metric == "L2"
    per_shard: list[list[Hit]] = []
    for i, sh in enumerate(shards):
        # each shard returns its own best offset+limit, in metric order
        sh.sort(key=lambda t: ((t[1] if asc else -t[1]), t[0]))
        per_shard.append([Hit(pk, s, i, r) for r, (pk, s) in enumerate(sh[: offset + limit])])
    return per_shard, list(rows.items()), metric, offset, limit


@given(sharded())
@settings(max_examples=300, deadline=None)
def test_merge_equals_global_brute_force(case: tuple) -> None:
    per_shard, rows, metric, offset, limit = case
    got = [(h.pk, h.score) for h in merge_hits(per_shard, metric, offset, limit)]
    assert got == brute(rows, metric, offset, limit)


@given(sharded())
@settings(max_examples=100, deadline=None)
def test_merge_has_no_duplicates_and_respects_limit(case: tuple) -> None:
    per_shard, _, metric, offset, limit = case
    got = merge_hits(per_shard, metric, offset, limit)
    assert len(got) <= limit
    assert len({h.pk for h in got}) == len(got)


def test_ties_broken_by_primary_key() -> None:
    shards = [[Hit(9, 1.0, 0, 0), Hit(3, 1.0, 0, 1)], [Hit(5, 1.0, 1, 0)]]
    assert [h.pk for h in merge_hits(shards, "IP", 0, 3)] == [3, 5, 9]


def _shard_result(pks: list[int], scores: list[float], tags: list[str], nq_split: list[int]) -> schema_pb2.SearchResultData:
    r = schema_pb2.SearchResultData(num_queries=len(nq_split), top_k=max(nq_split or [0]), scores=scores, topks=nq_split)
    r.ids.int_id.data.extend(pks)
    col = schema_pb2.FieldData(type=schema_pb2.DataType.VarChar, field_name="tag")
    col.scalars.string_data.data.extend(tags)
    vec = schema_pb2.FieldData(type=schema_pb2.DataType.FloatVector, field_name="v")
    vec.vectors.dim = 2
    vec.vectors.float_vector.data.extend([float(p) for p in pks for _ in range(2)])
    r.fields_data.extend([col, vec])
    r.output_fields.extend(["tag", "v"])
    return r


def test_protobuf_merge_carries_output_fields_per_query() -> None:
    a = _shard_result([1, 2, 10], [0.1, 0.5, 0.2], ["a1", "a2", "a10"], [2, 1])
    b = _shard_result([3, 11, 12], [0.3, 0.05, 0.9], ["b3", "b11", "b12"], [1, 2])
    out = merge_search_results([a, b], nq=2, metric="L2", offset=0, limit=2, output_fields=["tag", "v"])
    assert list(out.topks) == [2, 2]
    assert list(out.ids.int_id.data) == [1, 3, 11, 10]
    assert list(out.fields_data[0].scalars.string_data.data) == ["a1", "b3", "b11", "a10"]
    vecs = fielddata.float_vectors(out.fields_data[1])
    assert vecs[:, 0].tolist() == [1.0, 3.0, 11.0, 10.0]


def test_protobuf_merge_with_an_empty_shard() -> None:
    a = _shard_result([1, 2], [0.9, 0.8], ["x", "y"], [2])
    empty = schema_pb2.SearchResultData(num_queries=1, top_k=0, topks=[0])
    out = merge_search_results([empty, a], nq=1, metric="IP", offset=1, limit=5)
    assert list(out.ids.int_id.data) == [2]
    assert list(out.fields_data[0].scalars.string_data.data) == ["y"]


def test_query_merge_orders_by_pk_dedups_and_pages() -> None:
    def shard(pks: list[int]) -> list[schema_pb2.FieldData]:
        col = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="id")
        col.scalars.long_data.data.extend(pks)
        val = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="val")
        val.scalars.long_data.data.extend([p * 10 for p in pks])
        return [col, val]

    all_pks = random.Random(1).sample(range(1000), 120)
    shards = [shard(all_pks[:50]), shard(all_pks[40:90]), shard(all_pks[90:])]
    merged = merge_query_rows(shards, "id", offset=0, limit=None)
    ids = fielddata.column_values(merged[0])
    assert ids == sorted(all_pks)
    assert fielddata.column_values(merged[1]) == [p * 10 for p in sorted(all_pks)]
    page = merge_query_rows(shards, "id", offset=30, limit=25)
    assert fielddata.column_values(page[0]) == sorted(all_pks)[30:55]
