"""Exact merge of per-shard results. Pure functions over plain data and protobufs; no I/O.

Search: every shard returns its own best ``offset + limit`` hits per query; the global answer is
the best ``offset + limit`` of the union (each row lives on exactly one shard, so the union holds
the global top list), ordered by the metric (L2-like ascending, similarities descending), ties
broken by primary key, duplicates of one primary key (a row caught mid-move between two nodes)
kept once with its best score, then ``offset``/``limit`` applied once, after the merge.

Query: rows ordered by primary key, de-duplicated, then ``offset``/``limit``; ``count(*)`` sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymilvus.grpc_gen import schema_pb2

from shardproxy import fastmerge, fielddata

# Metrics where a smaller score is better; everything else (IP, COSINE, BM25, ...) is larger-better.
ASCENDING_METRICS = frozenset({"L2", "HAMMING", "JACCARD", "MHJACCARD", "SUBSTRUCTURE", "SUPERSTRUCTURE"})


def ascending(metric: str) -> bool:
    return metric.upper() in ASCENDING_METRICS


@dataclass(frozen=True, order=True)
class Hit:
    """One candidate: its primary key, its score, and where its row lives (shard, row)."""

    pk: int | str
    score: float
    shard: int
    row: int


def _pk_sort_key(pk: int | str) -> tuple[int, int | str]:
    # ints before strings, so a mixed list (never expected) still sorts deterministically
    return (0, pk) if isinstance(pk, int) else (1, pk)


def merge_hits(
    per_shard: Sequence[Sequence[Hit]], metric: str, offset: int, limit: int
) -> list[Hit]:
    """The global page ``[offset, offset + limit)`` of one query's hits from several shards."""
    asc = ascending(metric)
    best: dict[int | str, Hit] = {}
    for hits in per_shard:
        for h in hits:
            cur = best.get(h.pk)
            if cur is None or (h.score < cur.score if asc else h.score > cur.score):
                best[h.pk] = h
    sign = 1.0 if asc else -1.0
    ordered = sorted(best.values(), key=lambda h: (sign * h.score, _pk_sort_key(h.pk)))
    return ordered[offset : offset + limit]


def hits_of(result: schema_pb2.SearchResultData, shard: int) -> list[list[Hit]]:
    """Split one shard's flat SearchResultData into per-query hit lists."""
    pks = fielddata.pk_values(result.ids)
    scores = list(result.scores)
    out: list[list[Hit]] = []
    row = 0
    topks = list(result.topks) or [0] * result.num_queries
    for k in topks:
        out.append([Hit(pks[r], scores[r], shard, r) for r in range(row, row + k)])
        row += k
    return out


def _rank_hits(results: Sequence[schema_pb2.SearchResultData], nq: int, metric: str, offset: int,
               limit: int) -> tuple[list[int | str], list[float], list[int], list[int]]:
    """The general ranking: per query, :func:`merge_hits` over every shard's :class:`Hit` list;
    returns pks, scores, topks and global rows (shard i's row r is row base[i] + r of the
    concatenated columns)."""
    per_shard = [hits_of(r, i) for i, r in enumerate(results)]
    base: list[int] = []
    total = 0
    for r in results:
        base.append(total)
        total += len(r.scores)
    merged_pks: list[int | str] = []
    merged_scores: list[float] = []
    topks: list[int] = []
    global_rows: list[int] = []
    for q in range(nq):
        page = merge_hits([s[q] if q < len(s) else [] for s in per_shard], metric, offset, limit)
        topks.append(len(page))
        for h in page:
            merged_pks.append(h.pk)
            merged_scores.append(h.score)
            global_rows.append(base[h.shard] + h.row)
    return merged_pks, merged_scores, topks, global_rows


def merge_search_results(
    results: Sequence[schema_pb2.SearchResultData],
    nq: int,
    metric: str,
    offset: int,
    limit: int,
    output_fields: Sequence[str] = (),
    fast: bool = True,
) -> schema_pb2.SearchResultData:
    """Merge the SearchResultData of several shards into one, exactly (see module doc).
    ``fast=False``: always the general Hit-by-Hit ranking (the benchmark's same-run baseline)."""
    is_str = any(r.ids.WhichOneof("id_field") == "str_id" for r in results)
    primary = next((r.primary_field_name for r in results if r.primary_field_name), "")
    ranked = fastmerge.rank(results, nq, ascending(metric), offset, limit) if fast else None
    if ranked is not None:  # tuples sorted in C, same answer (see fastmerge); else one Hit per candidate
        merged_pks, merged_scores, topks, global_rows = ranked
    else:
        merged_pks, merged_scores, topks, global_rows = _rank_hits(results, nq, metric, offset, limit)

    out = schema_pb2.SearchResultData(
        num_queries=nq,
        top_k=limit,
        scores=merged_scores,
        topks=topks,
        ids=fielddata.make_ids(merged_pks, is_str),  # type: ignore[arg-type]
        primary_field_name=primary,
    )
    names = list(output_fields) or next((list(r.output_fields) for r in results if r.output_fields), [])
    out.output_fields.extend(names)
    out.fields_data.extend(gather_columns(results, global_rows))
    return out


def gather_columns(
    results: Sequence[schema_pb2.SearchResultData], global_rows: Sequence[int]
) -> list[schema_pb2.FieldData]:
    """Columns of the winning rows: concatenate each column over shards, then take the rows.

    A shard without hits contributes no rows and may omit columns; a shard with hits must carry
    every column, or the rows would not line up.
    """
    with_rows = [r for r in results if len(r.scores)]
    if not with_rows:
        return []
    out = []
    for fd0 in with_rows[0].fields_data:
        pieces = []
        for r in with_rows:
            match = [fd for fd in r.fields_data if fd.field_name == fd0.field_name and fd.is_dynamic == fd0.is_dynamic]
            if not match or fielddata.num_rows(match[0]) != len(r.scores):
                raise ValueError(f"a shard returned {len(r.scores)} hits but no matching column {fd0.field_name!r}")
            pieces.append(match[0])
        out.append(fielddata.take(fielddata.concat(pieces), global_rows))
    return out


def merge_query_rows(
    shards: Sequence[Sequence[schema_pb2.FieldData]],
    pk_field: str,
    offset: int,
    limit: int | None,
) -> list[schema_pb2.FieldData]:
    """Merge per-shard query results: order by primary key, dedup, then offset/limit."""
    shards = [s for s in shards if s]
    if not shards:
        return []
    names = [fd.field_name for fd in shards[0]]
    concatenated: list[schema_pb2.FieldData] = []
    for name in names:
        pieces = [next(fd for fd in s if fd.field_name == name) for s in shards if any(fd.field_name == name for fd in s)]
        concatenated.append(fielddata.concat(pieces))
    pk_col = next((fd for fd in concatenated if fd.field_name == pk_field), None)
    if pk_col is None:
        raise ValueError(f"query results lack the primary key field {pk_field!r}")
    pks = fielddata.column_values(pk_col)
    seen: set[int | str] = set()
    rows: list[int] = []
    for i in sorted(range(len(pks)), key=lambda i: _pk_sort_key(pks[i])):
        if pks[i] in seen:
            continue
        seen.add(pks[i])
        rows.append(i)
    end = None if limit is None else offset + limit
    rows = rows[offset:end]
    return [fielddata.take(fd, rows) for fd in concatenated]
