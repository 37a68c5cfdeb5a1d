"""Which nodes a read asks, and when its answers are complete (pure), plus the hedged gather
around :func:`shardproxy.hedged.gather_covering`.

A *fan-out* read (search, filter query) sends the same request to nodes whose data together
covers every key. With R > 1, all nodes live and no move running, it asks a minimal covering set
(rotating, so load spreads) and keeps the other nodes as spares to hedge to; otherwise it asks
every live node. Its answers are complete when no stretch of the ring is left without an
answering replica (:func:`shardproxy.routing.missing_shards`); during a move every asked node
must answer. A *keyed* read (get by ids) sends per-node requests and needs every asked node.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from shardproxy import metrics, routing
from shardproxy.hedged import Gathered, gather_covering
from shardproxy.hedging import hedge_delay
from shardproxy.ring import Ring

_ROTATION = itertools.count()


def covers_ring(ring: Ring, replicas: int) -> Callable[[frozenset[str]], bool]:
    ids = frozenset(ring.node_ids)
    return lambda answered: not routing.missing_shards(ring, replicas, ids - answered)


def minimal_cover(ring: Ring, replicas: int, order: Sequence[str]) -> list[str]:
    """Greedy: take nodes in ``order`` until they cover the ring. Pure."""
    covers = covers_ring(ring, replicas)
    chosen: list[str] = []
    for n in order:
        if covers(frozenset(chosen)):
            break
        chosen.append(n)
    # drop nodes the others make redundant (the greedy order may have over-picked)
    for n in list(chosen):
        rest = frozenset(chosen) - {n}
        if covers(rest):
            chosen.remove(n)
    return chosen


def fanout_plan(
    ring: Ring, replicas: int, nodes: Sequence[str], live: Callable[[str], bool], moving: bool, rotation: int,
) -> tuple[list[str], list[str], Callable[[frozenset[str]], bool]]:
    """``(first, spare, covers)`` for a read that every node answers the same way. Pure."""
    asked = [n for n in nodes if live(n)]
    if moving or replicas <= 1 or set(nodes) != set(ring.node_ids):
        need = frozenset(nodes)  # every node, down ones included: their absence is for the caller to judge
        return asked, [], lambda s: need <= s
    covers = covers_ring(ring, replicas)
    if len(asked) < len(nodes):  # some node is out: ask every live one, drop the slow when covered
        return asked, [], covers
    k = rotation % len(asked)
    order = asked[k:] + asked[:k]
    first = minimal_cover(ring, replicas, order)
    return first, [n for n in order if n not in first], covers


async def gather(cluster: Any, rec: Any, method: str, reqs: dict[str, Any], fanout: bool,
                 call: Callable[[str, Any], Any]) -> tuple[Gathered, set[str]]:
    """Run a read; returns the gather and the nodes that did not answer (down, failed or given up)."""
    s = cluster.settings
    nodes = list(reqs)
    if fanout:
        first, spare, covers = fanout_plan(cluster.ring, rec.replicas, nodes, cluster.is_live, cluster.moving,
                                           next(_ROTATION))
    else:
        first = [n for n in nodes if cluster.is_live(n)]
        need = frozenset(nodes)
        spare, covers = [], (lambda got: need <= got)
    tracker = cluster.pool.latency
    out = await gather_covering(
        first, spare, lambda n: call(n, reqs[n]), covers,
        lambda n: hedge_delay(tracker, n, method, factor=s.hedge_factor, min_s=s.hedge_min_s, max_s=s.hedge_max_s),
        cluster.hedge_budget, is_live=cluster.is_live,
    )
    if out.hedges:
        metrics.HEDGES.labels(method=method).inc(len(out.hedges))
        if out.hedge_won:
            metrics.HEDGE_WINS.labels(method=method).inc()
    if out.retries:
        metrics.READ_RETRIES.labels(method=method).inc(len(out.retries))
    for n in out.failed:
        cluster.mark_failed(n)
    missing = set() if out.complete else {n for n in nodes if n not in out.results}
    return out, missing
