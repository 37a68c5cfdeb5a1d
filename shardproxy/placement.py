"""Placement: which nodes hold which keys, before, during and after a ring change. Pure: no I/O.

At most one ring change (a *move*) runs at a time. Node states describe it completely:

* the **current ring** holds the nodes that own keys before the move: ``active``, ``down`` and
  ``draining`` nodes;
* the **target ring** holds the owners after the move: ``active``, ``down`` and ``joining``.

Without a move both rings are the same. During a move every proxy routes the same way,
because the node states come from Redis:

* inserts/upserts go to the *target* owners (the migrator never has to chase new writes):
  :meth:`Placement.write_targets`;
* deletes and gets by id go to every node that may hold the keys (:meth:`Placement.holders`):
  the R replicas on the target ring and, during a move, the keys' replicas on the current ring;
* filter deletes/queries and searches go to every node that may hold data
  (:meth:`Placement.scatter_set`: active, joining, draining, down); the merge dedups by primary
  key, so a row caught on both its old and new node during its copy is counted once;
* writes and deletes during a move leave tombstones (``touched`` marks) for the keys the
  migrator might copy: :meth:`Placement.tombstone_keys`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from shardproxy.metastore import NodeRecord, NodeState
from shardproxy.ring import DEFAULT_VNODES, Ring, RingNode

CURRENT_STATES = frozenset({NodeState.ACTIVE, NodeState.DOWN, NodeState.DRAINING})
TARGET_STATES = frozenset({NodeState.ACTIVE, NodeState.DOWN, NodeState.JOINING})
DATA_STATES = frozenset({NodeState.ACTIVE, NodeState.JOINING, NodeState.DRAINING, NodeState.DOWN})

Key = int | str


def current_ring(nodes: Iterable[NodeRecord], vnodes: int) -> Ring:
    return Ring([RingNode(n.id, n.weight) for n in nodes if n.state in CURRENT_STATES], vnodes=vnodes)


def target_ring(nodes: Iterable[NodeRecord], vnodes: int) -> Ring:
    return Ring([RingNode(n.id, n.weight) for n in nodes if n.state in TARGET_STATES], vnodes=vnodes)


def moving(nodes: Iterable[NodeRecord]) -> bool:
    """True while a ring change is in progress (some node is joining or draining)."""
    return any(n.state in (NodeState.JOINING, NodeState.DRAINING) for n in nodes)


def read_split(current: Ring, target: Ring, pks: Sequence[Key]) -> dict[str, list[int]]:
    """Rows of a get/delete-by-id batch grouped by every node that may hold them (R = 1): the
    owner on the current ring and, when it differs, the owner on the target ring."""
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


def changed_owner(current: Ring, target: Ring, pks: Sequence[Key]) -> list[Key]:
    """Keys whose owner differs between the two rings (the keys a move carries)."""
    if not len(pks) or not current or not target:
        return []
    return [pk for pk, a, b in zip(pks, current.owners(pks), target.owners(pks)) if a != b]


def moved_fraction(before: Ring, after: Ring, pks: Sequence[Key]) -> float:
    """Fraction of ``pks`` whose owner changes between two rings."""
    if not len(pks):
        return 0.0
    a = np.asarray(before.owner_index(pks))
    b = np.asarray(after.owner_index(pks))
    before_ids = np.asarray(before.node_ids, dtype=object)[a]
    after_ids = np.asarray(after.node_ids, dtype=object)[b]
    return float(np.mean(before_ids != after_ids))


def replica_split(ring: Ring, pks: Sequence[Key], count: int) -> dict[str, np.ndarray]:
    """Rows of a batch grouped by every node holding one of their ``count`` replicas."""
    if not len(pks):
        return {}
    if count <= 1:
        return ring.split(pks)
    idx = ring.replica_index(pks, count)
    out: dict[str, np.ndarray] = {}
    for j, nid in enumerate(ring.node_ids):
        rows = np.flatnonzero((idx == j).any(axis=1))
        if len(rows):
            out[nid] = rows
    return out


def missing_shards(ring: Ring, count: int, down: Iterable[str]) -> list[str]:
    """Shards (named by their owner node) with no live replica when the nodes in ``down`` are
    unavailable: some stretch of the ring whose ``count`` replicas are all down."""
    down_idx = {i for i in (ring.index_of(d) for d in down) if i is not None}
    if not down_idx or not ring:
        return []
    table = ring.successors(count)
    dead = np.isin(table, list(down_idx)).all(axis=1)
    return sorted({ring.node_ids[int(table[p, 0])] for p in np.flatnonzero(dead)})


@dataclass(frozen=True)
class Placement:
    """Where keys live for one collection: the current and target rings, whether a move is in
    progress, and the collection's replication factor R."""

    current: Ring
    target: Ring
    moving: bool = False
    replicas: int = 1

    @classmethod
    def from_nodes(cls, nodes: Sequence[NodeRecord], vnodes: int = DEFAULT_VNODES, replicas: int = 1) -> Placement:
        return cls(current_ring(nodes, vnodes), target_ring(nodes, vnodes), moving(nodes), replicas)

    @classmethod
    def steady(cls, ring: Ring, replicas: int = 1) -> Placement:
        """No move: both rings are ``ring``."""
        return cls(ring, ring, False, replicas)

    def with_replicas(self, replicas: int) -> Placement:
        return dataclasses.replace(self, replicas=replicas)

    def write_targets(self, pks: Sequence[Key]) -> dict[str, np.ndarray]:
        """Rows of a write batch grouped by node: the R replicas of each key on the target ring."""
        return replica_split(self.target, pks, self.replicas)

    def holders(self, pks: Sequence[Key]) -> dict[str, list[int]]:
        """Rows of a get/delete-by-id batch grouped by every node that may hold them: the R
        replicas on the target ring and, during a move, the R replicas on the current ring."""
        if not len(pks):
            return {}
        if self.replicas > 1:
            parts = {n: r.tolist() for n, r in replica_split(self.target, pks, self.replicas).items()}
            if self.moving:
                for nid, rows in replica_split(self.current, pks, self.replicas).items():
                    parts[nid] = sorted(set(parts.get(nid, [])) | set(rows.tolist()))
            return parts
        if self.moving:
            return read_split(self.current, self.target, pks)
        return {n: r.tolist() for n, r in self.target.split(pks).items()}

    def delete_targets(self, pks: Sequence[Key], live: Callable[[str], bool]) -> dict[str, list[int]]:
        """Rows of a delete-by-id batch grouped by node: the :meth:`holders` and, with R > 1,
        *every* row on every live node that may hold data, because under sloppy quorum a stand-in
        may hold a copy of any key (also a node that is a replica of other keys in the batch:
        its own replica rows are not enough)."""
        parts = self.holders(pks)
        if self.replicas > 1 and len(pks):
            every = list(range(len(pks)))
            for nid in self.scatter_set():
                if live(nid):
                    parts[nid] = every
        return parts

    def scatter_set(self) -> list[str]:
        """Every node that may hold data (both rings), sorted: where filter reads go."""
        return sorted(set(self.current.node_ids) | set(self.target.node_ids))

    def tombstone_keys(self, pks: Sequence[Key]) -> list[Key]:
        """Keys a write or delete must mark as touched before it runs, so the migrator never
        copies an older version over it: none without a move; with R > 1 every key (replica
        sets change in ways a single owner comparison misses); with R = 1 the keys whose owner
        changes."""
        if not self.moving:
            return []
        if self.replicas > 1:
            return list(pks)
        return changed_owner(self.current, self.target, pks)

    def write_plan(self, pks: Sequence[Key], unavailable: Iterable[str]) -> WritePlan:
        """Sloppy quorum (R > 1): the copies of a write batch on the target ring, with stand-ins
        for the ``unavailable`` replicas (see :func:`plan_write`)."""
        return plan_write(self.target, pks, self.replicas, unavailable)

    def read_plan(self, nodes: Sequence[str], live: Callable[[str], bool], rotation: int,
                  hinted: Callable[[str], bool] | None = None,
                  ) -> tuple[list[str], list[str], Callable[[frozenset[str]], bool]]:
        """Nodes a fan-out read asks first, spares to hedge to, and when answers are complete
        (see :func:`fanout_plan`)."""
        return fanout_plan(self.target, self.replicas, nodes, live, self.moving, rotation, hinted)

    def missing_shards(self, down: Iterable[str]) -> list[str]:
        """Shards with no live replica when ``down`` nodes are unavailable, on either ring; a
        down node on neither ring (its rows may have no other copy) counts as missing too."""
        down = set(down)
        out = set(missing_shards(self.target, self.replicas, down))
        if self.moving:
            out |= set(missing_shards(self.current, self.replicas, down))
        out |= {n for n in down if self.target.index_of(n) is None and self.current.index_of(n) is None}
        return sorted(out)


