"""Exact cross-shard execution of the search variants that need more than one merge: grouping
search (two phases), a search with a rerank function (merge, then rerank once), hybrid search
(merge every sub-request to its global top, then rerank once) and search iterator v2 pages.

The functions take ``gather``: a coroutine that sends one request per node id and returns the
answers of the nodes that hold data (the executor's read gather: retries, circuit, partial
policy). Everything else here is pure (:mod:`shardproxy.merge`, :mod:`shardproxy.groupby`,
:mod:`shardproxy.rerank`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from shardproxy import fielddata, groupby, merge, metrics, orderby
from shardproxy import rerank as rr
from shardproxy import searchplan as sp
from shardproxy.errors import InvalidArgument, Unimplemented
from shardproxy.params import int_param, kv, set_kv

RERANK_WINDOW = 10  # a search with a rerank function reranks this many times ``limit`` candidates
MAX_TOPK = 16384
Gather = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _bases(results: Sequence[schema_pb2.SearchResultData]) -> list[int]:
    base, total = [], 0
    for r in results:
        base.append(total)
        total += len(r.scores)
    return base


def _result(nq: int, limit: int, pks: list, scores: list[float], topks: list[int], is_str: bool,
            results: Sequence[schema_pb2.SearchResultData], rows: list[int], output_fields: Sequence[str],
            drop: Sequence[str] = ()) -> schema_pb2.SearchResultData:
    out = schema_pb2.SearchResultData(
        num_queries=nq, top_k=limit, scores=scores, topks=topks, ids=fielddata.make_ids(pks, is_str),
        primary_field_name=next((r.primary_field_name for r in results if r.primary_field_name), ""),
    )
    names = list(output_fields) or next((list(r.output_fields) for r in results if r.output_fields), [])
    out.output_fields.extend(n for n in names if n not in drop)
    out.fields_data.extend(fd for fd in merge.gather_columns(results, rows) if fd.field_name not in drop)
    return out


def _is_str(results: Sequence[schema_pb2.SearchResultData]) -> bool:
    return any(r.ids.WhichOneof("id_field") == "str_id" for r in results)


# ---------------------------------------------------------------- grouping search
def _group_column(result: schema_pb2.SearchResultData, field: str) -> schema_pb2.FieldData:
    col = next((fd for fd in result.fields_data if fd.field_name == field and not fd.is_dynamic), None)
    if col is None:
        raise InvalidArgument(f"a node's answer lacks the group_by_field {field!r}")
    return col


def _ghits(result: schema_pb2.SearchResultData, shard: int, fields: Sequence[str]) -> list[list[groupby.GHit]]:
    """One shard's hits per query with their group: the field's value (a tuple of the values when
    grouping by several fields); a null value is a group of its own, as on Milvus."""
    if len(result.scores):
        cols = [orderby.column_with_nulls(_group_column(result, f)) for f in fields]
        values = cols[0] if len(cols) == 1 else list(zip(*cols))
    else:
        values = []
    return [[groupby.GHit(h.pk, h.score, _hashable(values[h.row]), shard, h.row) for h in hits]
            for hits in merge.hits_of(result, shard)]


def _hashable(v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(_hashable(x) for x in v)
    return v if not isinstance(v, (list, dict)) else json.dumps(v, sort_keys=True)


async def grouped_search(request: milvus_pb2.SearchRequest, plan: sp.SearchPlan, nodes: Sequence[str],
                         gather: Gather) -> schema_pb2.SearchResultData:
    """Plain searches for a widening window of nearest hits, grouped once in the proxy until the
    page is certain (see :mod:`shardproxy.groupby`). Several fields group by their value tuple."""
    fields, size = plan.group_fields or (plan.group_by,), plan.group_size
    strict = sp.flag(plan.params, "strict_group_size")
    drop = [f for f in fields if f not in request.output_fields] if request.output_fields else []
    window: int | None = min(groupby.initial_window(plan.offset, plan.limit, size), MAX_TOPK)
    while True:
        sub = sp.node_request(request, plan, window, extra_output=drop)
        for key in ("group_by_field", "group_by_fields", "group_size", "strict_group_size"):
            set_kv(sub.search_params, key, None)
        answers = await gather({n: sub for n in nodes})
        results = [r.results for r in answers.values()]
        t_merge = time.perf_counter()
        per_shard = [_ghits(r, i, fields) for i, r in enumerate(results)]
        pages, done = [], True
        for q in range(plan.nq):
            lists = [s[q] if q < len(s) else [] for s in per_shard]
            hits = groupby.merged_hits(lists, plan.metric)
            page = groupby.group_page(hits, plan.offset, plan.limit, size, strict)
            pages.append(page)
            done = done and groupby.certain(page, hits, plan.limit, size, strict,
                                            groupby.bound(lists, window, plan.metric), plan.metric)
        metrics.MERGE_SECONDS.observe(time.perf_counter() - t_merge)
        nxt = None if done else groupby.next_window(window, MAX_TOPK)
        if nxt is None:
            break
        window = nxt
    base = _bases(results)
    pks, scores, topks, rows = [], [], [], []
    for page in pages:
        flat = [h for g in page for h in g]
        topks.append(len(flat))
        for h in flat:
            pks.append(h.pk)
            scores.append(h.score)
            rows.append(base[h.shard] + h.row)
    out = _result(plan.nq, plan.limit, pks, scores, topks, _is_str(results), results, rows, request.output_fields, drop)
    with_rows = [r for r in results if len(r.scores)]  # rows number the concatenation of these
    if with_rows:
        cols = [fielddata.take(fielddata.concat([_group_column(r, f) for r in with_rows]), rows) for f in fields]
        if len(fields) == 1:
            out.group_by_field_value.CopyFrom(cols[0])
        else:
            out.group_by_field_values.extend(cols)
    return out


# ---------------------------------------------------------------- rerank (plain search and hybrid)
def _field_values(results: Sequence[schema_pb2.SearchResultData], name: str) -> dict[int, Any]:
    """Global row -> value of one output column."""
    out: dict[int, Any] = {}
    for i, (r, b) in enumerate(zip(results, _bases(results))):
        if not len(r.scores):
            continue
        col = next((fd for fd in r.fields_data if fd.field_name == name), None)
        if col is None:
            raise InvalidArgument(f"a node's answer lacks the rerank input field {name!r}")
        for j, v in enumerate(fielddata.column_values(col)):
            out[b + j] = v
    return out


def _reranked(ranker: rr.Ranker, per_sub: list[list[list[merge.Hit]]], metric_types: list[str], nq: int,
              offset: int, limit: int, round_decimal: int, results: list[schema_pb2.SearchResultData],
              output_fields: Sequence[str], drop: Sequence[str]) -> schema_pb2.SearchResultData:
    t_merge = time.perf_counter()
    base = _bases(results)
    values = _field_values(results, ranker.input_field) if ranker.kind == "decay" else {}
    pks, scores, topks, rows = [], [], [], []
    for q in range(nq):
        lists = [[(h.pk, h.score) for h in sub[q]] for sub in per_sub]
        where: dict[Any, int] = {}
        for sub in per_sub:
            for h in sub[q]:
                where.setdefault(h.pk, base[h.shard] + h.row)
        fv = {pk: values[row] for pk, row in where.items()} if values else None
        page = rr.rerank(ranker, lists, metric_types, offset, limit, round_decimal, fv)
        topks.append(len(page))
        for pk, s in page:
            pks.append(pk)
            scores.append(s)
            rows.append(where[pk])
    out = _result(nq, limit, pks, scores, topks, _is_str(results), results, rows, output_fields, drop)
    metrics.MERGE_SECONDS.observe(time.perf_counter() - t_merge)
    return out


def _merged(results: list[schema_pb2.SearchResultData], first: int, nq: int, metric: str, topk: int) -> list[list[merge.Hit]]:
    per_shard = [merge.hits_of(r, first + i) for i, r in enumerate(results[first:])]
    return [merge.merge_hits([s[q] if q < len(s) else [] for s in per_shard], metric, 0, topk) for q in range(nq)]


def _extra(ranker: rr.Ranker, output_fields: Sequence[str]) -> tuple[list[str], list[str]]:
    """Fields to ask the nodes for beyond the caller's, and to drop from the answer again."""
    if ranker.kind != "decay" or not output_fields or ranker.input_field in output_fields:
        return [], []
    return [ranker.input_field], [ranker.input_field]


