"""The fast ranking step of :func:`shardproxy.merge.merge_search_results`: plain tuples sorted in
C instead of one :class:`shardproxy.merge.Hit` object per candidate, for the common case, with
answers identical to the general path.

The general path (:func:`shardproxy.merge.merge_hits`) keeps, per query, each primary key once
with its best score (the first seen on equal scores), orders by (score in the metric's direction,
primary key) and cuts ``[offset, offset + limit)``. When no query has a primary key twice (every
row lives on one shard: the normal case), keeping the best copy is a no-op and the order is the
natural order of ``(signed score, primary key, global row)`` tuples (the row never decides: the
primary keys differ); that is what :func:`rank` does. It declines (returns None) whenever the
general path could answer differently or the input is not the plain shape: string primary keys,
a NaN score (Python's sort does not order NaN), a primary key twice within one query, or a shard
whose ids, scores and topks disagree in length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from pymilvus.grpc_gen import schema_pb2


class Ranked(NamedTuple):
    """The merged page of every query: primary keys, scores and global row numbers in page order
    (query by query), and the number of hits per query."""

    pks: list[int]
    scores: list[float]
    topks: list[int]
    rows: list[int]


class _Shard(NamedTuple):
    signed: list[float]  # score, negated for larger-is-better metrics
    pks: list[int]
    starts: list[int]  # first row of each query (one more entry than queries)
    base: int  # the shard's first row in the concatenated columns


def _shard(r: schema_pb2.SearchResultData, ascending: bool, base: int) -> _Shard | None:
    field = r.ids.WhichOneof("id_field")
    if field == "str_id":
        return None
    pks = list(r.ids.int_id.data) if field else []
    scores = list(r.scores)
    topks = list(r.topks) or [0] * r.num_queries
    if len(pks) != len(scores) or sum(topks) != len(scores) or any(k < 0 for k in topks):
        return None
    if any(map(math.isnan, scores)):
        return None
    starts = [0]
    for k in topks:
        starts.append(starts[-1] + k)
    return _Shard(scores if ascending else [-s for s in scores], pks, starts, base)


def rank(results: Sequence[schema_pb2.SearchResultData], nq: int, ascending: bool, offset: int,
         limit: int) -> Ranked | None:
    """The page of every query, or None when :func:`shardproxy.merge.merge_hits` must decide."""
    shards: list[_Shard] = []
    base = 0
    for r in results:
        s = _shard(r, ascending, base)
        if s is None:
            return None
        shards.append(s)
        base += len(r.scores)
    pks: list[int] = []
    scores: list[float] = []
    topks: list[int] = []
    rows: list[int] = []
    for q in range(nq):
        cand: list[tuple[float, int, int]] = []
        for s in shards:
            if q + 1 < len(s.starts):
                a, b = s.starts[q], s.starts[q + 1]
                cand.extend(zip(s.signed[a:b], s.pks[a:b], range(s.base + a, s.base + b)))
        if len({c[1] for c in cand}) != len(cand):
            return None  # a primary key twice in one query: the general path keeps its best copy
        cand.sort()
        page = cand[offset : offset + limit]
        topks.append(len(page))
        for signed, pk, row in page:
            pks.append(pk)
            scores.append(signed if ascending else -signed)
            rows.append(row)
    return Ranked(pks, scores, topks, rows)
