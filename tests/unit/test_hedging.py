"""Latency tracking, hedge thresholds and budget, the covering gather, caller deadlines: pure
logic and plain coroutines (no servers)."""

from __future__ import annotations

import asyncio

import pytest

from shardproxy import deadline
from shardproxy.errors import DeadlineExceeded, Unavailable
from shardproxy.hedged import gather_covering
from shardproxy.hedging import HedgeBudget, hedge_delay
from shardproxy.latency import LatencyTracker


def test_latency_tracker_quantiles_per_node_and_method() -> None:
    t = LatencyTracker(window=100, min_samples=5)
    assert t.p95("a", "Search") is None
    for i in range(100):
        t.observe("a", "Search", i / 1000)
        t.observe("b", "Search", 1.0)
    assert t.p95("a", "Search") == pytest.approx(0.094, abs=0.002)
    assert t.p99("a", "Search") == pytest.approx(0.098, abs=0.002)
    assert t.p95("b", "Search") == 1.0 and t.p95("a", "Query") is None
    for _ in range(100):  # the window moves: old samples fall out
        t.observe("a", "Search", 0.5)
    assert t.p95("a", "Search") == 0.5
    t.forget("a")
    assert t.count("a", "Search") == 0 and t.count("b", "Search") == 100


def test_hedge_delay_clamped() -> None:
    t = LatencyTracker(min_samples=1)
    assert hedge_delay(t, "a", "Search", factor=1.0, min_s=0.05, max_s=1.0) == 1.0  # no samples
    t.observe("a", "Search", 0.01)
    assert hedge_delay(t, "a", "Search", factor=1.0, min_s=0.05, max_s=1.0) == 0.05
    t.observe("b", "Search", 0.2)
    assert hedge_delay(t, "b", "Search", factor=2.0, min_s=0.05, max_s=1.0) == pytest.approx(0.4)
    t.observe("c", "Search", 9.0)
    assert hedge_delay(t, "c", "Search", factor=1.0, min_s=0.05, max_s=1.0) == 1.0


def test_budget_bounds_hedges_to_a_ratio() -> None:
    b = HedgeBudget(ratio=0.1, burst=2.0, tokens=2.0)
    spent = 0
    for _ in range(1000):
        b.deposit()
        spent += b.try_spend()
    assert 100 <= spent <= 102  # burst + 10% of the reads


def run(coro):
    return asyncio.run(coro)


def cover_any_two(nodes: frozenset[str]) -> bool:
    return len(nodes) >= 2


def test_gather_hedges_slow_node_and_first_answer_wins() -> None:
    cancelled: list[str] = []

    async def call(n: str) -> str:
        try:
            await asyncio.sleep({"a": 0.01, "b": 5.0, "c": 0.02}[n])
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    out = run(gather_covering(["a", "b"], ["c"], call, cover_any_two, lambda n: 0.1, HedgeBudget()))
    assert out.complete and set(out.results) == {"a", "c"}
    assert out.hedges == ["c"] and out.dropped == ["b"] and out.hedge_won
    assert cancelled == ["b"]


def test_gather_over_budget_waits_for_the_slow_node() -> None:
    async def call(n: str) -> str:
        await asyncio.sleep({"a": 0.01, "b": 0.3, "c": 0.01}[n])
        return n

    out = run(gather_covering(["a", "b"], ["c"], call, cover_any_two, lambda n: 0.05, HedgeBudget(tokens=0.0)))
    assert out.complete and set(out.results) == {"a", "b"} and out.hedges == []


def test_gather_replaces_failed_node_without_budget() -> None:
    async def call(n: str) -> str:
        if n == "b":
            raise Unavailable("node b refused")
        await asyncio.sleep(0.01)
        return n

    out = run(gather_covering(["a", "b"], ["c"], call, cover_any_two, lambda n: 10.0, HedgeBudget(tokens=0.0)))
    assert out.complete and set(out.results) == {"a", "c"} and out.retries == ["c"]
    assert "refused" in out.failed["b"]


def test_gather_replaces_slow_node_that_then_fails_even_over_budget() -> None:
    # b is slow (no budget to hedge), then its circuit opens: c must still be asked
    live = {"a": True, "b": True, "c": True}

    async def call(n: str) -> str:
        if n == "b":
            await asyncio.sleep(0.15)
            live["b"] = False
            await asyncio.sleep(30)
        await asyncio.sleep(0.01)
        return n

    out = run(gather_covering(["a", "b"], ["c"], call, cover_any_two, lambda n: 0.05, HedgeBudget(tokens=0.0),
                              is_live=lambda n: live[n]))
    assert out.complete and set(out.results) == {"a", "c"} and out.retries == ["c"] and out.hedges == []
    assert "health" in out.failed["b"]


def test_gather_gives_up_node_whose_circuit_opens() -> None:
    live = {"a": True, "b": True}

    async def call(n: str) -> str:
        if n == "b":
            live["b"] = False  # the health probe marks it down while we wait
            await asyncio.sleep(30)
        return n

    out = run(gather_covering(["a", "b"], [], call, lambda s: s >= {"a", "b"}, lambda n: 10.0, HedgeBudget(),
                              is_live=lambda n: live[n]))
    assert not out.complete and set(out.results) == {"a"} and "health" in out.failed["b"]