async def ranked_search(request: milvus_pb2.SearchRequest, plan: sp.SearchPlan, ranker: rr.Ranker,
                        nodes: Sequence[str], gather: Gather) -> schema_pb2.SearchResultData:
    """A plain search with a rerank function: the global first ``max(offset + limit, 10 * limit)``
    hits (the candidate window milvus-lite reranks), reranked once, then ``offset``/``limit``."""
    extra, drop = _extra(ranker, request.output_fields)
    topk = min(max(plan.offset + plan.limit, RERANK_WINDOW * plan.limit), MAX_TOPK)
    sub = sp.node_request(request, plan, topk, keep_round=False, extra_output=extra)
    answers = await gather({n: sub for n in nodes})
    results = [r.results for r in answers.values()]
    per_sub = [_merged(results, 0, plan.nq, plan.metric, topk)]
    return _reranked(ranker, per_sub, [plan.metric], plan.nq, plan.offset, plan.limit, plan.round_decimal,
                     results, request.output_fields, drop)


def hybrid_ranker(request: milvus_pb2.HybridSearchRequest) -> rr.Ranker:
    if request.HasField("function_score"):
        fs = request.function_score
        if len(fs.functions) != 1:
            raise InvalidArgument(f"Currently only supports one rerank, but got {len(fs.functions)}")
        if len(fs.params):
            raise Unimplemented("function_score params are not implemented by shardproxy")
        return rr.ranker_from_function(fs.functions[0])
    return rr.ranker_from_rank_params(kv(request.rank_params))