# -- sloppy quorum: where a write's copies go when replicas cannot take them ---------------------
# Dynamo's rule: a replica that is unavailable (down, circuit open, or failed/slow during this very
# write) is replaced by a *stand-in*: the next node further along the ring that is available, does
# not hold the key (is not one of its R replicas) and is not already standing in for it. The
# stand-in keeps the row plus a durable hint and hands it back when the replica answers again.


def place_row(
    preference: Sequence[str], replicas: int, unavailable: frozenset[str] | set[str],
    taken: frozenset[str] | set[str] = frozenset(), served: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[tuple[str, str]], list[str]]:
    """Targets of one row: ``([(node, for_replica), ...], [replicas with no stand-in])``.

    ``preference`` is the key's full clockwise node list (the first ``replicas`` are its
    replicas); ``taken`` are nodes that already hold (or are being sent) this row in this write:
    neither sent again nor chosen as stand-ins; ``served`` are replicas whose copy (or stand-in
    copy) is already placed: they need nothing more."""
    reps = list(preference[:replicas])
    targets: list[tuple[str, str]] = []
    unplaced: list[str] = []
    chosen = set(taken)
    spare = list(preference[replicas:])
    for r in reps:
        if r in served:
            continue
        if r not in unavailable:
            if r not in taken:
                targets.append((r, r))
                chosen.add(r)
            continue
        standin = next((n for n in spare if n not in unavailable and n not in chosen), None)
        if standin is None:
            unplaced.append(r)
        else:
            chosen.add(standin)
            targets.append((standin, r))
    return targets, unplaced