def test_gather_propagates_other_errors_and_cancels_the_rest() -> None:
    cancelled: list[str] = []

    async def call(n: str) -> str:
        if n == "a":
            raise DeadlineExceeded("caller deadline")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    async def go() -> None:
        with pytest.raises(DeadlineExceeded):
            await gather_covering(["a", "b"], [], call, cover_any_two, lambda n: 10.0, HedgeBudget())
        await asyncio.sleep(0)

    run(go())
    assert cancelled == ["b"]


def test_caller_deadline_bounds_node_timeout() -> None:
    assert deadline.effective_timeout(30.0, None) == (30.0, False)
    assert deadline.effective_timeout(30.0, 2.0, margin_s=0.05) == (1.95, True)
    assert deadline.effective_timeout(1.0, 20.0) == (1.0, False)
    # the default margin: a tenth of what the caller has left, between 50 ms and 0.5 s
    assert deadline.effective_timeout(30.0, 4.0) == (3.6, True)
    assert deadline.effective_timeout(30.0, 0.2) == (pytest.approx(0.15), True)
    assert deadline.effective_timeout(60.0, 20.0) == (19.5, True)
    with deadline.caller_deadline(5.0):
        timeout, by_caller = deadline.node_timeout(30.0)
        assert 4.0 < timeout <= 5.0 and by_caller
    assert deadline.remaining() is None
    with deadline.caller_deadline(0.0):
        with pytest.raises(DeadlineExceeded, match="deadline"):
            deadline.node_timeout(30.0, "Search on node-1")


def test_fanout_plan() -> None:
    from shardproxy.placement import fanout_plan, minimal_cover
    from shardproxy.ring import Ring, RingNode

    ring = Ring([RingNode(f"n{i}") for i in range(3)])
    nodes = list(ring.node_ids)
    up = lambda n: True  # noqa: E731
    first, spare, covers = fanout_plan(ring, 2, nodes, up, False, 0)
    assert len(first) == 2 and len(spare) == 1 and covers(frozenset(first)) and not covers(frozenset(first[:1]))
    assert fanout_plan(ring, 2, nodes, up, False, 1)[0] != first  # rotates
    # one node out: ask the live ones, complete when they cover (R=2 of 3: both needed)
    first, spare, covers = fanout_plan(ring, 2, nodes, lambda n: n != "n1", False, 0)
    assert first == ["n0", "n2"] and spare == [] and covers(frozenset(first))
    # R=1: every node is needed, a down one included (the caller decides: fail or partial)
    first, spare, covers = fanout_plan(ring, 1, nodes, lambda n: n != "n1", False, 0)
    assert first == ["n0", "n2"] and not covers(frozenset(first))
    # during a move: every asked node must answer
    first, _, covers = fanout_plan(ring, 2, nodes, up, True, 0)
    assert first == nodes and not covers(frozenset(nodes[:2]))
    assert len(minimal_cover(Ring([RingNode(f"n{i}") for i in range(5)]), 3, [f"n{i}" for i in range(5)])) == 3
    # all live, but n1 has pending hints (some of its copies are still on stand-ins): a minimal
    # cover could read n1 instead of the stand-in holding a copy; the others must cover
    for rotation in range(3):
        first, spare, covers = fanout_plan(ring, 2, nodes, up, False, rotation, hinted=lambda n: n == "n1")
        assert sorted(first) == ["n0", "n2"] and spare == ["n1"]
        assert covers(frozenset(first)) and not covers(frozenset({"n0", "n1"})) and not covers(frozenset({"n1", "n2"}))
    # two nodes behind: the third cannot cover alone, every live node must answer
    first, spare, covers = fanout_plan(ring, 2, nodes, up, False, 0, hinted=lambda n: n != "n2")
    assert first == nodes and spare == [] and not covers(frozenset(nodes[:2])) and covers(frozenset(nodes))


def test_linear_quantile_matches_numpy() -> None:
    import numpy as np

    from shardproxy.latency import linear_quantile

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 256):
        xs = rng.random(n).tolist()
        for q in (0.0, 0.5, 0.95, 0.99, 1.0):
            assert linear_quantile(sorted(xs), q) == pytest.approx(float(np.quantile(xs, q)))


def test_cached_quantile_follows_the_window() -> None:
    t = LatencyTracker(window=256, min_samples=1)
    for _ in range(256):
        t.observe("a", "Search", 0.01)
    assert t.p95("a", "Search") == pytest.approx(0.01)
    for _ in range(256):  # a slow node: the estimate follows within a refresh (16 samples)
        t.observe("a", "Search", 2.0)
    assert t.p95("a", "Search") == pytest.approx(2.0)
    t.observe("a", "Search", 0.01)  # one fast call: the cached p95 stays (refresh every 16)
    assert t.p95("a", "Search") == pytest.approx(2.0)