async def hybrid_search(request: milvus_pb2.HybridSearchRequest, plans: Sequence[sp.SearchPlan],
                        subs: Sequence[milvus_pb2.SearchRequest], nodes: Sequence[str],
                        gather: Gather) -> schema_pb2.SearchResultData:
    """Every sub-request merged across shards to its global top ``limit``, then one rerank."""
    rank = kv(request.rank_params)
    sp.check_params(rank, sp.RANK_PARAM_UNIMPLEMENTED, "HybridSearch")
    ranker = hybrid_ranker(request)
    limit = int_param(rank, "limit", 10)
    offset = int_param(rank, "offset", 0)
    round_decimal = int_param(rank, "round_decimal", -1)
    nqs = {p.nq for p in plans}
    if len(nqs) != 1:
        raise InvalidArgument("all sub-requests of a hybrid search must have the same number of query vectors")
    nq = nqs.pop()
    extra, drop = _extra(ranker, request.output_fields)
    node_reqs = []
    for sub, plan in zip(subs, plans):
        req = milvus_pb2.SearchRequest()
        req.CopyFrom(sub)
        req.db_name = request.db_name  # the effective database (set by the lookup)
        req.collection_name = request.collection_name
        del req.output_fields[:]
        req.output_fields.extend(request.output_fields)
        if not req.partition_names:
            req.partition_names.extend(request.partition_names)
        for f in ("guarantee_timestamp", "consistency_level", "use_default_consistency"):
            setattr(req, f, getattr(request, f))
        node_reqs.append(sp.node_request(req, plan, plan.limit, keep_round=False, extra_output=extra))
    answers = await asyncio.gather(*(gather({n: r for n in nodes}) for r in node_reqs))
    results: list[schema_pb2.SearchResultData] = []
    per_sub = []
    for plan, ans in zip(plans, answers):
        first = len(results)
        results.extend(r.results for r in ans.values())
        per_sub.append(_merged(results, first, nq, plan.metric, plan.limit))
    return _reranked(ranker, per_sub, [p.metric for p in plans], nq, offset, limit, round_decimal,
                     results, request.output_fields, drop)


