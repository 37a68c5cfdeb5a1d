"""Consistent-hash ring: which node owns a primary key.

A thin, vectorised layer over ``uhashring`` (ketama continuum: 32-bit md5-derived points, vnodes
scaled by weight). ``owner`` asks uhashring itself; ``owners`` gives the same answers for a whole
batch with one ``numpy.searchsorted`` over the continuum, which is what the insert path uses.
Pure logic: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import md5

import numpy as np
from uhashring import HashRing

DEFAULT_VNODES = 160


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


class Ring:
    """An immutable ring over a set of weighted nodes."""

    def __init__(self, nodes: Sequence[RingNode], vnodes: int = DEFAULT_VNODES) -> None:
        self.nodes: tuple[RingNode, ...] = tuple(sorted(nodes, key=lambda n: n.node_id))
        self.vnodes = vnodes
        self.node_ids: tuple[str, ...] = tuple(n.node_id for n in self.nodes)
        self._index = {nid: i for i, nid in enumerate(self.node_ids)}
        self._succ_cache: dict[int, np.ndarray] = {}
        if not self.nodes:
            self._hring = None
            self._points = np.zeros(0, dtype=np.uint64)
            self._point_owner = np.zeros(0, dtype=np.int32)
            return
        conf = {n.node_id: {"weight": max(1, int(n.weight)), "vnodes": vnodes} for n in self.nodes}
        self._hring = HashRing(nodes=conf, hash_fn="ketama")
        runtime = self._hring.runtime
        self._points = np.asarray(runtime._keys, dtype=np.uint64)
        self._point_owner = np.asarray(
            [self._index[runtime._ring[k]] for k in runtime._keys], dtype=np.int32
        )

    def __len__(self) -> int:
        return len(self.nodes)

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def owner(self, pk: int | str) -> str:
        """Owner of one key (asks uhashring directly)."""
        if self._hring is None:
            raise LookupError("the ring has no nodes")
        return str(self._hring.get_node(key_string(pk)))

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
        if table is not None:
            return table
        owners = self._point_owner
        n = len(owners)
        table = np.empty((n, count), dtype=np.int32)
        for p in range(n):
            seen: list[int] = []
            q = p
            while len(seen) < count:
                o = int(owners[q % n])
                if o not in seen:
                    seen.append(o)
                q += 1
            table[p] = seen
        self._succ_cache[count] = table
        return table

    def replica_index(self, pks: Sequence[int | str], count: int) -> np.ndarray:
        """``(len(pks), R)`` indices into ``node_ids``: each key's R replicas, owner first."""
        return self.successors(count)[self._positions(pks)]

    def owners(self, pks: Sequence[int | str]) -> list[str]:
        idx = self.owner_index(pks)
        return [self.node_ids[i] for i in idx]

    def replicas(self, pk: int | str, count: int) -> list[str]:
        """The ``count`` distinct successive nodes holding a key (owner first)."""
        if self._hring is None:
            raise LookupError("the ring has no nodes")
        count = min(count, len(self.nodes))
        out: list[str] = []
        for name in self._hring.iterate_nodes(key_string(pk), distinct=True):
            out.append(str(name))
            if len(out) == count:
                break
        return out

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
