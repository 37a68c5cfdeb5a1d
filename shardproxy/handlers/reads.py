"""Read RPCs: Query (by filter, by ids, count(*)) and Search.

Planning: :meth:`Placement.holders` for gets by id, :meth:`Placement.scatter_set` for
everything else. Execution: :meth:`Scatter.read` (down nodes tolerated while every shard has a
live replica; otherwise the request's partial policy decides); the coverage travels back in
:class:`shardproxy.rpc.Reply` and becomes trailing metadata.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from shardproxy import fielddata, merge, metrics, orderby, searchplan, tracing, validation
from shardproxy.countorder import count_phases
from shardproxy.errors import InvalidArgument, status_ok
from shardproxy.freshness import prefer_target_copies
from shardproxy.handlers.ordered import OrderedReadHandlers
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.nodequery import pk_expr, scan_all_pks
from shardproxy.params import int_param, kv, set_kv
from shardproxy.rpc import Reply, rpc

log = logging.getLogger(__name__)

COUNT_SCAN_BATCH = 16384


class ReadHandlers(OrderedReadHandlers):
    @rpc(milvus_pb2.QueryResults)
    async def Query(self, request: milvus_pb2.QueryRequest, context: Any) -> Any:
        return await self._query(request, context)

    async def _query(self, request: milvus_pb2.QueryRequest, context: Any) -> Reply:
        rec = await self._collection(request)
        await self._check_partitions(rec, list(request.partition_names))
        self._check_size(request)
        self.cluster.require_nodes()
        output_fields = list(request.output_fields)
        validation.validate_output_fields(output_fields, rec.field_names, rec.dynamic)
        if request.expr:
            validation.validate_filter(request.expr, rec.field_names, rec.dynamic)
        params = kv(request.query_params)
        searchplan.check_params(params, searchplan.QUERY_PARAM_UNIMPLEMENTED, "Query")
        order = orderby.parse(params.get("order_by_fields"), rec.field_types, rec.dynamic)
        has_limit = "limit" in params and params["limit"] != ""
        limit = int_param(params, "limit", 0)
        offset = int_param(params, "offset", 0)
        if has_limit:
            validation.validate_limit(limit, offset, self.settings.max_top_k)
        elif offset:
            raise InvalidArgument("offset requires a limit")
        elif not request.expr and "count(*)" not in output_fields:
            raise InvalidArgument("a query needs a filter expression or a limit")
        allow = self._allow_partial(context)
        placement = self.cluster.placement(rec)
        if order:
            if "count(*)" in output_fields:
                raise InvalidArgument("ORDER BY on count(*) needs GROUP BY, which shardproxy does not implement")
            if not has_limit:
                raise InvalidArgument("ORDER BY requires explicit limit")
            if searchplan.flag(params, "iterator"):
                raise InvalidArgument("ORDER BY with iterator is not supported")
            return await self._ordered_query(rec, request, order, offset, limit, context)

        if "count(*)" in output_fields:
            if len(output_fields) > 1:
                raise InvalidArgument("count(*) cannot be combined with other output fields")
            nodes = placement.scatter_set()
            if rec.replicas > 1 or placement.moving:
                # every row is stored R times, or may be in flight on two nodes: count distinct
                # primary keys instead, reading the nodes that give keys away first (countorder.py)
                async def scan(c: NodeClient) -> list[Any]:
                    return await scan_all_pks(c, rec, COUNT_SCAN_BATCH, extra=request.expr)

                if placement.moving:
                    # rows may be in flight on two nodes: read the nodes that give keys away first
                    # (countorder.py), then count distinct primary keys
                    seen: set[Any] = set()
                    cov = None
                    for phase in count_phases(self.cluster.nodes, nodes):
                        got = await self.scatter.read_each(rec, "Query", phase, scan, allow)
                        cov = got.coverage if cov is None else cov | got.coverage
                        for pks in got.results.values():
                            seen.update(pks)
                    got.coverage = cov
                    total = len(seen)
                else:  # every row is stored R times: a covering read, distinct primary keys
                    got = await self.scatter.read_each(rec, "Query", nodes, scan, allow, fanout=True)
                    total = len({pk for pks in got.results.values() for pk in pks})
            else:
                got = await self.scatter.read(rec, "Query", {n: request for n in nodes}, allow)
                total = 0
                for r in got.results.values():
                    total += sum(fielddata.column_values(fd)[0] for fd in r.fields_data if fd.field_name == "count(*)")
            col = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="count(*)")
            col.scalars.long_data.data.append(total)
            return Reply(milvus_pb2.QueryResults(
                status=status_ok(), fields_data=[col], collection_name=rec.name, output_fields=["count(*)"]
            ), got.coverage)

        pks = validation.pk_list(request.expr, rec.pk_name, rec.pk_is_str) if request.expr else None
        sub = milvus_pb2.QueryRequest()
        sub.CopyFrom(request)
        if has_limit:
            set_kv(sub.query_params, "limit", str(offset + limit))
            set_kv(sub.query_params, "offset", None)
        keyed = pks is not None
        if pks is not None and rec.replicas > 1 and self._some_down(placement):
            # copies may sit on stand-ins while a replica is out: ask every live node (merge dedups);
            # the out replicas of keys with no live replica stay in the request set, so those keys
            # fail UNAVAILABLE (or come back partial when allowed) instead of reading as absent
            sub.expr = pk_expr(rec.pk_name, pks, rec.pk_is_str)
            held = placement.holders(pks)
            covered = {i for nid, rows in held.items() if self.cluster.is_live(nid) for i in rows}
            uncovered = {nid for nid, rows in held.items() if any(i not in covered for i in rows)}
            reqs = {n: sub for n in placement.scatter_set() if self.cluster.is_live(n) or n in uncovered}
        elif pks is not None:
            reqs: dict[str, Any] = {}
            for nid, rows in placement.holders(pks).items():
                q = milvus_pb2.QueryRequest()
                q.CopyFrom(sub)
                q.expr = pk_expr(rec.pk_name, [pks[i] for i in rows], rec.pk_is_str)
                reqs[nid] = q
        else:
            reqs = {n: sub for n in placement.scatter_set()}
        # iterators: collection_id per node; a filter query is a hedged covering read (merge dedups)
        gather = self._gather(rec, context, "Query", fanout=not keyed)
        results = await gather(reqs)
        resps = list(results.values())
        fresh = prefer_target_copies(placement, {n: list(r.fields_data) for n, r in results.items()}, rec.pk_name)
        merged = merge.merge_query_rows(
            list(fresh.values()), rec.pk_name, offset if has_limit else 0, limit if has_limit else None
        )
        names = next((list(r.output_fields) for r in resps if r.output_fields), output_fields)
        return Reply(milvus_pb2.QueryResults(
            status=status_ok(), fields_data=merged, collection_name=rec.name,
            output_fields=names, primary_field_name=rec.pk_name,
        ), gather.coverage)

    @rpc(milvus_pb2.SearchResults)
    async def Search(self, request: milvus_pb2.SearchRequest, context: Any) -> Any:
        rec = await self._collection(request)
        await self._check_partitions(rec, list(request.partition_names))
        self._check_size(request)
        self.cluster.require_nodes()
        plan = searchplan.plan_search(rec, request, self.settings.max_top_k, self.settings.max_nq)
        if self._is_variant(request, plan):  # grouping, rerank function, iterator pages
            return await self._search_variant(rec, request, plan, context)
        limit, offset, nq, metric = plan.limit, plan.offset, plan.nq, plan.metric

        sub = milvus_pb2.SearchRequest()
        sub.CopyFrom(request)
        set_kv(sub.search_params, "topk", str(offset + limit))
        set_kv(sub.search_params, "offset", None)
        if request.nq == 0:
            sub.nq = nq

        nodes = self.cluster.placement(rec).scatter_set()
        start = time.perf_counter()
        with tracing.span("shardproxy.search.fan_out", collection=rec.name, nq=nq, nodes=len(nodes)):
            got = await self.scatter.read(rec, "Search", {n: sub for n in nodes}, self._allow_partial(context),
                                          fanout=True)
        t_merge = time.perf_counter()
        merged = merge.merge_search_results(
            [r.results for r in got.results.values()], nq, metric, offset, limit, list(request.output_fields)
        )
        metrics.MERGE_SECONDS.observe(time.perf_counter() - t_merge)
        log.debug("search %s nq=%d k=%d over %d nodes in %.1f ms", rec.name, nq, limit, len(nodes),
                  (time.perf_counter() - start) * 1000)
        return Reply(milvus_pb2.SearchResults(status=status_ok(), results=merged, collection_name=rec.name),
                     got.coverage)
