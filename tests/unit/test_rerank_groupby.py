"""Rerank and group-by reduce: sharded (per-shard top lists, merged, then reduced once) equals the
brute force over all rows; plus known values from Milvus's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardproxy import rerank as rr
from shardproxy.errors import InvalidArgument, Unimplemented
from shardproxy.groupby import GHit, bound, certain, group_page, initial_window, merged_hits, next_window
from shardproxy.merge import Hit, merge_hits

METRICS = ["L2", "IP", "COSINE"]


def _order(items: dict[int, float], metric: str) -> list[tuple[int, float]]:
    asc = metric == "L2"
    return sorted(items.items(), key=lambda kv: ((kv[1] if asc else -kv[1]), kv[0]))


@st.composite
def hybrid_case(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    n_rows = draw(st.integers(0, 40))
    n_sub = draw(st.integers(1, 3))
    n_shards = draw(st.integers(1, 4))
    coarse = draw(st.booleans())
    metrics = [draw(st.sampled_from(METRICS)) for _ in range(n_sub)]
    subs = []
    for _ in range(n_sub):
        vals = {}
        for pk in range(n_rows):
            if draw(st.integers(0, 4)) == 0:
                continue  # filtered out of this sub-request
            s = draw(st.floats(-5, 5, allow_nan=False, width=32))
            vals[pk] = float(round(s)) if coarse else s
        subs.append(vals)
    home = {pk: draw(st.integers(0, n_shards - 1)) for pk in range(n_rows)}
    sub_limits = [draw(st.integers(1, 15)) for _ in range(n_sub)]
    return metrics, subs, home, n_shards, sub_limits


def _sub_lists_sharded(metrics, subs, home, n_shards, sub_limits):  # type: ignore[no-untyped-def]
    out = []
    for metric, vals, lim in zip(metrics, subs, sub_limits):
        per_shard = []
        for s in range(n_shards):
            mine = {pk: v for pk, v in vals.items() if home[pk] == s}
            per_shard.append([Hit(pk, v, s, i) for i, (pk, v) in enumerate(_order(mine, metric)[:lim])])
        out.append([(h.pk, h.score) for h in merge_hits(per_shard, metric, 0, lim)])
    return out


def _sub_lists_brute(metrics, subs, sub_limits):  # type: ignore[no-untyped-def]
    return [_order(vals, m)[:lim] for m, vals, lim in zip(metrics, subs, sub_limits)]


rankers = st.one_of(
    st.builds(lambda k: rr.make_ranker("rrf", {"k": k}), st.sampled_from([1, 10, 60, 100.5])),
    st.builds(lambda ws, n: ("weighted", ws, n), st.lists(st.floats(0, 1, width=32), min_size=3, max_size=3), st.booleans()),
)


@settings(max_examples=80, deadline=None)
@given(hybrid_case(), rankers, st.integers(0, 6), st.integers(1, 12), st.sampled_from([-1, 2, 4]))
def test_hybrid_merge_then_rerank_equals_brute(case, ranker, offset, limit, rd) -> None:  # type: ignore[no-untyped-def]
    metrics, subs, home, n_shards, sub_limits = case
    if isinstance(ranker, tuple):
        ranker = rr.make_ranker("weighted", {"weights": ranker[1][: len(metrics)], "norm_score": ranker[2]})
    sharded = _sub_lists_sharded(metrics, subs, home, n_shards, sub_limits)
    brute = _sub_lists_brute(metrics, subs, sub_limits)
    assert sharded == brute
    a = rr.rerank(ranker, sharded, metrics, offset, limit, rd)
    b = _brute_rerank(ranker, brute, metrics, offset, limit, rd)
    assert a == b


def _brute_rerank(ranker, lists, metrics, offset, limit, rd):  # type: ignore[no-untyped-def]
    """Independent float32 re-statement of Milvus's formulas (vectorised over all ids)."""
    ids = sorted({pk for hits in lists for pk, _ in hits})
    tot = np.zeros(len(ids), dtype=np.float32)
    pos = {pk: i for i, pk in enumerate(ids)}
    desc = True
    for i, hits in enumerate(lists):
        for rank, (pk, s) in enumerate(hits, start=1):
            if ranker.kind == "rrf":
                tot[pos[pk]] += np.float32(1) / (np.float32(ranker.k) + np.float32(rank))
            else:
                larger = sum(m != "L2" for m in metrics)
                mixed = 0 < larger < len(metrics)
                desc = ranker.norm or larger == len(metrics) or mixed
                s32 = np.float32(s)
                m = metrics[i]
                if ranker.norm:
                    v = {"COSINE": (np.float32(1) + s32) * np.float32(0.5),
                         "IP": np.float32(0.5) + np.float32(math.atan(s)) / np.float32(math.pi)}.get(
                        m, np.float32(1) - np.float32(2) * np.float32(math.atan(s)) / np.float32(math.pi))
                elif mixed and m == "L2":
                    v = np.float32(1) - np.float32(2) * np.float32(math.atan(s)) / np.float32(math.pi)
                else:
                    v = s32
                tot[pos[pk]] += np.float32(ranker.weights[i]) * v
    order = sorted(range(len(ids)), key=lambda j: ((-float(tot[j]) if desc else float(tot[j])), ids[j]))
    out = []
    for j in order[offset: offset + limit]:
        v = float(tot[j])
        if rd != -1:
            v = float(np.float32(math.floor(v * 10 ** rd + 0.5) / 10 ** rd))
        out.append((ids[j], v))
    return out


