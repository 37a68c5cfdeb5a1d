"""Routing during a ring change: pure functions over node records, no I/O.

At most one ring change (a *move*) runs at a time. Node states describe it completely:

* the **current ring** holds the nodes that own keys before the move: ``active``, ``down`` and
  ``draining`` nodes;
* the **target ring** holds the owners after the move: ``active``, ``down`` and ``joining``.

Without a move both rings are the same. During a move every proxy routes the same way,
because the node states come from Redis:

* inserts/upserts go to the *target* owners (the migrator never has to chase new writes);
* deletes and gets by id go to the owners on *both* rings (a key lives on exactly one of them);
* filter deletes/queries and searches go to every node that may hold data (active, joining,
  draining, down); the merge dedups by primary key, so a row caught on both its old and new
  node during its copy is counted once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from shardproxy.metastore import NodeRecord, NodeState
from shardproxy.ring import Ring, RingNode

CURRENT_STATES = frozenset({NodeState.ACTIVE, NodeState.DOWN, NodeState.DRAINING})
TARGET_STATES = frozenset({NodeState.ACTIVE, NodeState.DOWN, NodeState.JOINING})
DATA_STATES = frozenset({NodeState.ACTIVE, NodeState.JOINING, NodeState.DRAINING, NodeState.DOWN})


def current_ring(nodes: Iterable[NodeRecord], vnodes: int) -> Ring:
    return Ring([RingNode(n.id, n.weight) for n in nodes if n.state in CURRENT_STATES], vnodes=vnodes)


def target_ring(nodes: Iterable[NodeRecord], vnodes: int) -> Ring:
    return Ring([RingNode(n.id, n.weight) for n in nodes if n.state in TARGET_STATES], vnodes=vnodes)


def moving(nodes: Iterable[NodeRecord]) -> bool:
    """True while a ring change is in progress (some node is joining or draining)."""
    return any(n.state in (NodeState.JOINING, NodeState.DRAINING) for n in nodes)


def write_split(target: Ring, pks: Sequence[int | str]) -> dict[str, np.ndarray]:
    """Rows of a write batch grouped by their target owner."""
    return target.split(pks)


def read_split(current: Ring, target: Ring, pks: Sequence[int | str]) -> dict[str, list[int]]:
    """Rows of a get/delete-by-id batch grouped by every node that may hold them: the owner on
    the current ring and, when it differs, the owner on the target ring."""
    if not len(pks):
        return {}
    out: dict[str, list[int]] = {}
    cur = current.owners(pks) if current else [None] * len(pks)
    tgt = target.owners(pks) if target else [None] * len(pks)
    for i, (a, b) in enumerate(zip(cur, tgt)):
        for nid in {a, b}:
            if nid is not None:
                out.setdefault(nid, []).append(i)
    return out


def changed_owner(current: Ring, target: Ring, pks: Sequence[int | str]) -> list[int | str]:
    """Keys whose owner differs between the two rings (the keys a move carries)."""
    if not len(pks) or not current or not target:
        return []
    return [pk for pk, a, b in zip(pks, current.owners(pks), target.owners(pks)) if a != b]


def moved_fraction(before: Ring, after: Ring, pks: Sequence[int | str]) -> float:
    """Fraction of ``pks`` whose owner changes between two rings."""
    if not len(pks):
        return 0.0
    a = np.asarray(before.owner_index(pks))
    b = np.asarray(after.owner_index(pks))
    before_ids = np.asarray(before.node_ids, dtype=object)[a]
    after_ids = np.asarray(after.node_ids, dtype=object)[b]
    return float(np.mean(before_ids != after_ids))


# -- replicas -------------------------------------------------------------------------------------
def _successors(ring: Ring, count: int) -> np.ndarray:
    """For every point of the continuum, the indices of the ``count`` distinct nodes met walking
    clockwise from it (owner first): uhashring's ``iterate_nodes(distinct=True)``, tabulated.
    Cached on the (immutable) ring."""
    count = min(count, len(ring.nodes))
    cache = ring.__dict__.setdefault("_succ_cache", {})
    if count in cache:
        return cache[count]
    owners = ring._point_owner
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
    cache[count] = table
    return table


def replica_index(ring: Ring, pks: Sequence[int | str], count: int) -> np.ndarray:
    """``(len(pks), R)`` indices into ``ring.node_ids``: each key's R replicas, owner first."""
    from shardproxy.ring import ketama_hash, key_string

    hashes = np.fromiter((ketama_hash(key_string(pk)) for pk in pks), dtype=np.uint64, count=len(pks))
    pos = np.searchsorted(ring._points, hashes, side="right")
    pos[pos == len(ring._points)] = 0
    return _successors(ring, count)[pos]


def replica_split(ring: Ring, pks: Sequence[int | str], count: int) -> dict[str, np.ndarray]:
    """Rows of a batch grouped by every node holding one of their R replicas."""
    if not len(pks):
        return {}
    if count <= 1:
        return ring.split(pks)
    idx = replica_index(ring, pks, count)
    out: dict[str, np.ndarray] = {}
    for j, nid in enumerate(ring.node_ids):
        rows = np.flatnonzero((idx == j).any(axis=1))
        if len(rows):
            out[nid] = rows
    return out


def missing_shards(ring: Ring, count: int, down: Iterable[str]) -> list[str]:
    """Shards (named by their owner node) with no live replica when the nodes in ``down`` are
    unavailable: some stretch of the ring whose R replicas are all down."""
    down_idx = {ring._index[d] for d in down if d in ring._index}
    if not down_idx or not ring:
        return []
    table = _successors(ring, count)
    dead = np.isin(table, list(down_idx)).all(axis=1)
    return sorted({ring.node_ids[int(table[p, 0])] for p in np.flatnonzero(dead)})
