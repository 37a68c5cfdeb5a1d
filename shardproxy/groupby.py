"""Cross-shard reduce of a grouping search (``group_by_field``, ``group_size``). Pure; no I/O.

What one node answers (and what the proxy must answer): the groups ordered by their best hit
(ties: the best hit's primary key), the first ``offset`` groups skipped, the next ``limit``
groups, each with its best ``group_size`` hits (score order, ties by primary key).

Each shard answers the same grouping search for its own rows with ``offset + limit`` groups. The
global groups and their order are then exact: a group among the global first ``offset + limit``
groups is among the first ``offset + limit`` on the shard that holds its best hit. Its other
members are complete from every shard that returned the group, and from every shard that returned
fewer than ``offset + limit`` groups (it has no more). Other shards may still hold members of the
chosen groups; :func:`incomplete` names them, the caller asks those shards again restricted to
the missing groups, and :func:`merge_groups` over all answers is exact.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from shardproxy.merge import ascending


@dataclass(frozen=True)
class GHit:
    pk: int | str
    score: float
    group: Hashable
    shard: int
    row: int


def _pk_key(pk: int | str) -> tuple[int, int | str]:
    return (0, pk) if isinstance(pk, int) else (1, pk)


def _hit_key(asc: bool):  # type: ignore[no-untyped-def]
    sign = 1.0 if asc else -1.0
    return lambda h: (sign * h.score, _pk_key(h.pk))


def merge_groups(
    per_shard: Sequence[Sequence[GHit]], metric: str, offset: int, limit: int, group_size: int
) -> list[list[GHit]]:
    """The page of groups ``[offset, offset + limit)``, each its best ``group_size`` hits."""
    asc = ascending(metric)
    key = _hit_key(asc)
    best: dict[int | str, GHit] = {}
    for hits in per_shard:
        for h in hits:  # a row caught twice (mid-move) counts once, with its best score
            cur = best.get(h.pk)
            if cur is None or key(h) < key(cur):
                best[h.pk] = h
    members: dict[Hashable, list[GHit]] = {}
    for h in sorted(best.values(), key=key):
        members.setdefault(h.group, []).append(h)
    groups = list(members.values())  # insertion order = order of each group's best hit
    return [g[:group_size] for g in groups[offset: offset + limit]]


def incomplete(
    per_shard: Sequence[Sequence[GHit]], chosen: Sequence[Hashable], topk_groups: int
) -> dict[int, list[Hashable]]:
    """For each shard, the chosen groups it may hold members of but did not return: it returned
    ``topk_groups`` groups (it may have more) and not these."""
    out: dict[int, list[Hashable]] = {}
    for shard, hits in enumerate(per_shard):
        returned = {h.group for h in hits}
        if len(returned) < topk_groups:
            continue
        missing = [g for g in chosen if g not in returned]
        if missing:
            out[shard] = missing
    return out
