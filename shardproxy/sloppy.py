"""Sloppy quorum (Dynamo): where the copies of a write go when some replicas cannot take them,
and when a row counts as acknowledged. Pure functions over a ring and sets of node ids; no I/O.

* Each key has R replicas: the R distinct nodes met walking the ring clockwise from its hash.
* A replica that is unavailable (down, circuit open, or failed/slow during this very write) is
  replaced by a **stand-in**: the next node further along the ring that is available, does not
  hold the key (is not one of its R replicas) and is not already standing in for it. The stand-in
  keeps the row plus a durable hint, and hands it back when the replica answers again.
* A row is acknowledged once ``needed`` copies are durable, stand-ins counted, where ``needed``
  follows the collection's ``write_ack``: ``one`` = 1, ``quorum`` = R // 2 + 1, ``all`` = R.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shardproxy.ring import Ring

WRITE_ACKS = ("one", "quorum", "all")


def acks_needed(write_ack: str, replicas: int, ring_size: int) -> int:
    """Copies a row needs before it is acknowledged (never more than the ring has nodes)."""
    if write_ack not in WRITE_ACKS:
        raise ValueError(f"write_ack must be one of {', '.join(WRITE_ACKS)}, got {write_ack!r}")
    want = {"one": 1, "quorum": replicas // 2 + 1, "all": replicas}[write_ack]
    return max(1, min(want, ring_size))


def successor_order(ring: Ring, pks: Sequence[int | str]) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, table)``: for each key its continuum position, and per position every ring
    node in clockwise order (owner first). ``table[positions[i]]`` is key i's full preference list."""
    from shardproxy.routing import _successors
    from shardproxy.ring import ketama_hash, key_string

    hashes = np.fromiter((ketama_hash(key_string(pk)) for pk in pks), dtype=np.uint64, count=len(pks))
    pos = np.searchsorted(ring._points, hashes, side="right")
    pos[pos == len(ring._points)] = 0
    return pos, _successors(ring, len(ring.node_ids))


def place_row(
    preference: Sequence[str], replicas: int, unavailable: frozenset[str] | set[str],
    taken: frozenset[str] | set[str] = frozenset(), served: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[tuple[str, str]], list[str]]:
    """Targets of one row: ``([(node, for_replica), ...], [replicas with no stand-in])``.

    ``preference`` is the key's full clockwise node list (first ``replicas`` are its replicas);
    ``taken`` are nodes that already hold (or are being sent) this row in this write: they are
    neither sent again nor chosen as stand-ins; ``served`` are replicas whose copy (or stand-in
    copy) is already placed: they need nothing more."""
    reps = list(preference[:replicas])
    targets: list[tuple[str, str]] = []
    unplaced: list[str] = []
    chosen = set(taken)
    spare = [n for n in preference[replicas:]]
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

    sends: dict[str, list[int]] = field(default_factory=dict)  # node -> row positions it is sent
    hints: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (replica, stand-in) -> rows
    unplaced: dict[str, list[int]] = field(default_factory=dict)  # replica with no stand-in -> rows

    def rows_for(self, node: str) -> np.ndarray:
        return np.asarray(self.sends.get(node, []), dtype=np.int64)


def plan_write(
    ring: Ring, pks: Sequence[int | str], replicas: int, unavailable: Iterable[str],
    rows: Sequence[int] | None = None, taken: Mapping[int, Iterable[str]] | None = None,
    served: Mapping[int, Iterable[str]] | None = None,
) -> WritePlan:
    """Targets of the rows ``rows`` (default: all) of a write batch with keys ``pks``.

    ``taken`` maps a row to nodes that already have it in this write (a second round after some
    sends failed); those are not sent again and not chosen as stand-ins. ``served`` maps a row to
    replicas whose copy is already placed (by the replica or a stand-in)."""
    plan = WritePlan()
    if not len(pks) or not ring:
        return plan
    down = frozenset(unavailable)
    positions, table = successor_order(ring, pks)
    names = ring.node_ids
    memo: dict[tuple[int, frozenset[str], frozenset[str]], tuple[list[tuple[str, str]], list[str]]] = {}
    for i in (range(len(pks)) if rows is None else rows):
        t = frozenset(taken.get(i, ())) if taken else frozenset()
        sv = frozenset(served.get(i, ())) if served else frozenset()
        key = (int(positions[i]), t, sv)
        got = memo.get(key)
        if got is None:
            pref = [names[j] for j in table[positions[i]]]
            got = memo[key] = place_row(pref, replicas, down, t, sv)
        targets, unplaced = got
        for node, for_replica in targets:
            plan.sends.setdefault(node, []).append(i)
            if node != for_replica:
                plan.hints.setdefault((for_replica, node), []).append(i)
        for r in unplaced:
            plan.unplaced.setdefault(r, []).append(i)
    return plan


def tally(num_rows: int, acknowledged: Iterable[Sequence[int] | np.ndarray]) -> np.ndarray:
    """Copies acknowledged per row, from the row lists of every send that succeeded."""
    counts = np.zeros(num_rows, dtype=np.int32)
    for rows in acknowledged:
        if len(rows):
            np.add.at(counts, np.asarray(rows, dtype=np.int64), 1)
    return counts


def outcome(counts: np.ndarray, needed: int) -> tuple[list[int], list[int], list[int]]:
    """``(ok_rows, failed_rows, landed_rows)``: acknowledged; not acknowledged; not acknowledged
    but written somewhere (a write reported as failed must say these, or undo them)."""
    ok = np.flatnonzero(counts >= needed).tolist()
    failed = np.flatnonzero(counts < needed).tolist()
    landed = np.flatnonzero((counts > 0) & (counts < needed)).tolist()
    return ok, failed, landed


def holders(ring: Ring, pks: Sequence[int | str], replicas: int) -> list[list[str]]:
    """Each key's R replicas (owner first)."""
    if not len(pks) or not ring:
        return [[] for _ in pks]
    positions, table = successor_order(ring, pks)
    names = ring.node_ids
    return [[names[j] for j in table[p][:replicas]] for p in positions]
