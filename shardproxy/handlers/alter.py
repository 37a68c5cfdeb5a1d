"""Changing collections: AlterCollection (properties such as TTL and mmap), AlterCollectionField,
AddCollectionField, RenameCollection; and work the nodes track under their own ids:
ManualCompaction / GetCompactionState (one proxy id mapped to each node's id) and
Flush / GetFlushState (a synthetic flush ts mapped to each node's ts and segments).

Each change is applied on every node and recorded in Redis, so a node created later gets the
collection as it is now (the recorded schema includes added fields; altered properties are
re-applied by :meth:`shardproxy.nodepool.NodeClient.sync`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy import ddlrules
from shardproxy.catalog import DEFAULT_DB, collection_key
from shardproxy.errors import FailedPrecondition, InvalidArgument, status_ok
from shardproxy.handlers.base import HandlerBase
from shardproxy.handlers.lookup import kv
from shardproxy.rpc import rpc

log = logging.getLogger(__name__)

PROXY_PROPERTIES = ("shardproxy.replicas", "shardproxy.write_ack")
_CS = common_pb2.CompactionState


def apply_properties(current: dict[str, str], set_props: dict[str, str], delete_keys: list[str]) -> dict[str, str]:
    """Properties after an alter (pure)."""
    out = dict(current)
    out.update(set_props)
    for key in delete_keys:
        out.pop(key, None)
    return out


def worst_compaction_state(states: list[int]) -> int:
    """Executing while any node still executes, Completed when all completed (pure)."""
    if not states:
        return _CS.Completed
    if any(s == _CS.Executing for s in states):
        return _CS.Executing
    if all(s == _CS.Completed for s in states):
        return _CS.Completed
    return _CS.UndefiedState


def hybrid_ts() -> int:
    """A Milvus hybrid timestamp for now (physical ms << 18)."""
    return int(time.time() * 1000) << 18


class AlterHandlers(HandlerBase):
    @rpc(None)
    async def AlterCollection(self, request: milvus_pb2.AlterCollectionRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        set_props = kv(request.properties)
        touched = set(set_props) | set(request.delete_keys)
        fixed = sorted(k for k in touched if k in PROXY_PROPERTIES)
        if fixed:
            raise InvalidArgument(f"{', '.join(fixed)} cannot be altered after the collection is created")
        if set_props and request.delete_keys:
            raise InvalidArgument("cannot provide both properties and delete keys")
        await self._broadcast("AlterCollection", request)
        props = apply_properties(rec.properties, set_props, list(request.delete_keys))
        await self.cluster.store.catalog.set_properties(rec.key, props)
        self._forget(rec)
        return status_ok()

    @rpc(None)
    async def AlterCollectionField(self, request: milvus_pb2.AlterCollectionFieldRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        if rec.field(request.field_name) is None:
            raise InvalidArgument(f"field {request.field_name} does not exist in collection {rec.name}")
        await self._broadcast("AlterCollectionField", request)
        create = milvus_pb2.CreateCollectionRequest()
        create.CopyFrom(rec.create)
        schema = schema_pb2.CollectionSchema()
        schema.CopyFrom(rec.schema)
        field = next(f for f in schema.fields if f.name == request.field_name)
        params = apply_properties({p.key: p.value for p in field.type_params}, kv(request.properties),
                                  list(request.delete_keys))
        del field.type_params[:]
        field.type_params.extend(common_pb2.KeyValuePair(key=k, value=v) for k, v in params.items())
        create.schema = schema.SerializeToString()
        await self.cluster.store.put_create(rec.key, create)
        self._forget(rec)
        return status_ok()

    @rpc(None)
    async def AddCollectionField(self, request: milvus_pb2.AddCollectionFieldRequest, context: Any) -> Any:
        rec = await self._resolve(request, context)
        field = schema_pb2.FieldSchema()
        try:
            field.ParseFromString(request.schema)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError or others
            raise InvalidArgument(f"malformed field schema: {exc}") from exc
        ddlrules.validate_field_name(field.name)
        if rec.field(field.name) is not None:
            raise InvalidArgument(f"duplicated field name {field.name} found: invalid parameter")
        if len(rec.schema.fields) + 1 > ddlrules.MAX_FIELD_NUM:
            raise InvalidArgument(f"maximum field's number should be limited to {ddlrules.MAX_FIELD_NUM}: invalid parameter")
        if not field.nullable:
            raise InvalidArgument(f"added field must be nullable, please check it, field name = {field.name}: invalid parameter")
        await self._broadcast("AddCollectionField", request)
        create = milvus_pb2.CreateCollectionRequest()
        create.CopyFrom(rec.create)
        schema = schema_pb2.CollectionSchema()
        schema.CopyFrom(rec.schema)
        schema.fields.append(field)
        create.schema = schema.SerializeToString()
        await self.cluster.store.put_create(rec.key, create)
        self._forget(rec)
        return status_ok()

    @rpc(None)
    async def RenameCollection(self, request: milvus_pb2.RenameCollectionRequest, context: Any) -> Any:
        db = await self._require_db(request, context)
        new_db = request.newDBName or db
        if not await self.cluster.store.catalog.has_database(new_db):
            raise InvalidArgument(f"database not found[database={new_db}]")
        rec = await self._record(db, request.oldName)
        ddlrules.validate_collection_name(request.newName)
        if self.cluster.moving:
            raise FailedPrecondition("cannot rename a collection while a rebalance runs; wait for it")
        new_key = collection_key(new_db, request.newName)
        if await self.cluster.store.collection(new_key) is not None or \
                request.newName in await self.cluster.store.catalog.aliases(new_db):
            # not asked of a node: a node out of step would carry the rename out
            raise InvalidArgument(f"duplicated new collection name {request.newName} with other collection name or alias")
        await self._broadcast("RenameCollection", request)
        create = milvus_pb2.CreateCollectionRequest()
        create.CopyFrom(rec.create)
        create.collection_name = request.newName
        create.db_name = new_db if new_db != DEFAULT_DB else create.db_name
        await self.cluster.store.rename_collection(rec.key, new_key, create)
        if rec.loaded:  # milvus-lite releases a renamed collection, Milvus keeps it loaded: follow the nodes
            states = await self._broadcast("GetLoadState", milvus_pb2.GetLoadStateRequest(
                db_name=new_db, collection_name=request.newName), self.cluster.ring_clients())
            if any(r.state != common_pb2.LoadState.LoadStateLoaded for r in states.values()):
                await self.cluster.store.set_loaded(new_key, False)
        for node in await self.cluster.store.nodes():  # hinted writes follow the collection
            old_hints = self.cluster.store.k("hints", node.id, rec.key)
            if await self.cluster.store.r.exists(old_hints):
                await self.cluster.store.r.rename(old_hints, self.cluster.store.k("hints", node.id, new_key))
        if new_db == db:
            for alias, target in (await self.cluster.store.catalog.aliases(db)).items():
                if target == rec.name:
                    await self.cluster.store.catalog.set_alias(db, alias, request.newName, create=False)
        else:
            await self.cluster.store.catalog.drop_aliases_of(db, rec.name)
        self._forget(rec)
        self.cluster.forget(new_key)
        self.cluster.catalog.invalidate("alias", db)
        log.info("collection %s renamed to %s", rec.key, new_key)
        return status_ok()

    @rpc(milvus_pb2.ManualCompactionResponse)
    async def ManualCompaction(self, request: milvus_pb2.ManualCompactionRequest, context: Any) -> Any:
        if request.collectionID and not request.collection_name:
            raise InvalidArgument("ManualCompaction through shardproxy needs collection_name (collection ids are per node)")
        rec = await self._resolve(request, context)
        if request.partition_id or request.segment_ids:
            raise InvalidArgument("partition_id and segment_ids are per node ids; shardproxy compacts whole collections")
        request.collectionID = 0
        results = await self._broadcast("ManualCompaction", request, self.cluster.ring_clients())
        compaction_id = hybrid_ts()
        await self.cluster.store.catalog.put_compaction(
            compaction_id, {nid: int(r.compactionID) for nid, r in results.items()})
        log.info("compaction %d of %s: %s", compaction_id, rec.key,
                 ", ".join(f"{n}={r.compactionID}" for n, r in results.items()))
        return milvus_pb2.ManualCompactionResponse(
            status=status_ok(), compactionID=compaction_id,
            compactionPlanCount=sum(r.compactionPlanCount for r in results.values()),
        )

    @rpc(milvus_pb2.GetCompactionStateResponse)
    async def GetCompactionState(self, request: milvus_pb2.GetCompactionStateRequest, context: Any) -> Any:
        per_node = await self.cluster.store.catalog.compaction(request.compactionID)
        if per_node is None:
            raise InvalidArgument(f"compaction {request.compactionID} is unknown to shardproxy (or older than a week)")
        clients = {c.id: c for c in self.cluster.all_clients()}
        live = {nid: cid for nid, cid in per_node.items() if nid in clients}
        results = await self._broadcast(
            "GetCompactionState",
            lambda c: c.call("GetCompactionState", milvus_pb2.GetCompactionStateRequest(compactionID=live[c.id])),
            [clients[n] for n in live],
        )
        rs = list(results.values())
        return milvus_pb2.GetCompactionStateResponse(
            status=status_ok(), state=worst_compaction_state([r.state for r in rs]),
            executingPlanNo=sum(r.executingPlanNo for r in rs), timeoutPlanNo=sum(r.timeoutPlanNo for r in rs),
            completedPlanNo=sum(r.completedPlanNo for r in rs), failedPlanNo=sum(r.failedPlanNo for r in rs),
        )

    @rpc(milvus_pb2.FlushResponse)
    async def Flush(self, request: milvus_pb2.FlushRequest, context: Any) -> Any:
        db = await self._require_db(request, context)
        names = []
        for name in request.collection_names:
            rec = await self.cluster.collection(await self.cluster.catalog.resolve(db, name), db)
            names.append(rec.name)
        del request.collection_names[:]
        request.collection_names.extend(names)
        results = await self._broadcast("Flush", request)
        flush_ts = hybrid_ts()
        out = milvus_pb2.FlushResponse(status=status_ok(), db_name=db)
        per_node: dict[str, dict] = {}
        for nid, r in results.items():
            per_node[nid] = {"ts": dict(r.coll_flush_ts),
                             "segs": {n: list(s.data) for n, s in r.coll_segIDs.items()}}
            for name, segs in r.coll_segIDs.items():
                out.coll_segIDs[name].data.extend(segs.data)
            for name, segs in r.flush_coll_segIDs.items():
                out.flush_coll_segIDs[name].data.extend(segs.data)
            for name, ts in r.coll_seal_times.items():
                out.coll_seal_times[name] = max(out.coll_seal_times[name], ts)
        for name in names:
            out.coll_flush_ts[name] = flush_ts
        await self.cluster.store.catalog.put_flush(flush_ts, per_node)
        return out

    @rpc(milvus_pb2.GetFlushStateResponse)
    async def GetFlushState(self, request: milvus_pb2.GetFlushStateRequest, context: Any) -> Any:
        db = self._db(request, context)
        name = await self.cluster.catalog.resolve(db, request.collection_name) if request.collection_name else ""
        per_node = await self.cluster.store.catalog.flush(request.flush_ts) if request.flush_ts else None
        clients = {c.id: c for c in self.cluster.all_clients()}

        def node_request(nid: str) -> milvus_pb2.GetFlushStateRequest:
            req = milvus_pb2.GetFlushStateRequest(db_name=db, collection_name=name)
            if per_node is None:  # not the proxy's ts: ask as asked
                req.flush_ts = request.flush_ts
                req.segmentIDs.extend(request.segmentIDs)
                return req
            mine = per_node.get(nid, {})
            req.flush_ts = int(mine.get("ts", {}).get(name, 0))
            req.segmentIDs.extend(mine.get("segs", {}).get(name, []))
            return req

        targets = [clients[n] for n in (per_node or clients) if n in clients]
        results = await self._broadcast(
            "GetFlushState", lambda c: c.call("GetFlushState", node_request(c.id)), targets)
        return milvus_pb2.GetFlushStateResponse(status=status_ok(), flushed=all(r.flushed for r in results.values()))
