"""DDL and collection-level RPCs: create/drop/describe/list collections, indexes, load and
release, load state and progress, statistics (flush is in :mod:`shardproxy.handlers.alter`)."""

from __future__ import annotations

import logging
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy import ddlrules
from shardproxy.errors import AlreadyExists, InvalidArgument, status_ok
from shardproxy.handlers.base import HandlerBase
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.params import kv
from shardproxy.rpc import rpc

log = logging.getLogger(__name__)

_LS = common_pb2.LoadState
_IS = common_pb2.IndexState
_INDEX_STATE_RANK = {_IS.Failed: 0, _IS.Retry: 1, _IS.Unissued: 2, _IS.InProgress: 3, _IS.Finished: 4}


def worst_index_state(states: list[int]) -> int:
    """The state of an index built on every node: the least advanced one (pure)."""
    return min(states, key=lambda s: _INDEX_STATE_RANK.get(s, -1)) if states else _IS.IndexStateNone


class DdlHandlers(HandlerBase):
    @rpc(None)
    async def CreateCollection(self, request: milvus_pb2.CreateCollectionRequest, context: Any) -> Any:
        db = await self._require_db(request, context)
        self.cluster.require_nodes()
        name = request.collection_name
        schema = schema_pb2.CollectionSchema()
        try:
            schema.ParseFromString(request.schema)
        except Exception as exc:  # noqa: BLE001
            raise InvalidArgument(f"malformed collection schema: {exc}") from exc
        # Milvus's own rules and messages (milvus-lite accepts e.g. dimension 1,000,000)
        ddlrules.validate_schema(name, schema, request.shards_num, request.num_partitions)
        if name in await self.cluster.store.catalog.aliases(db):
            await self._native_error(request, AlreadyExists(
                f"collection name [{name}] conflicts with an existing alias, please choose a unique name"))
        props = kv(request.properties)
        try:
            replicas = int(props.get("shardproxy.replicas") or self.settings.default_replicas)
        except ValueError as exc:
            raise InvalidArgument("property shardproxy.replicas must be an integer") from exc
        write_ack = (props.get("shardproxy.write_ack") or self.settings.default_write_ack).lower()
        if replicas < 1 or replicas > 16:
            raise InvalidArgument(f"shardproxy.replicas must be in [1, 16], got {replicas}")
        if write_ack not in ("all", "quorum"):
            raise InvalidArgument(f"shardproxy.write_ack must be 'all' or 'quorum', got {write_ack!r}")
        key = self._key(db, name)
        created = await self.cluster.store.create_collection(request, db)
        if created:
            await self.cluster.store.set_replication(key, replicas, write_ack)
        if not created:
            existing = await self.cluster.collection(name, db)
            if existing.create.schema != request.schema:
                await self._native_error(request, AlreadyExists(
                    f"collection {name} already exists with a different schema"))
        self.cluster.forget(key)
        rec = await self.cluster.collection(name, db)
        clients = self.cluster.all_clients()
        # Idempotent on every node: create where missing.
        await self.scatter.each(clients, lambda c: self._ensure_created(c, rec))
        log.info("collection %s created on %d node(s)", name, len(clients))
        return status_ok()

    async def _ensure_created(self, client: NodeClient, rec: CollectionRecord) -> None:
        has = await client.call("HasCollection", milvus_pb2.HasCollectionRequest(db_name=rec.db, collection_name=rec.name))
        if not has.value:
            await client.call("CreateCollection", rec.node_create)

    @rpc(None)
    async def DropCollection(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        await self._all("DropCollection", request, self.cluster.all_clients())
        await self.cluster.store.drop_collection(rec.key)
        await self.cluster.store.catalog.drop_aliases_of(rec.db, rec.name)
        self.cluster.forget(rec.key)
        self.cluster.drop_id_block(rec.key)
        log.info("collection %s dropped", rec.key)
        return status_ok()

    @rpc(milvus_pb2.BoolResponse)
    async def HasCollection(self, request: Any, context: Any) -> Any:
        db = await self._require_db(request, context)
        rec = await self.cluster.store.collection(self._key(db, request.collection_name))
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
        resp.db_name = rec.db
        del resp.aliases[:]
        resp.aliases.extend(sorted(a for a, t in (await self.cluster.store.catalog.aliases(rec.db)).items()
                                   if t == rec.name))
        return resp

    @rpc(milvus_pb2.ShowCollectionsResponse)
    async def ShowCollections(self, request: Any, context: Any) -> Any:
        db = await self._require_db(request, context)
        records = await self.cluster.store.collections(db)
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
        await self.cluster.store.put_index(rec.key, request)
        self.cluster.forget(rec.key)
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
            desc.state = worst_index_state([d.state for d in same])
            failed = [d.index_state_fail_reason for d in same if d.index_state_fail_reason]
            desc.index_state_fail_reason = failed[0] if failed else ""
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
            await self.cluster.store.drop_index(rec.key, field_name)
        self.cluster.forget(rec.key)
        return status_ok()

    @rpc(None)
    async def LoadCollection(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        await self.cluster.store.set_loaded(rec.key, True, request)
        self.cluster.forget(rec.key)
        await self._all("LoadCollection", request, self.cluster.all_clients())
        return status_ok()

    @rpc(None)
    async def ReleaseCollection(self, request: Any, context: Any) -> Any:
        rec = await self._collection(request)
        await self.cluster.store.set_loaded(rec.key, False)
        self.cluster.forget(rec.key)
        await self._all("ReleaseCollection", request, self.cluster.all_clients())
        return status_ok()

    @rpc(milvus_pb2.GetLoadStateResponse)
    async def GetLoadState(self, request: Any, context: Any) -> Any:
        db = await self._require_db(request, context)
        request.collection_name = await self.cluster.catalog.resolve(db, request.collection_name)
        rec = await self.cluster.store.collection(self._key(db, request.collection_name))
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
