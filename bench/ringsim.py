"""Consistent-hash ring simulation: pure functions over the real ring (``shardproxy.ring.Ring``, the
uhashring ketama continuum the proxy routes with). No I/O, no servers.

Everything except the lookup timing is *exact*, computed from the continuum's arcs rather than from
sampled keys: a key hashes to a uniform 32-bit point and belongs to the first ring point above it, so
a node's expected share of the keys is the total length of the arcs that end at its points.

* load imbalance: max over nodes of (arc share / weight share); 1.0 is perfect;
* moved fraction per add/remove: the share of the hash space whose owner changes, vs the ideal (the
  added node's weight share, or the removed node's);
* replica placement: for replication factor R the R distinct successors of every arc (what
  ``iterate_nodes(distinct=True)`` gives), checked to be distinct, and each node's replica load
  (share of the space it holds a replica of) as max/mean;
* lookup cost: wall time and bytes of ``Ring.owner_index`` for a batch of keys, and the memory of
  the ring's arrays; and the time to build the proxy's ``Ring``.

The rings are the proxy's own ``Ring``: it builds uhashring's continuum in linear time (checked point
for point against uhashring in tests/unit/test_ring.py), so 512 nodes take about a second.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from shardproxy.ring import Ring, RingNode, successor_table

HASH_SPACE = float(2**32)


def make_ring(n: int, vnodes: int, weights: Sequence[int] | None = None, prefix: str = "node-") -> Ring:
    """The proxy's ``Ring`` over ``n`` nodes named ``node-0 .. node-(n-1)``, optionally weighted."""
    ws = list(weights) if weights is not None else [1] * n
    if len(ws) != n:
        raise ValueError(f"{len(ws)} weights for {n} nodes")
    return Ring([RingNode(f"{prefix}{i}", int(ws[i])) for i in range(n)], vnodes=vnodes)


def build_seconds(n: int, vnodes: int) -> float:
    """Wall time to build the proxy's ``Ring`` of ``n`` equal nodes."""
    t0 = time.perf_counter()
    make_ring(n, vnodes)
    return time.perf_counter() - t0


def uhashring_build_seconds(n: int, vnodes: int) -> float:
    """The baseline: wall time for uhashring itself to build the same ring (it inserts every point
    with ``bisect.insort``, quadratic in the number of points)."""
    from uhashring import HashRing

    conf = {f"node-{i}": {"weight": 1, "vnodes": vnodes} for i in range(n)}
    t0 = time.perf_counter()
    HashRing(nodes=conf, hash_fn="ketama")
    return time.perf_counter() - t0


def _arcs(points: np.ndarray) -> np.ndarray:
    """Length of the arc that ends at each point (keys in [prev, point) belong to it; the first
    point also gets the wrap-around arc from the last point)."""
    p = points.astype(np.float64)
    lengths = np.empty_like(p)
    lengths[1:] = np.diff(p)
    lengths[0] = p[0] + HASH_SPACE - p[-1]
    return lengths


def arc_shares(ring: Ring) -> np.ndarray:
    """Expected fraction of uniformly hashed keys owned by each node (index as ``ring.node_ids``)."""
    shares = np.bincount(ring._point_owner, weights=_arcs(ring._points), minlength=len(ring.node_ids))
    return shares / HASH_SPACE


def weight_shares(ring: Ring) -> np.ndarray:
    w = np.array([max(1, n.weight) for n in ring.nodes], dtype=np.float64)
    return w / w.sum()


def imbalance(ring: Ring) -> float:
    """max over nodes of actual share / weight share (1.0 = perfectly balanced)."""
    return float(np.max(arc_shares(ring) / weight_shares(ring)))


