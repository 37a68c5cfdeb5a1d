"""Cross-shard reduce of a grouping search (``group_by_field``, ``group_size``,
``strict_group_size``). Pure; no I/O.

The answer (what one exact node gives): hits in score order (ties: primary key) are grouped by
the field's value; a group keeps its best ``group_size`` hits; with ``strict_group_size`` groups
with fewer hits are left out; groups are ordered by their best hit; the first ``offset`` groups
are skipped and the next ``limit`` returned, flattened group by group.

The proxy does not trust the nodes' own grouping (milvus-lite groups only a window of nearest
hits). It asks every node for its nearest ``window`` hits with the group value, merges them, and
checks the page is *certain*: every hit better than ``bound`` (the worst score among nodes that
returned a full window) is in the union, so the page is exact when each chosen group's kept hits
and the last chosen group's best hit are strictly better than the bound (or no node was cut off).
Otherwise the caller widens the window and asks again (:func:`next_window`).
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


def initial_window(offset: int, limit: int, group_size: int) -> int:
    """milvus-lite's candidate window for a grouping search (so a window that suffices for one
    node suffices here)."""
    return max((offset + limit) * group_size * 3, (offset + limit) * 10)


def next_window(window: int, cap: int) -> int | None:
    return None if window >= cap else min(window * 4, cap)


def merged_hits(per_shard: Sequence[Sequence[GHit]], metric: str) -> list[GHit]:
    """Union of the shards' hits in score order (ties by primary key), each primary key once."""
    sign = 1.0 if ascending(metric) else -1.0
    key = lambda h: (sign * h.score, _pk_key(h.pk))  # noqa: E731
    best: dict[int | str, GHit] = {}
    for hits in per_shard:
        for h in hits:
            cur = best.get(h.pk)
            if cur is None or key(h) < key(cur):
                best[h.pk] = h
    return sorted(best.values(), key=key)


def group_page(hits: Sequence[GHit], offset: int, limit: int, group_size: int, strict: bool) -> list[list[GHit]]:
    members: dict[Hashable, list[GHit]] = {}
    for h in hits:
        kept = members.setdefault(h.group, [])
        if len(kept) < group_size:
            kept.append(h)
    groups = [g for g in members.values() if not strict or len(g) == group_size]
    return groups[offset: offset + limit]


def bound(per_shard: Sequence[Sequence[GHit]], window: int, metric: str) -> float | None:
    """The worst score a shard returned among shards cut off at ``window`` hits (the least
    favourable: every unseen hit is at least this bad); None when no shard was cut off."""
    cut = [hits[-1].score for hits in per_shard if len(hits) >= window]
    if not cut:
        return None
    return min(cut) if ascending(metric) else max(cut)


def certain(page: Sequence[Sequence[GHit]], all_hits: Sequence[GHit], limit: int, group_size: int,
            strict: bool, bound_score: float | None, metric: str) -> bool:
    """Whether no unseen hit (all worse than or equal to ``bound_score``) could change the page."""
    if bound_score is None:
        return True
    asc = ascending(metric)
    better = (lambda s: s < bound_score) if asc else (lambda s: s > bound_score)  # noqa: E731
    if len(page) < limit:  # an unseen group could still fill the page
        return False
    for g in page:
        if len(g) < group_size or not all(better(h.score) for h in g):
            return False
    if strict:  # a group left out for being short could be completed by unseen hits
        last = page[-1][0].pk if page else None
        counts: dict[Hashable, int] = {}
        for h in all_hits:
            counts[h.group] = counts.get(h.group, 0) + 1
        seen: set[Hashable] = set()
        for h in all_hits:
            if h.group not in seen:
                seen.add(h.group)
                if counts[h.group] < group_size:
                    return False
            if h.pk == last:
                break
    return True
