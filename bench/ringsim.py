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
  the ring's arrays; and the time to build the proxy's real ``Ring``.

The rings are :class:`SimRing`: the very continuum ``Ring`` builds (checked point for point in
tests/unit/test_ringsim.py), computed with numpy.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from hashlib import md5

import numpy as np

from shardproxy.ring import Ring, RingNode

HASH_SPACE = float(2**32)


class SimRing:
    """The continuum ``Ring`` builds, computed with numpy: the same points and owners as
    uhashring's ketama ring (node ``name`` gets ``vnodes * n * weight // sum(weights)`` virtual
    nodes, each 4 points from the md5 of ``name-w``; on a hash collision the later node in name
    order owns the point), without uhashring's ``insort`` per point, which makes building a real
    ``Ring`` quadratic in the number of points (minutes at 512 nodes x 160 vnodes). Lookups use
    the same code as ``Ring.owner_index`` (ketama hash per key, one ``searchsorted``)."""

    def __init__(self, nodes: Sequence[RingNode], vnodes: int) -> None:
        self.nodes = tuple(sorted(nodes, key=lambda n: n.node_id))
        self.vnodes = vnodes
        self.node_ids = tuple(n.node_id for n in self.nodes)
        weight_sum = sum(max(1, int(n.weight)) for n in self.nodes)
        hashes: list[int] = []
        owner: list[int] = []
        for i, node in enumerate(self.nodes):
            ks = vnodes * len(self.nodes) * max(1, int(node.weight)) // weight_sum
            for w in range(ks):
                dh = md5(f"{node.node_id}-{w}".encode()).digest()
                for r in range(4):
                    hashes.append(int.from_bytes(dh[4 * r : 4 * r + 4], "little"))
                    owner.append(i)
        h = np.asarray(hashes, dtype=np.uint64)
        o = np.asarray(owner, dtype=np.int32)
        order = np.lexsort((np.arange(len(h)), h))  # by hash, then insertion order
        h, o = h[order], o[order]
        if len(h):  # duplicates: every copy of a point belongs to the last node that wrote it
            starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
            last = np.r_[starts[1:] - 1, len(h) - 1]
            o = np.repeat(o[last], np.diff(np.r_[starts, len(h)]))
        self._points = h
        self._point_owner = o

    def __len__(self) -> int:
        return len(self.nodes)

    def owner_index(self, pks: Sequence[int | str]) -> np.ndarray:
        return self._point_owner[self._positions(pks)]

    _positions = Ring._positions  # the proxy's own key -> continuum point lookup


AnyRing = Ring | SimRing


def make_ring(n: int, vnodes: int, weights: Sequence[int] | None = None, prefix: str = "node-",
              real: bool = False) -> AnyRing:
    """``n`` nodes named ``node-0 .. node-(n-1)``, optionally weighted; a :class:`SimRing`
    (same continuum, fast to build) unless ``real`` asks for ``shardproxy.ring.Ring``."""
    ws = list(weights) if weights is not None else [1] * n
    if len(ws) != n:
        raise ValueError(f"{len(ws)} weights for {n} nodes")
    nodes = [RingNode(f"{prefix}{i}", int(ws[i])) for i in range(n)]
    return Ring(nodes, vnodes=vnodes) if real else SimRing(nodes, vnodes)


def build_seconds(n: int, vnodes: int) -> float:
    """Wall time to build the proxy's real ``Ring`` (uhashring) of ``n`` equal nodes."""
    t0 = time.perf_counter()
    make_ring(n, vnodes, real=True)
    return time.perf_counter() - t0


def _arcs(points: np.ndarray) -> np.ndarray:
    """Length of the arc that ends at each point (keys in [prev, point) belong to it; the first
    point also gets the wrap-around arc from the last point)."""
    p = points.astype(np.float64)
    lengths = np.empty_like(p)
    lengths[1:] = np.diff(p)
    lengths[0] = p[0] + HASH_SPACE - p[-1]
    return lengths


def arc_shares(ring: AnyRing) -> np.ndarray:
    """Expected fraction of uniformly hashed keys owned by each node (index as ``ring.node_ids``)."""
    shares = np.bincount(ring._point_owner, weights=_arcs(ring._points), minlength=len(ring.node_ids))
    return shares / HASH_SPACE


def weight_shares(ring: AnyRing) -> np.ndarray:
    w = np.array([max(1, n.weight) for n in ring.nodes], dtype=np.float64)
    return w / w.sum()


def imbalance(ring: AnyRing) -> float:
    """max over nodes of actual share / weight share (1.0 = perfectly balanced)."""
    return float(np.max(arc_shares(ring) / weight_shares(ring)))


def _owner_at(ring: AnyRing, hashes: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(ring._points, hashes, side="right")
    pos[pos == len(ring._points)] = 0
    return ring._point_owner[pos]


def moved_fraction_exact(before: AnyRing, after: AnyRing) -> float:
    """Share of the hash space whose owner (by node id) differs between two rings."""
    u = np.union1d(before._points, after._points)
    lengths = np.empty(len(u), dtype=np.float64)
    lengths[:-1] = np.diff(u.astype(np.float64))
    lengths[-1] = HASH_SPACE - float(u[-1]) + float(u[0])  # [u_last, 2^32) + [0, u_0): one owner on each ring
    a = np.asarray(before.node_ids, dtype=object)[_owner_at(before, u)]
    b = np.asarray(after.node_ids, dtype=object)[_owner_at(after, u)]
    return float(lengths[a != b].sum() / HASH_SPACE)


def successor_table(owners: np.ndarray, count: int) -> np.ndarray:
    """For each point, the ``count`` distinct owners met walking clockwise from it (owner first);
    vectorised over all points. ``count`` is capped at the number of distinct owners."""
    count = min(count, len(np.unique(owners)))
    n = len(owners)
    table = np.full((n, count), -1, dtype=np.int32)
    filled = np.zeros(n, dtype=np.int32)
    rows = np.arange(n)
    k = 0
    while (filled < count).any():
        cand = owners[(rows + k) % n]
        todo = filled < count
        dup = (table == cand[:, None]).any(axis=1)
        take = todo & ~dup
        table[rows[take], filled[take]] = cand[take]
        filled[take] += 1
        k += 1
        if k > n:  # cannot happen: count <= distinct owners
            raise AssertionError("successor walk did not terminate")
    return table


def replica_index_of(ring: AnyRing, hashes: np.ndarray, count: int) -> np.ndarray:
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


def replica_stats(ring: AnyRing, count: int) -> ReplicaStats:
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


def lookup_cost(ring: AnyRing, batch: int, repeats: int = 7, seed: int = 0) -> LookupCost:
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
    build_s: float  # SimRing (numpy); the real Ring's build time is measured separately

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
    shrunk = SimRing([node for node in ring.nodes if node.node_id != f"node-{victim}"], vnodes)
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