def _owner_at(ring: Ring, hashes: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(ring._points, hashes, side="right")
    pos[pos == len(ring._points)] = 0
    return ring._point_owner[pos]


def moved_fraction_exact(before: Ring, after: Ring) -> float:
    """Share of the hash space whose owner (by node id) differs between two rings."""
    u = np.union1d(before._points, after._points)
    lengths = np.empty(len(u), dtype=np.float64)
    lengths[:-1] = np.diff(u.astype(np.float64))
    lengths[-1] = HASH_SPACE - float(u[-1]) + float(u[0])  # [u_last, 2^32) + [0, u_0): one owner on each ring
    a = np.asarray(before.node_ids, dtype=object)[_owner_at(before, u)]
    b = np.asarray(after.node_ids, dtype=object)[_owner_at(after, u)]
    return float(lengths[a != b].sum() / HASH_SPACE)


def replica_index_of(ring: Ring, hashes: np.ndarray, count: int) -> np.ndarray:
    """``(len(hashes), R)`` replica node indices of key hashes (owner first)."""
    pos = np.searchsorted(ring._points, hashes, side="right")
    pos[pos == len(ring._points)] = 0
    return successor_table(ring._point_owner, count)[pos]


@dataclass
class ReplicaStats:
    replicas: int
    distinct_ok: bool  # no two replicas of any key on one node
    load_max_over_mean: float  # share of the space each node holds a replica of: max / mean
    load_min_over_mean: float


def replica_stats(ring: Ring, count: int) -> ReplicaStats:
    table = successor_table(ring._point_owner, count)
    r = table.shape[1]
    srt = np.sort(table, axis=1)
    distinct = bool((srt[:, 1:] != srt[:, :-1]).all()) if r > 1 else True
    arcs = _arcs(ring._points)
    load = np.zeros(len(ring.node_ids))
    for j in range(r):
        load += np.bincount(table[:, j], weights=arcs, minlength=len(ring.node_ids))
    load /= HASH_SPACE
    mean = load.mean()
    return ReplicaStats(r, distinct, float(load.max() / mean), float(load.min() / mean))


@dataclass
class LookupCost:
    batch: int
    seconds_per_batch: float
    us_per_key: float
    peak_bytes_per_batch: int
    ring_points: int
    ring_array_bytes: int


def lookup_cost(ring: Ring, batch: int, repeats: int = 7, seed: int = 0) -> LookupCost:
    """Time and memory of routing one batch of int keys (``Ring.owner_index``: hash + search)."""
    keys = np.random.default_rng(seed).integers(0, 2**62, batch).tolist()
    ring.owner_index(keys[:10])  # warm
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        ring.owner_index(keys)
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    ring.owner_index(keys)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return LookupCost(batch, best, best / batch * 1e6, int(peak), len(ring._points),
                      int(ring._points.nbytes + ring._point_owner.nbytes))


@dataclass
class RingPoint:
    nodes: int
    vnodes: int
    weighted: bool
    imbalance: float
    add_moved: float
    add_ideal: float
    remove_moved: float
    remove_ideal: float
    replicas: int
    replica_distinct: bool
    replica_load_max_over_mean: float
    build_s: float  # building the proxy's Ring

    @property
    def add_ratio(self) -> float:
        return self.add_moved / self.add_ideal

    @property
    def remove_ratio(self) -> float:
        return self.remove_moved / self.remove_ideal

    def as_dict(self) -> dict:
        return asdict(self) | {"add_ratio": self.add_ratio, "remove_ratio": self.remove_ratio}


def alternating_weights(n: int) -> list[int]:
    """A mixed fleet: every other node twice as big."""
    return [2 if i % 2 else 1 for i in range(n)]


def simulate_point(n: int, vnodes: int, weighted: bool = False, replicas: int = 2) -> RingPoint:
    """Imbalance, add/remove moved fractions and replica placement for one (nodes, vnodes) setting.
    Add: node ``n`` (weight 1) joins ``n`` nodes; remove: the middle node leaves."""
    ws = alternating_weights(n) if weighted else [1] * n
    t0 = time.perf_counter()
    ring = make_ring(n, vnodes, ws)
    build = time.perf_counter() - t0
    grown = make_ring(n + 1, vnodes, [*ws, 1])
    victim = n // 2
    shrunk = Ring([node for node in ring.nodes if node.node_id != f"node-{victim}"], vnodes)
    add_ideal = 1 / (sum(ws) + 1)
    remove_ideal = ws[victim] / sum(ws)
    rs = replica_stats(ring, replicas)
    return RingPoint(
        nodes=n, vnodes=vnodes, weighted=weighted, imbalance=imbalance(ring),
        add_moved=moved_fraction_exact(ring, grown), add_ideal=add_ideal,
        remove_moved=moved_fraction_exact(ring, shrunk), remove_ideal=remove_ideal,
        replicas=rs.replicas, replica_distinct=rs.distinct_ok, replica_load_max_over_mean=rs.load_max_over_mean,
        build_s=build,
    )


def choose_vnodes(points: Sequence[RingPoint], max_imbalance: float = 1.10, max_nodes: int = 128) -> int | None:
    """The smallest vnode count whose unweighted imbalance stays under ``max_imbalance`` for every
    simulated cluster of up to ``max_nodes`` nodes (None when none does)."""
    by_v: dict[int, float] = {}
    for p in points:
        if not p.weighted and p.nodes <= max_nodes:
            by_v[p.vnodes] = max(by_v.get(p.vnodes, 0.0), p.imbalance)
    ok = sorted(v for v, worst in by_v.items() if worst <= max_imbalance)
    return ok[0] if ok else None