def test_rrf_known_values_and_ties() -> None:
    r = rr.make_ranker("rrf", {"k": 60})
    out = rr.rerank(r, [[(33, 1.0), (7, 2.0)], [(46, 9.0), (7, 8.0)]], ["L2", "IP"], 0, 5)
    assert [pk for pk, _ in out] == [7, 33, 46]  # 7: 1/62 + 1/62 > 1/61; 33 and 46 tie at 1/61 -> pk order
    assert out[1][1] == pytest.approx(1 / 61) and out[1][1] == out[2][1]


def test_weighted_mixed_without_norm_turns_distances_into_similarities() -> None:
    r = rr.make_ranker("weighted", {"weights": [0.5, 0.5], "norm_score": False})
    out = rr.rerank(r, [[(1, 0.0)], [(1, 2.0)]], ["L2", "IP"], 0, 1)
    assert out[0][1] == pytest.approx(0.5 * 1.0 + 0.5 * 2.0)
    all_l2 = rr.rerank(r, [[(1, 3.0), (2, 1.0)], [(1, 0.0)]], ["L2", "L2"], 0, 2)
    assert [pk for pk, _ in all_l2] == [2, 1]  # raw distances: ascending


def test_decay_gauss_at_origin_keeps_score_and_halves_at_scale() -> None:
    r = rr.make_ranker("decay", {"function": "gauss", "origin": 5, "scale": 2}, ["price"])
    out = rr.rerank(r, [[(1, 0.8), (2, 0.9)]], ["IP"], 0, 2, field_values={1: 5.0, 2: 7.0})
    assert out[0] == (1, pytest.approx(0.8))
    assert out[1] == (2, pytest.approx(0.45))


def test_ranker_parsing_errors() -> None:
    with pytest.raises(InvalidArgument):
        rr.make_ranker("rrf", {"k": 0})
    with pytest.raises(InvalidArgument):
        rr.make_ranker("weighted", {"weights": [1.5]})
    with pytest.raises(InvalidArgument):
        rr.rerank(rr.make_ranker("weighted", {"weights": [0.5]}), [[], []], ["L2", "L2"], 0, 1)
    with pytest.raises(InvalidArgument):
        rr.make_ranker("decay", {"function": "gauss", "origin": 1}, ["f"])
    with pytest.raises(Unimplemented):
        rr.make_ranker("model", {})
    assert rr.ranker_from_rank_params({"strategy": "weighted", "params": '{"weights": [0.2, 0.8], "norm_score": true}'}) \
        == rr.Ranker("weighted", weights=(0.2, 0.8), norm=True)


# ---------------------------------------------------------------- group-by
def _brute_groups(rows, metric, offset, limit, size, strict):  # type: ignore[no-untyped-def]
    ordered = _order({pk: s for pk, (s, _) in rows.items()}, metric)
    groups: dict = {}
    for pk, s in ordered:
        kept = groups.setdefault(rows[pk][1], [])
        if len(kept) < size:
            kept.append((pk, s))
    gs = [g for g in groups.values() if not strict or len(g) == size]
    return gs[offset: offset + limit]


def _widening(rows, shard_of, n_shards, metric, offset, limit, size, strict, cap=10_000):  # type: ignore[no-untyped-def]
    """The proxy's loop: every shard answers its nearest ``window`` hits until the page is certain."""
    window = initial_window(offset, limit, size) // 10 or 1  # start small so the loop widens
    rounds = 0
    while True:
        rounds += 1
        lists = []
        for s in range(n_shards):
            mine = _order({pk: v[0] for pk, v in rows.items() if shard_of[pk] == s}, metric)[:window]
            lists.append([GHit(pk, sc, rows[pk][1], s, i) for i, (pk, sc) in enumerate(mine)])
        hits = merged_hits(lists, metric)
        page = group_page(hits, offset, limit, size, strict)
        if certain(page, hits, limit, size, strict, bound(lists, window, metric), metric):
            return page, rounds
        window = next_window(window, cap)
        assert window is not None


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_group_reduce_equals_brute(data) -> None:  # type: ignore[no-untyped-def]
    metric = data.draw(st.sampled_from(METRICS))
    n = data.draw(st.integers(0, 60))
    n_groups = data.draw(st.integers(1, 8))
    n_shards = data.draw(st.integers(1, 4))
    coarse = data.draw(st.booleans())
    rows = {}
    for pk in range(n):
        s = data.draw(st.floats(-10, 10, allow_nan=False, width=32))
        rows[pk] = (float(round(s)) if coarse else s, data.draw(st.integers(0, n_groups - 1)))
    shard_of = {pk: data.draw(st.integers(0, n_shards - 1)) for pk in rows}
    offset, limit, size = data.draw(st.integers(0, 3)), data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4))
    strict = data.draw(st.booleans())
    page, _ = _widening(rows, shard_of, n_shards, metric, offset, limit, size, strict)
    assert [[(h.pk, h.score) for h in g] for g in page] == _brute_groups(rows, metric, offset, limit, size, strict)


def test_group_spread_over_all_shards_widens_the_window() -> None:
    # group 0 has one near hit on each shard and its second-best far away: the first window misses it
    rows = {pk: (float(pk), pk % 5) for pk in range(1, 60)}
    rows[100] = (1000.0, 0)
    shard_of = {pk: pk % 3 for pk in rows}
    page, rounds = _widening(rows, shard_of, 3, "L2", 0, 1, 13, False)
    assert rounds > 1
    assert [h.pk for h in page[0]] == sorted(pk for pk in rows if rows[pk][1] == rows[1][1])[:13]
