"""``order_by_fields`` on Query and Search, exact across shards (semantics: :mod:`shardproxy.orderby`).

Query: the nodes do not sort (milvus-lite ignores ``order_by_fields``), so each node returns the
primary key and the order keys of every row matching the filter, in pk-ordered batches, at most
``order_by_max_rows`` rows per node (more is refused with a message that says so: the work per
request stays bounded). The proxy orders globally (ties by primary key), takes the page, then
fetches the caller's output fields of the page's keys from the nodes that hold them.

Search: the usual exact merge of the first ``offset + limit`` hits (with the order keys fetched as
extra output fields), re-sorted by the keys, then ``offset`` / ``limit``; a grouping search sorts
whole groups by their first hit.
"""

from __future__ import annotations

from typing import Any

from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from shardproxy import fielddata, orderby
from shardproxy.errors import InvalidArgument
from shardproxy.freshness import prefer_target_copies
from shardproxy.handlers.search_ext import SearchExtHandlers
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.nodequery import pk_expr, scan_rows
from shardproxy.params import set_kv
from shardproxy.rpc import Reply

SCAN_BATCH = 4096


def _column(shard: list[schema_pb2.FieldData], like: schema_pb2.FieldData) -> schema_pb2.FieldData:
    got = next((fd for fd in shard if fd.field_name == like.field_name and fd.is_dynamic == like.is_dynamic), None)
    if got is not None:
        return got
    if like.is_dynamic:  # no row of this node has dynamic keys: every key is missing (null)
        empty = schema_pb2.FieldData(type=like.type, field_name=like.field_name, is_dynamic=True)
        empty.scalars.json_data.data.extend([b"{}"] * fielddata.num_rows(shard[0]))
        return empty
    raise InvalidArgument(f"a node's answer lacks the column {like.field_name!r}")


def _concat_shards(shards: list[list[schema_pb2.FieldData]]) -> list[schema_pb2.FieldData]:
    shards = [s for s in shards if s and fielddata.num_rows(s[0])]
    if not shards:
        return []
    kinds: dict[tuple[str, bool], schema_pb2.FieldData] = {}
    for s in shards:
        for fd in s:
            kinds.setdefault((fd.field_name, fd.is_dynamic), fd)
    return [fielddata.concat([_column(s, c) for s in shards]) for c in kinds.values()]


class OrderedReadHandlers(SearchExtHandlers):
    async def _ordered_query(self, rec: CollectionRecord, request: milvus_pb2.QueryRequest,
                             keys: list[orderby.OrderKey], offset: int, limit: int, context: Any) -> Reply:
        cap = self.settings.order_by_max_rows
        placement = self.cluster.placement(rec)
        fields = orderby.request_fields(keys)

        async def scan(c: NodeClient) -> list[schema_pb2.FieldData]:
            return await scan_rows(c, rec, request, fields, min(SCAN_BATCH, self.settings.max_top_k), cap)

        got = await self.scatter.read_each(rec, "Query", placement.scatter_set(), scan, self._allow_partial(context),
                                           fanout=True)
        over = sorted(n for n, cols in got.results.items() if cols and fielddata.num_rows(cols[0]) > cap)
        if over:
            raise InvalidArgument(
                f"order_by on {rec.name}: node {over[0]} holds more than {cap} rows matching the filter, and shardproxy "
                "orders every matching row itself (its order_by_max_rows setting bounds that work); narrow the filter")
        fresh = prefer_target_copies(placement, got.results, rec.pk_name)
        columns = _concat_shards(list(fresh.values()))
        pk_col = next((fd for fd in columns if fd.field_name == rec.pk_name), None)
        pks = fielddata.column_values(pk_col) if pk_col is not None else []
        rows = orderby.query_order(pks, orderby.key_columns(columns, keys), keys, offset, limit) if pks else []
        page = [pks[i] for i in rows]

        # the page's rows with the caller's output fields, from the nodes that hold them
        sub = milvus_pb2.QueryRequest()
        sub.CopyFrom(request)
        sub.db_name, sub.collection_name = rec.db, rec.name  # resolved once: an alias switch cannot split the answer
        if page:
            sub.expr = pk_expr(rec.pk_name, page, rec.pk_is_str)
            sub.ClearField("expr_template_values")
        else:  # nothing matched: the same empty answer (columns and all) a node gives
            sub.expr = f"({request.expr}) and false" if request.expr else "false"
        for key in ("order_by_fields", "offset"):
            set_kv(sub.query_params, key, None)
        set_kv(sub.query_params, "limit", str(max(len(page), 1)))
        reply = await self._query(sub, context)
        resp: milvus_pb2.QueryResults = reply.response
        got_pk = next((fd for fd in resp.fields_data if fd.field_name == rec.pk_name), None)
        if page and got_pk is not None:
            at = {pk: i for i, pk in enumerate(fielddata.column_values(got_pk))}
            order = [at[pk] for pk in page if pk in at]  # a row deleted between the two reads is gone
            taken = [fielddata.take(fd, order) for fd in resp.fields_data]
            del resp.fields_data[:]
            resp.fields_data.extend(taken)
        return Reply(resp, got.coverage | reply.coverage)
