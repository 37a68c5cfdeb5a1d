"""DDL and collection-level RPCs: create/drop/describe/list collections, indexes, load and
release, load state and progress, statistics, flush."""

from __future__ import annotations

import logging
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy.acks import WRITE_ACKS
from shardproxy.errors import AlreadyExists, InvalidArgument, status_ok
from shardproxy.handlers.base import HandlerBase
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.params import kv
from shardproxy.rpc import rpc

log = logging.getLogger(__name__)

_LS = common_pb2.LoadState


class DdlHandlers(HandlerBase):
    @rpc(None)
    async def CreateCollection(self, request: milvus_pb2.CreateCollectionRequest, context: Any) -> Any:
        self._check_db(request)
        self.cluster.require_nodes()
        name = request.collection_name
        if not name:
            raise InvalidArgument("collection name must not be empty")
        schema = schema_pb2.CollectionSchema()
        try:
            schema.ParseFromString(request.schema)
        except Exception as exc:  # noqa: BLE001
            raise InvalidArgument(f"malformed collection schema: {exc}") from exc
        pks = [f for f in schema.fields if f.is_primary_key]
        if len(pks) != 1:
            raise InvalidArgument("a collection needs exactly one primary key field")
        if pks[0].data_type not in (schema_pb2.DataType.Int64, schema_pb2.DataType.VarChar):
            raise InvalidArgument("the primary key must be INT64 or VARCHAR")
        props = kv(request.properties)
        try:
            replicas = int(props.get("shardproxy.replicas") or self.settings.default_replicas)
        except ValueError as exc:
            raise InvalidArgument("property shardproxy.replicas must be an integer") from exc
        write_ack = (props.get("shardproxy.write_ack") or self.settings.default_write_ack).lower()
        if replicas < 1 or replicas > 16:
            raise InvalidArgument(f"shardproxy.replicas must be in [1, 16], got {replicas}")
        if write_ack not in WRITE_ACKS:
            raise InvalidArgument(f"shardproxy.write_ack must be one of {', '.join(WRITE_ACKS)}, got {write_ack!r}")
        created = await self.cluster.store.create_collection(request)
        if created:
            await self.cluster.store.set_replication(name, replicas, write_ack)
        if not created:
            existing = await self.cluster.collection(name)
            if existing.create.schema != request.schema:
                raise AlreadyExists(f"collection {name} already exists with a different schema")
        self.cluster.forget(name)
        rec = await self.cluster.collection(name)
        clients = self.cluster.all_clients()
        # Idempotent on every node: create where missing.
        await self.scatter.each(clients, lambda c: self._ensure_created(c, rec))
        log.info("collection %s created on %d node(s)", name, len(clients))
        return status_ok()

    async def _ensure_created(self, client: NodeClient, rec: CollectionRecord) -> None:
        has = await client.call("HasCollection", milvus_pb2.HasCollectionRequest(collection_name=rec.name))
        if not has.value:
            await client.call("CreateCollection", rec.node_create)

    @rpc(None)
    async def DropCollection(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        await self._all("DropCollection", request, self.cluster.all_clients())
        await self.cluster.store.drop_collection(rec.name)
        self.cluster.forget(rec.name)
        self.cluster.drop_id_block(rec.name)
        log.info("collection %s dropped", rec.name)
        return status_ok()

    @rpc(milvus_pb2.BoolResponse)
    async def HasCollection(self, request: Any, context: Any) -> Any:
        self._check_db(request)
        rec = await self.cluster.store.collection(request.collection_name)
        return milvus_pb2.BoolResponse(status=status_ok(), value=rec is not None)

    @rpc(milvus_pb2.DescribeCollectionResponse)
    async def DescribeCollection(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        resp = await self.scatter.first(self.cluster.ring_clients(), "DescribeCollection", request)
        if resp is None:  # no node answers: describe from the record
            resp = milvus_pb2.DescribeCollectionResponse(
                status=status_ok(), collection_name=rec.name, shards_num=rec.create.shards_num or 1,
                num_partitions=1,
            )
            resp.schema.CopyFrom(rec.schema)
            resp.properties.extend(rec.create.properties)
        # Report auto_id as the user declared it (nodes store explicit ids assigned by the proxy).
        if rec.auto_id:
            resp.schema.autoID = rec.schema.autoID
            for f in resp.schema.fields:
                if f.is_primary_key:
                    f.autoID = True
        resp.shards_num = len(self.cluster.ring) or 1
        return resp

    @rpc(milvus_pb2.ShowCollectionsResponse)
    async def ShowCollections(self, request: Any, context: Any) -> Any:
        self._check_db(request)
        records = await self.cluster.store.collections()
        if request.collection_names:
            wanted = set(request.collection_names)
            records = [r for r in records if r.name in wanted]
        pct = [100 if r.loaded else 0 for r in records]
        return milvus_pb2.ShowCollectionsResponse(
            status=status_ok(),
            collection_names=[r.name for r in records],
            inMemory_percentages=pct,
            query_service_available=[p == 100 for p in pct],
            shards_num=[len(self.cluster.ring) or 1] * len(records),
        )

    @rpc(None)
    async def CreateIndex(self, request: milvus_pb2.CreateIndexRequest, context: Any) -> Any:
        rec = await self._collection(request)
        if rec.field(request.field_name) is None:
            raise InvalidArgument(f"field {request.field_name!r} does not exist in collection {rec.name}")
        await self._all("CreateIndex", request, self.cluster.all_clients())
        await self.cluster.store.put_index(rec.name, request)
        self.cluster.forget(rec.name)
        return status_ok()

    @rpc(milvus_pb2.DescribeIndexResponse)
    async def DescribeIndex(self, request: Any, context: Any) -> Any:
        await self._collection(request)
        results = await self._all("DescribeIndex", request)
        resps = list(results.values())
        out = milvus_pb2.DescribeIndexResponse()
        out.CopyFrom(resps[0])
        for desc in out.index_descriptions:
            same = [d for r in resps for d in r.index_descriptions if d.index_name == desc.index_name]
            desc.total_rows = sum(d.total_rows for d in same)
            desc.indexed_rows = sum(d.indexed_rows for d in same)
            desc.pending_index_rows = sum(d.pending_index_rows for d in same)
        return out

    @rpc(None)
    async def DropIndex(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        await self._all("DropIndex", request, self.cluster.all_clients())
        field_name = request.field_name
        if not field_name:
            for f, idx in rec.indexes.items():
                if idx.index_name == request.index_name or not request.index_name:
                    field_name = f
        if field_name:
            await self.cluster.store.drop_index(rec.name, field_name)
        self.cluster.forget(rec.name)
        return status_ok()

    @rpc(None)
    async def LoadCollection(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        await self.cluster.store.set_loaded(rec.name, True, request)
        self.cluster.forget(rec.name)
        await self._all("LoadCollection", request, self.cluster.all_clients())
        return status_ok()

    @rpc(None)
    async def ReleaseCollection(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        await self.cluster.store.set_loaded(rec.name, False)
        self.cluster.forget(rec.name)
        await self._all("ReleaseCollection", request, self.cluster.all_clients())
        return status_ok()

    @rpc(milvus_pb2.GetLoadStateResponse)
    async def GetLoadState(self, request: Any, context: Any) -> Any:
        self._check_db(request)
        rec = await self.cluster.store.collection(request.collection_name)
        if rec is None:
            return milvus_pb2.GetLoadStateResponse(status=status_ok(), state=_LS.LoadStateNotExist)
        results = await self._all("GetLoadState", request)
        states = {r.state for r in results.values()}
        if states == {_LS.LoadStateLoaded}:
            state = _LS.LoadStateLoaded
        elif states == {_LS.LoadStateNotLoad}:
            state = _LS.LoadStateNotLoad
        else:
            state = _LS.LoadStateLoading
        return milvus_pb2.GetLoadStateResponse(status=status_ok(), state=state)

    @rpc(milvus_pb2.GetLoadingProgressResponse)
    async def GetLoadingProgress(self, request: Any, context: Any) -> Any:
        await self._collection(request)
        results = await self._all("GetLoadingProgress", request)
        progress = min(r.progress for r in results.values())
        return milvus_pb2.GetLoadingProgressResponse(status=status_ok(), progress=progress)

    @rpc(milvus_pb2.GetCollectionStatisticsResponse)
    async def GetCollectionStatistics(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        results = await self._all("GetCollectionStatistics", request)
        total = 0
        for r in results.values():
            total += int(kv(r.stats).get("row_count", "0"))
        return milvus_pb2.GetCollectionStatisticsResponse(
            status=status_ok(), stats=[common_pb2.KeyValuePair(key="row_count", value=str(total))]
        )

    @rpc(milvus_pb2.FlushResponse)
    async def Flush(self, request: Any, context: Any) -> Any:
        self._check_db(request)
        for name in request.collection_names:
            await self.cluster.collection(name)
        results = await self._all("Flush", request, self.cluster.all_clients())
        out = milvus_pb2.FlushResponse(status=status_ok(), db_name=request.db_name)
        for r in results.values():
            for name, segs in r.coll_segIDs.items():
                out.coll_segIDs[name].data.extend(segs.data)
            for name, segs in r.flush_coll_segIDs.items():
                out.flush_coll_segIDs[name].data.extend(segs.data)
            for name, ts in r.coll_seal_times.items():
                out.coll_seal_times[name] = max(out.coll_seal_times[name], ts)
            for name, ts in r.coll_flush_ts.items():
                out.coll_flush_ts[name] = max(out.coll_flush_ts[name], ts)
        return out

    @rpc(milvus_pb2.GetFlushStateResponse)
    async def GetFlushState(self, request: Any, context: Any) -> Any:
        results = await self._all("GetFlushState", request, self.cluster.all_clients())
        return milvus_pb2.GetFlushStateResponse(
            status=status_ok(), flushed=all(r.flushed for r in results.values())
        )
