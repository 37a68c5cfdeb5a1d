"""Verify: compare what every node stores with where the ring says it belongs. Pure: no I/O.

The scanner (:mod:`shardproxy.verifyscan`) reads each node's rows of a collection in
primary-key order as ``(pk, digest)`` pairs (a digest of the whole row) and hands windows of
them (every key up to a horizon that all nodes have passed) to :func:`compare_window`, which
adds what it finds to a :class:`CollectionReport`:

* ``missing``: an owner of the key does not hold it (it is on another node);
* ``stray``: a node holds a key it does not own (e.g. left behind by an aborted move);
* ``differs``: two owners hold different content for the key;
* ``duplicate``: one node returned the same key twice;

plus the exact number of distinct keys. Copies that hinted handoff accounts for are not
findings but ``hinted`` (they do not make a report unclean, and repair leaves them to handoff): a
stand-in's copy of a key whose replica has a pending hint naming that stand-in, and a replica
lacking a key it has a pending hint for. *Owners* are the key's R replicas on the target ring;
during a move (:attr:`Placement.moving`) a key may legally sit on its current-ring replicas,
its target-ring replicas or both (in flight), so it is ``missing`` only when neither replica
set holds it completely, and ``stray`` only on a node outside both sets.

Which version wins when replicas differ (:func:`choose_version`): the content most owners
hold; on a tie, the content on the key's first replica on the target ring (its primary, the
node every write reaches first in ring order). Without a per-row version recorded by the
proxy this is the best available guess; see docs/verify-repair.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from shardproxy.placement import Placement

Key = int | str
Entry = tuple[Key, str]  # (primary key, row digest)

KINDS = ("missing", "stray", "differs", "duplicate")


@dataclass
class NodeTally:
    rows: int = 0
    missing: int = 0
    stray: int = 0
    differs: int = 0
    duplicate: int = 0
    hinted: int = 0  # stand-in copies and copies still to be handed back (hinted handoff)

    def to_dict(self) -> dict[str, int]:
        return {"rows": self.rows, "missing": self.missing, "stray": self.stray, "differs": self.differs,
                "duplicate": self.duplicate, "hinted": self.hinted}


@dataclass(frozen=True)
class Finding:
    """One problem with one key on one node. ``source``: the node holding the right content
    (where a repair copies from); for a stray, the owner copy repair must see before deleting."""

    kind: str
    node: str
    pk: Key
    source: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "node": self.node, "pk": self.pk, "source": self.source}


@dataclass
class CollectionReport:
    collection: str
    moving: bool = False
    rows: int = 0  # distinct keys over all nodes
    nodes: dict[str, NodeTally] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    hinted: list[Finding] = field(default_factory=list)  # kind "hinted": pending hinted handoff, not a finding

    @property
    def clean(self) -> bool:
        return not self.findings and not self.unreachable

    def counts(self) -> dict[str, int]:
        c = Counter(f.kind for f in self.findings)
        return {k: c.get(k, 0) for k in KINDS}

    def tally(self, node: str) -> NodeTally:
        t = self.nodes.get(node)
        if t is None:
            t = self.nodes[node] = NodeTally()
        return t

    def add(self, f: Finding) -> None:
        (self.hinted if f.kind == "hinted" else self.findings).append(f)
        t = self.tally(f.node)
        setattr(t, f.kind, getattr(t, f.kind) + 1)

    def to_dict(self, sample: int = 50) -> dict[str, object]:
        return {
            "collection": self.collection, "clean": self.clean, "moving": self.moving, "rows": self.rows,
            "counts": self.counts(), "hinted": len(self.hinted), "unreachable": sorted(self.unreachable),
            "nodes": {n: t.to_dict() for n, t in sorted(self.nodes.items())},
            "findings": [f.to_dict() for f in self.findings[:sample]],
        }


def replica_sets(placement: Placement, pks: Sequence[Key]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """For each key: its replicas on the target ring (owner first) and on the current ring."""
    r = max(1, placement.replicas)

    def on(ring) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
        if not ring:
            return [()] * len(pks)
        idx = ring.replica_index(pks, min(r, len(ring.node_ids)))
        ids = ring.node_ids
        return [tuple(dict.fromkeys(ids[j] for j in row)) for row in idx]

    tgt = on(placement.target)
    cur = on(placement.current) if placement.moving else tgt
    return list(zip(tgt, cur))


def choose_version(digests: dict[str, str], order: Sequence[str]) -> str:
    """The digest to converge to: the one most nodes hold; on a tie the one held by the first
    node of ``order`` (the key's target replicas, primary first) that has one of the tied
    digests; else the smallest (deterministic)."""
    votes = Counter(digests.values())
    best = max(votes.values())
    tied = {d for d, v in votes.items() if v == best}
    if len(tied) == 1:
        return next(iter(tied))
    for n in order:
        if digests.get(n) in tied:
            return digests[n]
    return min(tied)


def dedup_stream(node: str, entries: Iterable[Entry], report: CollectionReport) -> dict[Key, str]:
    """One node's window as pk -> digest; a key seen twice is a ``duplicate`` finding."""
    out: dict[Key, str] = {}
    n = 0
    for pk, digest in entries:
        n += 1
        if pk in out:
            report.add(Finding("duplicate", node, pk, node))
            continue
        out[pk] = digest
    report.tally(node).rows += n
    return out


def compare_window(report: CollectionReport, windows: dict[str, Sequence[Entry]], placement: Placement,
                   unreachable: Iterable[str] = (), hints: Mapping[Key, Mapping[str, str]] | None = None) -> None:
    """Compare one window of keys (every node's entries up to the same horizon). ``hints``: the
    pending hints, pk -> {replica: its stand-in ("" for none)} (see :mod:`shardproxy.hints`)."""
    down = set(unreachable)
    hints = hints or {}
    per_node = {n: dedup_stream(n, e, report) for n, e in windows.items()}
    by_pk: dict[Key, dict[str, str]] = {}
    for n, m in per_node.items():
        for pk, d in m.items():
            by_pk.setdefault(pk, {})[n] = d
    if not by_pk:
        return
    pks = sorted(by_pk)
    report.rows += len(pks)
    for pk, (tgt, cur) in zip(pks, replica_sets(placement, pks)):
        have = by_pk[pk]
        owners = set(tgt) | set(cur) if placement.moving else set(tgt)
        held = set(have) | down
        owned_copies = {n: d for n, d in have.items() if n in owners}
        order = list(tgt) + [n for n in cur if n not in tgt]
        winner = choose_version(owned_copies, order) if owned_copies else choose_version(have, sorted(have))
        good = next((n for n in order if owned_copies.get(n) == winner), "") or \
            next(n for n in sorted(have) if have[n] == winner)
        pending = hints.get(pk, {})
        standins = {s for s in pending.values() if s}
        for n in sorted(set(have) - owners):
            kind = "hinted" if n in standins else "stray"
            report.add(Finding(kind, n, pk, good if good in owners else ""))
        complete = set(tgt) <= held or (placement.moving and set(cur) <= held)
        if not complete:
            for n in tgt:
                if n not in held:
                    report.add(Finding("hinted" if n in pending else "missing", n, pk, good))
        for n, d in sorted(owned_copies.items()):
            if d != winner:
                report.add(Finding("differs", n, pk, good))


def horizon(lasts: dict[str, Key | None], exhausted: set[str]) -> Key | None:
    """The largest key every unfinished node stream has reached (None: all finished, compare
    everything). ``lasts``: the last key fetched per node."""
    open_ = [v for n, v in lasts.items() if n not in exhausted and v is not None]
    return min(open_) if open_ else None


def split_window(buf: list[Entry], upto: Key | None) -> tuple[list[Entry], list[Entry]]:
    """Entries with key <= ``upto`` (all when None) and the rest; ``buf`` is sorted by key."""
    if upto is None:
        return buf, []
    i = 0
    while i < len(buf) and buf[i][0] <= upto:
        i += 1
    return buf[:i], buf[i:]
