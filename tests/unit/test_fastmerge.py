"""The fast ranking path of merge_search_results gives the general path's answer, byte for byte,
and declines exactly where the general path could answer differently."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus.grpc_gen import schema_pb2

from shardproxy import fastmerge, merge

scores = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False, width=32)


def shard(per_query: list[list[tuple[int, float]]], column: bool = True) -> schema_pb2.SearchResultData:
    """One node's answer: per query its hits (pk, score), an int64 output column ``tag``."""
    pks = [pk for hits in per_query for pk, _ in hits]
    out = schema_pb2.SearchResultData(num_queries=len(per_query), top_k=max([len(h) for h in per_query] + [0]),
                                      scores=[s for hits in per_query for _, s in hits],
                                      topks=[len(h) for h in per_query], primary_field_name="id")
    out.ids.int_id.data.extend(pks)
    if column:
        col = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="tag")
        col.scalars.long_data.data.extend(pk * 7 for pk in pks)
        out.fields_data.append(col)
        out.output_fields.append("tag")
    return out


@st.composite
def cases(draw: st.DrawFn, duplicates: bool) -> tuple[list[schema_pb2.SearchResultData], int, str, int, int]:
    metric = draw(st.sampled_from(["L2", "IP", "COSINE"]))
    nq = draw(st.integers(1, 4))
    n_shards = draw(st.integers(1, 5))
    coarse = draw(st.booleans())  # ties in score are then common
    signed_zero = draw(st.booleans())
    asc = merge.ascending(metric)
    results = []
    pools = [draw(st.lists(st.integers(0, 300), unique=True, max_size=40)) for _ in range(nq)]
    homes = [{pk: draw(st.integers(0, n_shards - 1)) for pk in pool} for pool in pools]
    values = [{pk: draw(scores) for pk in pool} for pool in pools]
    for i in range(n_shards):
        queries = draw(st.integers(0, nq)) if draw(st.integers(0, 5)) == 0 else nq  # some shards answer fewer queries
        per_query = []
        for q in range(queries):
            hits = []
            for pk in pools[q]:
                s = values[q][pk]
                if coarse:
                    s = float(round(s))
                if signed_zero and s == 0:
                    s = -0.0 if pk % 2 else 0.0
                if homes[q][pk] == i or (duplicates and pk % 3 == i % 3):
                    hits.append((pk, s))
            hits.sort(key=lambda t: ((t[1] if asc else -t[1]), t[0]))
            per_query.append(hits[: draw(st.integers(0, 15))])
        results.append(shard(per_query))
    return results, nq, metric, draw(st.integers(0, 6)), draw(st.integers(1, 12))


def general(results: list, nq: int, metric: str, offset: int, limit: int) -> tuple:
    return merge._rank_hits(results, nq, metric, offset, limit)


@given(cases(duplicates=False))
@settings(max_examples=400, deadline=None)
def test_fast_rank_equals_general_rank(case: tuple) -> None:
    results, nq, metric, offset, limit = case
    fast = fastmerge.rank(results, nq, merge.ascending(metric), offset, limit)
    assert fast is not None  # plain input: the fast path answers
    assert tuple(fast) == general(results, nq, metric, offset, limit)
    # the score signs survive too (0.0 vs -0.0 compare equal)
    assert [math.copysign(1, s) for s in fast.scores] == [math.copysign(1, s) for s in general(results, nq, metric, offset, limit)[1]]


@given(cases(duplicates=True))
@settings(max_examples=300, deadline=None)
def test_merged_protobuf_identical_with_or_without_duplicates(case: tuple) -> None:
    results, nq, metric, offset, limit = case
    got = merge.merge_search_results(results, nq, metric, offset, limit, ["tag"])
    pks, sc, topks, rows = general(results, nq, metric, offset, limit)
    want = schema_pb2.SearchResultData(num_queries=nq, top_k=limit, scores=sc, topks=topks, primary_field_name="id")
    want.ids.int_id.data.extend(pks)
    want.output_fields.append("tag")
    want.fields_data.extend(merge.gather_columns(results, rows))
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)


def test_declines_duplicate_pk_in_one_query() -> None:
    a = shard([[(1, 0.5), (2, 0.7)]])
    b = shard([[(1, 0.4)]])  # pk 1 mid-move on two nodes: the better copy must win
    assert fastmerge.rank([a, b], 1, True, 0, 10) is None
    out = merge.merge_search_results([a, b], 1, "L2", 0, 10)
    assert list(out.ids.int_id.data) == [1, 2]
    assert list(out.scores) == [0.4000000059604645, 0.699999988079071]


def test_same_pk_in_different_queries_is_plain() -> None:
    a = shard([[(1, 0.5)], [(1, 0.2)]])
    got = fastmerge.rank([a], 2, True, 0, 10)
    assert got is not None and got.pks == [1, 1] and got.topks == [1, 1]


def test_declines_nan_and_string_ids_and_ragged_shapes() -> None:
    nan = shard([[(1, float("nan")), (2, 0.1)]])
    assert fastmerge.rank([nan], 1, True, 0, 10) is None
    s = schema_pb2.SearchResultData(num_queries=1, top_k=1, scores=[0.1], topks=[1])
    s.ids.str_id.data.append("a")
    assert fastmerge.rank([s], 1, True, 0, 10) is None
    ragged = shard([[(1, 0.1), (2, 0.2)]])
    ragged.topks[0] = 1  # topks disagree with the number of scores
    assert fastmerge.rank([ragged], 1, True, 0, 10) is None


def test_descending_metric_keeps_scores_and_orders_by_pk_on_ties() -> None:
    a = shard([[(5, 0.9), (3, 0.5)]])
    b = shard([[(4, 0.9), (9, 0.1)]])
    got = fastmerge.rank([a, b], 1, False, 0, 3)
    assert got is not None
    assert got.pks == [4, 5, 3] and got.rows == [2, 0, 1]
    assert got.scores == [0.8999999761581421, 0.8999999761581421, 0.5]