@dataclass
class WritePlan:
    """Where the rows of one write go."""

    sends: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # node -> row positions
    hints: dict[tuple[str, str], list[int]] = dataclasses.field(default_factory=dict)  # (replica, stand-in) -> rows
    unplaced: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # replica with no stand-in -> rows


def plan_write(
    ring: Ring, pks: Sequence[Key], replicas: int, unavailable: Iterable[str],
    rows: Sequence[int] | None = None, taken: Mapping[int, Iterable[str]] | None = None,
    served: Mapping[int, Iterable[str]] | None = None,
) -> WritePlan:
    """Targets of the rows ``rows`` (default: all) of a write batch with keys ``pks``. ``taken``
    and ``served`` (per row, see :func:`place_row`) are for a second round after some sends
    failed or were too slow."""
    plan = WritePlan()
    if not len(pks) or not ring:
        return plan
    down = frozenset(unavailable)
    positions = ring._positions(pks)
    table = ring.successors(len(ring.node_ids))
    names = ring.node_ids
    memo: dict[tuple[int, frozenset[str], frozenset[str]], tuple[list[tuple[str, str]], list[str]]] = {}
    for i in range(len(pks)) if rows is None else rows:
        t = frozenset(taken.get(i, ())) if taken else frozenset()
        sv = frozenset(served.get(i, ())) if served else frozenset()
        key = (int(positions[i]), t, sv)
        got = memo.get(key)
        if got is None:
            got = memo[key] = place_row([names[j] for j in table[positions[i]]], replicas, down, t, sv)
        targets, unplaced = got
        for node, for_replica in targets:
            plan.sends.setdefault(node, []).append(i)
            if node != for_replica:
                plan.hints.setdefault((for_replica, node), []).append(i)
        for r in unplaced:
            plan.unplaced.setdefault(r, []).append(i)
    return plan


def replica_lists(ring: Ring, pks: Sequence[Key], replicas: int) -> list[list[str]]:
    """Each key's R replicas (owner first)."""
    if not len(pks) or not ring:
        return [[] for _ in pks]
    table = ring.successors(replicas)
    return [[ring.node_ids[j] for j in table[p]] for p in ring._positions(pks)]


# -- covering reads: which nodes a fan-out read asks, and when its answers are complete ---------


def covers_ring(ring: Ring, replicas: int) -> Callable[[frozenset[str]], bool]:
    """Do answers from these nodes cover every stretch of the ring (some replica answered)?"""
    ids = frozenset(ring.node_ids)
    return lambda answered: not missing_shards(ring, replicas, ids - answered)


def minimal_cover(ring: Ring, replicas: int, order: Sequence[str]) -> list[str]:
    """Greedy: nodes in ``order`` until they cover the ring, then drop the redundant ones."""
    covers = covers_ring(ring, replicas)
    chosen: list[str] = []
    for n in order:
        if covers(frozenset(chosen)):
            break
        chosen.append(n)
    for n in list(chosen):
        if covers(frozenset(chosen) - {n}):
            chosen.remove(n)
    return chosen


def fanout_plan(
    ring: Ring, replicas: int, nodes: Sequence[str], live: Callable[[str], bool], moving: bool, rotation: int,
    hinted: Callable[[str], bool] | None = None,
) -> tuple[list[str], list[str], Callable[[frozenset[str]], bool]]:
    """``(first, spare, covers)`` for a read every node answers the same way (search, filter
    query). R > 1, all live, no move: a minimal covering set (rotating), the others spare to
    hedge to. A node out: every live node, complete when they cover. R = 1 or a move: every node
    must answer (a down one included: its absence is for the partial policy to judge).
    A live node with pending hints (``hinted``: some of its copies are on stand-ins until handed
    back) counts for nothing in the cover: the others must cover the ring (it is only a spare);
    when they cannot, every live node is asked and must answer."""
    asked = [n for n in nodes if live(n)]
    if moving or replicas <= 1 or set(nodes) != set(ring.node_ids):
        need = frozenset(nodes)
        return asked, [], lambda s: need <= s
    covers = covers_ring(ring, replicas)
    if len(asked) < len(nodes):
        return asked, [], covers
    k = rotation % len(asked)
    order = asked[k:] + asked[:k]
    behind = frozenset(n for n in asked if hinted is not None and hinted(n))
    if behind:
        rest = [n for n in order if n not in behind]
        if not covers(frozenset(rest)):
            every = frozenset(asked)
            return asked, [], lambda s: every <= s
        first = minimal_cover(ring, replicas, rest)
        return first, [n for n in rest if n not in first] + sorted(behind), lambda s: covers(frozenset(s) - behind)
    first = minimal_cover(ring, replicas, order)
    return first, [n for n in order if n not in first], covers
