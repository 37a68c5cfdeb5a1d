"""The search surface beyond a plain top-k: HybridSearch, a search with a rerank function, grouping
search and search iterator v2 pages; and ``collection_id`` in iterator params rewritten per node.

Planning: :mod:`shardproxy.searchplan` (validation, per-node requests); execution:
:mod:`shardproxy.searchexec` over :meth:`Scatter.read` (every scattered read of one request adds
its coverage to the answer's); reduce: :mod:`shardproxy.merge`, :mod:`shardproxy.groupby`,
:mod:`shardproxy.rerank` (pure).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymilvus.grpc_gen import milvus_pb2

from shardproxy import merge, metrics, rerank, searchexec, searchplan, tracing, validation
from shardproxy.coverage import COMPLETE, Coverage
from shardproxy.errors import InvalidArgument, ProxyError, Unimplemented, status_ok
from shardproxy.handlers.base import HandlerBase
from shardproxy.metastore import CollectionRecord
from shardproxy.params import int_param, kv, set_kv
from shardproxy.rpc import Reply, rpc

log = logging.getLogger(__name__)


class _CoveredGather:
    """A :data:`searchexec.Gather` over the executor's read that remembers what it missed.

    ``fanout`` (every node gets the same request): a hedged covering read (R > 1: a set of
    replicas covering the ring, see :meth:`Scatter.read_each`); the merges keep each primary
    key once, so rows a node holds as a replica of another range are not duplicated."""

    def __init__(self, handlers: SearchExtHandlers, rec: CollectionRecord, method: str, allow: bool,
                 fanout: bool = True) -> None:
        self.handlers, self.rec, self.method, self.allow, self.fanout = handlers, rec, method, allow, fanout
        self.coverage: Coverage = COMPLETE

    async def __call__(self, reqs: dict[str, Any]) -> dict[str, Any]:
        reqs = {n: await self.handlers._with_node_collection_id(n, self.rec, r) for n, r in reqs.items()}
        got = await self.handlers.scatter.read(self.rec, self.method, reqs, self.allow, fanout=self.fanout)
        self.coverage = self.coverage | got.coverage
        return got.results


class SearchExtHandlers(HandlerBase):
    def _gather(self, rec: CollectionRecord, context: Any, method: str = "Search", fanout: bool = True) -> _CoveredGather:
        return _CoveredGather(self, rec, method, self._allow_partial(context), fanout)

    async def _with_node_collection_id(self, node: str, rec: CollectionRecord, request: Any) -> Any:
        """Iterators send the ``collection_id`` they were shown (one node's); each node gets its
        own. Asked per page, not cached: a dropped and re-created collection has new ids."""
        field = "search_params" if isinstance(request, milvus_pb2.SearchRequest) else "query_params"
        if "collection_id" not in kv(getattr(request, field)) or not self.cluster.is_live(node):
            return request  # a node that is down is the read's business
        try:
            desc = await self.cluster.client(node).call(
                "DescribeCollection", milvus_pb2.DescribeCollectionRequest(db_name=rec.db, collection_name=rec.name))
        except ProxyError:
            return request
        out = type(request)()
        out.CopyFrom(request)
        set_kv(getattr(out, field), "collection_id", str(desc.collectionID))
        return out

    @staticmethod
    def _is_variant(request: milvus_pb2.SearchRequest, plan: searchplan.SearchPlan) -> bool:
        """A search that needs more than one plain merge (or iterator state)."""
        return bool(plan.group_by) or bool(plan.order_by) or len(request.function_score.functions) > 0 \
            or searchplan.flag(plan.params, "search_iter_v2") or "collection_id" in plan.params

    async def _search_variant(self, rec: CollectionRecord, request: milvus_pb2.SearchRequest,
                              plan: searchplan.SearchPlan, context: Any) -> Reply:
        nodes = self.cluster.placement(rec).scatter_set()
        gather = self._gather(rec, context)
        has_ranker = len(request.function_score.functions) > 0
        t0 = time.perf_counter()
        if plan.order_by:
            merged = await searchexec.ordered_search(request, plan, nodes, gather)
        elif plan.group_by:
            if has_ranker:
                raise Unimplemented("Search with group_by_field and a rerank function is not implemented by shardproxy")
            merged = await searchexec.grouped_search(request, plan, nodes, gather)
        elif has_ranker:
            fs = request.function_score
            if len(fs.functions) != 1:
                raise InvalidArgument(f"Currently only supports one rerank, but got {len(fs.functions)}")
            if len(fs.params):
                raise Unimplemented("function_score params are not implemented by shardproxy")
            ranker = rerank.ranker_from_function(fs.functions[0])
            merged = await searchexec.ranked_search(request, plan, ranker, nodes, gather)
        else:  # an iterator page: a plain search, plus the v2 state when asked for
            sub = searchplan.node_request(request, plan, plan.offset + plan.limit)
            v2 = searchplan.flag(plan.params, "search_iter_v2")
            token = ""
            if v2:
                sub, token = searchexec.iterator_v2_request(sub)
            with tracing.span("shardproxy.search.fan_out", collection=rec.name, nq=plan.nq, nodes=len(nodes)):
                results = await gather({n: sub for n in nodes})
            t_merge = time.perf_counter()
            merged = merge.merge_search_results([r.results for r in results.values()], plan.nq, plan.metric,
                                                plan.offset, plan.limit, list(request.output_fields))
            metrics.MERGE_SECONDS.observe(time.perf_counter() - t_merge)
            if v2:
                bound = plan.params.get("search_iter_last_bound")
                searchexec.iterator_v2_results(merged, [r.results for r in results.values()], token,
                                               float(bound) if bound not in (None, "") else None)
        log.debug("search %s (variant) nq=%d k=%d over %d nodes in %.1f ms", rec.name, plan.nq, plan.limit,
                  len(nodes), (time.perf_counter() - t0) * 1000)
        return Reply(milvus_pb2.SearchResults(status=status_ok(), results=merged, collection_name=rec.name),
                     gather.coverage)

    @rpc(milvus_pb2.SearchResults)
    async def HybridSearch(self, request: milvus_pb2.HybridSearchRequest, context: Any) -> Any:
        """Each sub-request merged across shards to its global top, then reranked once (RRF,
        weighted, decay); offset/limit after the rerank (see :mod:`shardproxy.searchexec`)."""
        rec = await self._collection(request)
        self._check_size(request)
        self.cluster.require_nodes()
        await self._check_partitions(rec, list(request.partition_names))
        searchplan.check_fields(request, searchplan.HYBRID_UNIMPLEMENTED, "HybridSearch")
        if not request.requests:
            raise InvalidArgument("a hybrid search needs at least one sub-request")
        if len(request.requests) > 1024:
            raise InvalidArgument(f"a hybrid search takes at most 1024 sub-requests, got {len(request.requests)}")
        validation.validate_output_fields(request.output_fields, rec.field_names, rec.dynamic)
        rank = kv(request.rank_params)
        validation.validate_limit(int_param(rank, "limit", 10), int_param(rank, "offset", 0), self.settings.max_top_k)
        plans = [searchplan.plan_search(rec, sub, self.settings.max_top_k, self.settings.max_nq, "HybridSearch")
                 for sub in request.requests]
        for sub, plan in zip(request.requests, plans):
            if plan.group_by:
                raise Unimplemented("HybridSearch with group_by_field is not implemented by shardproxy")
            if plan.order_by:
                raise Unimplemented("order_by_fields inside a hybrid sub-request is not implemented by shardproxy")
            if sub.HasField("function_score"):
                raise Unimplemented("a rerank function inside a hybrid sub-request is not implemented by shardproxy")
        nodes = self.cluster.placement(rec).scatter_set()
        gather = self._gather(rec, context)
        t0 = time.perf_counter()
        merged = await searchexec.hybrid_search(request, plans, list(request.requests), nodes, gather)
        log.debug("hybrid search %s over %d nodes in %.1f ms", rec.name, len(nodes), (time.perf_counter() - t0) * 1000)
        return Reply(milvus_pb2.SearchResults(status=status_ok(), results=merged, collection_name=rec.name),
                     gather.coverage)
