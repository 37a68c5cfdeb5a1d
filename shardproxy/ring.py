"""Consistent-hash ring: which node owns a primary key.

The ``uhashring`` ketama continuum (32-bit md5-derived points, vnodes scaled by weight), built with
numpy in time linear in the number of points (plus one sort), and looked up with one
``numpy.searchsorted`` per batch. uhashring itself inserts every point with ``bisect.insort``, which
is quadratic in the number of points (≈20 s at 128 nodes x 160 vnodes); this module computes the very
same continuum (same points, same owners, same tie-breaks on hash collisions), so every key lands
where uhashring puts it: tests/unit/test_ring.py checks that against uhashring at several sizes.
Pure logic: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import md5

import numpy as np

DEFAULT_VNODES = 160
KETAMA_POINTS_PER_VNODE = 4  # uhashring's KetamaRing(replicas=4): four 32-bit points per md5 digest


def key_string(pk: int | str) -> str:
    """The string form of a primary key that the ring hashes (ints and strings alike)."""
    return str(pk)


def ketama_hash(key: str) -> int:
    """uhashring's ketama hash of a key (replica 0)."""
    dh = md5(key.encode("utf-8")).digest()
    return (dh[3] << 24) | (dh[2] << 16) | (dh[1] << 8) | dh[0]


@dataclass(frozen=True)
class RingNode:
    node_id: str
    weight: int = 1


def node_weight(node: RingNode) -> int:
    return max(1, int(node.weight))


def ketama_continuum(nodes: Sequence[RingNode], vnodes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(points, owner)``: uhashring's ketama continuum for ``nodes`` in the order given.

    Node ``name`` gets ``vnodes * len(nodes) * weight // sum(weights)`` virtual nodes; virtual node
    ``w`` contributes the four little-endian 32-bit words of ``md5(f"{name}-{w}")``. ``points`` is
    sorted and keeps duplicates (as uhashring's key list does); on a hash collision every copy of
    the point belongs to the node that wrote it last (uhashring's ``_ring[h] = name``)."""
    if not nodes:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32)
    weight_sum = sum(node_weight(n) for n in nodes)
    digests: list[bytes] = []
    counts: list[int] = []
    for node in nodes:
        ks = vnodes * len(nodes) * node_weight(node) // weight_sum
        digests.extend(md5(f"{node.node_id}-{w}".encode("utf-8")).digest() for w in range(ks))
        counts.append(ks)
    h = np.frombuffer(b"".join(digests), dtype="<u4").astype(np.uint64)
    o = np.repeat(np.arange(len(nodes), dtype=np.int32), np.asarray(counts) * KETAMA_POINTS_PER_VNODE)
    if not len(h):
        return h, o
    order = np.argsort(h, kind="stable")  # by hash, then by insertion order
    h, o = h[order], o[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    if len(starts) < len(h):  # collisions: the last writer owns every copy
        last = np.r_[starts[1:] - 1, len(h) - 1]
        o = np.repeat(o[last], np.diff(np.r_[starts, len(h)]))
    return h, o


def successor_table(owners: np.ndarray, count: int) -> np.ndarray:
    """For each point, the ``count`` distinct owners met walking clockwise from it (owner first):
    uhashring's ``iterate_nodes(distinct=True)`` tabulated, vectorised over all points. ``count``
    is capped at the number of distinct owners."""
    n = len(owners)
    count = min(count, len(np.unique(owners))) if n else 0
    table = np.full((n, count), -1, dtype=np.int32)
    if not n or not count:
        return table
    filled = np.zeros(n, dtype=np.int32)
    todo = np.arange(n)
    k = 0
    while len(todo):
        cand = owners[(todo + k) % n]
        dup = (table[todo] == cand[:, None]).any(axis=1)
        take = todo[~dup]
        table[take, filled[take]] = cand[~dup]
        filled[take] += 1
        todo = todo[filled[todo] < count]
        k += 1
        if k > n:  # cannot happen: count <= distinct owners
            raise AssertionError("successor walk did not terminate")
    return table


class Ring:
    """An immutable ring over a set of weighted nodes."""

    def __init__(self, nodes: Sequence[RingNode], vnodes: int = DEFAULT_VNODES) -> None:
        self.nodes: tuple[RingNode, ...] = tuple(sorted(nodes, key=lambda n: n.node_id))
        self.vnodes = vnodes
        self.node_ids: tuple[str, ...] = tuple(n.node_id for n in self.nodes)
        self._index = {nid: i for i, nid in enumerate(self.node_ids)}
        self._succ_cache: dict[int, np.ndarray] = {}
        self._points, self._point_owner = ketama_continuum(self.nodes, vnodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def owner(self, pk: int | str) -> str:
        """Owner of one key (uhashring's ``get_node``)."""
        return self.node_ids[int(self.owner_index([pk])[0])]

    def index_of(self, node_id: str) -> int | None:
        """Position of a node in ``node_ids`` (None when it is not on this ring)."""
        return self._index.get(node_id)

    def _positions(self, pks: Sequence[int | str]) -> np.ndarray:
        """For each key, the continuum point that owns it."""
        if not len(self._points):
            raise LookupError("the ring has no nodes")
        hashes = np.fromiter(
            (ketama_hash(key_string(pk)) for pk in pks), dtype=np.uint64, count=len(pks)
        )
        pos = np.searchsorted(self._points, hashes, side="right")
        pos[pos == len(self._points)] = 0
        return pos

    def owner_index(self, pks: Sequence[int | str]) -> np.ndarray:
        """Index into ``node_ids`` of each key's owner, for a batch of keys."""
        return self._point_owner[self._positions(pks)]

    def successors(self, count: int) -> np.ndarray:
        """``(points, min(count, len(nodes)))`` table: for every point of the continuum, the
        indices into ``node_ids`` of the distinct nodes met walking clockwise from it (owner
        first), i.e. uhashring's ``iterate_nodes(distinct=True)`` tabulated. Cached (the ring
        is immutable)."""
        count = min(count, len(self.nodes))
        table = self._succ_cache.get(count)
        if table is None:
            table = self._succ_cache[count] = successor_table(self._point_owner, count)
        return table

    def replica_index(self, pks: Sequence[int | str], count: int) -> np.ndarray:
        """``(len(pks), R)`` indices into ``node_ids``: each key's R replicas, owner first."""
        return self.successors(count)[self._positions(pks)]

    def owners(self, pks: Sequence[int | str]) -> list[str]:
        idx = self.owner_index(pks)
        return [self.node_ids[i] for i in idx]

    def replicas(self, pk: int | str, count: int) -> list[str]:
        """The ``count`` distinct successive nodes holding a key (owner first)."""
        return [self.node_ids[i] for i in self.replica_index([pk], count)[0]]

    def split(self, pks: Sequence[int | str]) -> dict[str, np.ndarray]:
        """Row indices of a batch grouped by owner: ``{node_id: array of row positions}``."""
        if not len(pks):
            return {}
        idx = self.owner_index(pks)
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        bounds = np.flatnonzero(np.diff(sorted_idx)) + 1
        out: dict[str, np.ndarray] = {}
        for chunk in np.split(order, bounds):
            out[self.node_ids[idx[chunk[0]]]] = chunk
        return out


def ring_from_weights(weights: Mapping[str, int], vnodes: int = DEFAULT_VNODES) -> Ring:
    return Ring([RingNode(nid, w) for nid, w in weights.items()], vnodes=vnodes)