# ---------------------------------------------------------------- order_by
async def ordered_search(request: milvus_pb2.SearchRequest, plan: sp.SearchPlan, nodes: Sequence[str],
                         gather: Gather) -> schema_pb2.SearchResultData:
    """The exact first ``offset + limit`` hits (or groups), stably re-sorted by the order keys,
    then ``offset`` / ``limit`` (see :mod:`shardproxy.orderby`)."""
    keys = list(plan.order_by)
    window = plan.offset + plan.limit
    wide = dataclasses.replace(plan, offset=0, limit=window)
    # with no output fields a node answers with all of them (milvus-lite) or none (Milvus): ask
    # for the order keys only when needed, and drop the ones the caller did not ask for
    extra = [f for f in orderby.request_fields(keys) if f not in request.output_fields] if request.output_fields else []
    while True:
        req = milvus_pb2.SearchRequest()
        req.CopyFrom(request)
        req.output_fields.extend(extra)
        if plan.group_by:
            out = await grouped_search(req, wide, nodes, gather)
        else:
            answers = await gather({n: sp.node_request(req, wide, window) for n in nodes})
            out = merge.merge_search_results([r.results for r in answers.values()], plan.nq, plan.metric, 0, window,
                                             list(req.output_fields))
        if extra or not len(out.scores) or _has_key_columns(out, keys):
            break
        extra = orderby.request_fields(keys)
    t_merge = time.perf_counter()
    cols = orderby.key_columns(out.fields_data, keys) if len(out.scores) else [[] for _ in keys]
    gcols = list(out.group_by_field_values) or ([out.group_by_field_value] if out.HasField("group_by_field_value") else [])
    groups = list(zip(*(orderby.column_with_nulls(c) for c in gcols))) if gcols else None
    per_query, start = [], 0
    for k in list(out.topks):
        rows = list(range(start, start + k))
        start += k
        if plan.group_by and groups is not None:
            runs: list[list[int]] = []
            for r in rows:
                if runs and groups[runs[-1][-1]] == groups[r]:
                    runs[-1].append(r)
                else:
                    runs.append([r])
            per_query.append([r for g in orderby.group_order(runs, cols, keys, plan.offset, plan.limit) for r in g])
        else:
            per_query.append(orderby.search_order(rows, cols, keys, plan.offset, plan.limit))
    res = orderby.reorder_result(out, per_query, extra, plan.limit)
    metrics.MERGE_SECONDS.observe(time.perf_counter() - t_merge)
    return res


def _has_key_columns(out: schema_pb2.SearchResultData, keys: Sequence[orderby.OrderKey]) -> bool:
    try:
        orderby.key_columns(out.fields_data, keys)
    except InvalidArgument:
        return False
    return True


# ---------------------------------------------------------------- search iterator v2
def iterator_v2_request(request: milvus_pb2.SearchRequest) -> tuple[milvus_pb2.SearchRequest, str]:
    """One token for every node: the caller's, or a new one the proxy makes on the first page."""
    params = kv(request.search_params)
    token = (params.get("search_iter_id") or "").strip('"') or uuid.uuid4().hex
    sub = milvus_pb2.SearchRequest()
    sub.CopyFrom(request)
    set_kv(sub.search_params, "search_iter_id", token)
    return sub, token


def iterator_v2_results(out: schema_pb2.SearchResultData, node_results: Sequence[schema_pb2.SearchResultData],
                        token: str, last_bound: float | None) -> None:
    """Attach the v2 iterator state to a merged page: the proxy's token and the global last bound
    (the score of the page's last hit, else the bound the caller sent). When a node does not speak
    iterator v2 (no token in its answer) the proxy answers as that node does, without the state,
    and pymilvus falls back to iterator v1."""
    if not node_results or any(not r.search_iterator_v2_results.token for r in node_results):
        return
    out.search_iterator_v2_results.token = token
    if len(out.scores):
        out.search_iterator_v2_results.last_bound = out.scores[-1]
    elif last_bound is not None:
        out.search_iterator_v2_results.last_bound = last_bound
