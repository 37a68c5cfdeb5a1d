"""The Milvus data plane of the proxy: a ``MilvusServiceServicer`` (grpc.aio) that routes writes by
primary key, fans reads out to every shard in parallel and merges them exactly.

Every RPC validates its request first (see :mod:`shardproxy.validation`), answers errors the
Milvus way (a ``Status`` in the response, see :mod:`shardproxy.errors`) and keeps serving. RPCs
the proxy does not implement answer gRPC UNIMPLEMENTED with a message naming the RPC.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import numpy as np
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc, schema_pb2

from shardproxy import fielddata, logs, merge, metrics, routing, tracing, validation
from shardproxy.auth.rbac_handlers import RbacHandlers
from shardproxy.cluster import Cluster, fan_out
from shardproxy.errors import (
    TRAILER_GRPC_STATUS,
    AlreadyExists,
    InvalidArgument,
    NodeError,
    ProxyError,
    Unavailable,
    Unimplemented,
    grpc_code_of,
    status_ok,
    to_milvus_status,
)
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient

log = logging.getLogger(__name__)

VERSION = "0.1.0"
MILVUS_CODE_NOT_LOADED = 101  # merr.ErrCollectionNotLoaded and legacy ErrorCode.CollectionNotLoaded
_LS = common_pb2.LoadState


def _kv(pairs: Sequence[common_pb2.KeyValuePair]) -> dict[str, str]:
    return {p.key: p.value for p in pairs}


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(json.loads(raw)) if not raw.lstrip("-").isdigit() else int(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{key} must be an integer, got {raw!r}") from exc


def _set_kv(pairs: Any, key: str, value: str | None) -> None:
    """Set (or with None remove) one key in a repeated KeyValuePair field."""
    kept = [p for p in pairs if p.key != key]
    del pairs[:]
    pairs.extend(kept)
    if value is not None:
        pairs.append(common_pb2.KeyValuePair(key=key, value=value))


EXTRA_TRAILERS: contextvars.ContextVar[list[tuple[str, str]]] = contextvars.ContextVar("extra_trailers")


def rpc(response: Callable[..., Any] | None) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Wrap one data-plane RPC: errors become a Milvus status in ``response`` (None: the RPC
    returns a bare Status), the precise gRPC code goes into trailing metadata, metrics count it."""

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        method = fn.__name__

        @functools.wraps(fn)
        async def wrapper(self: "MilvusProxyServicer", request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            rid = logs.request_id_from(context.invocation_metadata())
            token = logs.REQUEST_ID.set(rid)
            extra = EXTRA_TRAILERS.set([])  # trailers added by the handler (partial results)
            try:
                resp = await fn(self, request, context)
                context.set_trailing_metadata(((logs.REQUEST_ID_HEADER, rid), *EXTRA_TRAILERS.get()))
                return resp
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status, the server keeps serving
                code = grpc_code_of(exc).name if not isinstance(exc, NodeError) else "NODE_ERROR"
                if isinstance(exc, ProxyError):
                    log.debug("%s failed: %s", method, exc.message)
                else:
                    log.exception("%s failed unexpectedly", method)
                context.set_trailing_metadata(
                    ((TRAILER_GRPC_STATUS, code), (logs.REQUEST_ID_HEADER, rid), *EXTRA_TRAILERS.get())
                )
                status = to_milvus_status(exc)
                return status if response is None else response(status=status)
            finally:
                metrics.RPC_LATENCY.labels(method=method).observe(time.perf_counter() - start)
                metrics.RPCS.labels(method=method, code=code).inc()
                logs.REQUEST_ID.reset(token)
                EXTRA_TRAILERS.reset(extra)

        return wrapper

    return deco


class MilvusProxyServicer(RbacHandlers, milvus_pb2_grpc.MilvusServiceServicer):
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.settings = cluster.settings

    # ------------------------------------------------------------------ helpers
    def _check_size(self, request: Any) -> None:
        size = request.ByteSize()
        if size > self.settings.max_request_bytes:
            raise InvalidArgument(
                f"request of {size} bytes exceeds the proxy's limit of {self.settings.max_request_bytes} bytes; "
                "send smaller batches"
            )

    @staticmethod
    def _check_db(request: Any) -> None:
        db = getattr(request, "db_name", "")
        if db and db != "default":
            raise InvalidArgument(f"database {db!r} is not supported by shardproxy; use the default database")

    async def _collection(self, request: Any) -> CollectionRecord:
        self._check_db(request)
        return await self.cluster.collection(request.collection_name)

    async def _all(self, method: str, request: Any, clients: Sequence[NodeClient] | None = None) -> dict[str, Any]:
        self.cluster.require_nodes()
        clients = self.cluster.search_clients() if clients is None else clients
        return await fan_out(clients, lambda c: c.call(method, request))

    async def _read(self, client: NodeClient, method: str, request: Any) -> Any:
        """A read on one node. A node that restarted forgets its load state (milvus-lite does); when
        it answers "collection not loaded" for a collection recorded as loaded, bring it back to the
        recorded state and retry once, instead of failing until the next health check."""
        try:
            return await client.call(method, request)
        except NodeError as exc:
            if exc.status.code != MILVUS_CODE_NOT_LOADED and exc.status.error_code != MILVUS_CODE_NOT_LOADED:
                raise
            rec = await self.cluster.collection(request.collection_name)
            if not rec.loaded:
                raise
            log.info("node %s lost the load state of %s; re-syncing", client.id, rec.name)
            client.synced = False
            await self.cluster.sync_nodes([client])
            return await client.call(method, request)

    # ------------------------------------------------------------------ connection
    @rpc(milvus_pb2.ConnectResponse)
    async def Connect(self, request: Any, context: Any) -> Any:
        return milvus_pb2.ConnectResponse(
            status=status_ok(),
            server_info=common_pb2.ServerInfo(build_tags=f"shardproxy-{VERSION}", deploy_mode="sharded"),
            identifier=int(time.time() * 1000) & 0x7FFFFFFF,
        )

    @rpc(milvus_pb2.GetVersionResponse)
    async def GetVersion(self, request: Any, context: Any) -> Any:
        return milvus_pb2.GetVersionResponse(status=status_ok(), version=f"shardproxy-{VERSION}")

    @rpc(milvus_pb2.AllocTimestampResponse)
    async def AllocTimestamp(self, request: Any, context: Any) -> Any:
        """A hybrid timestamp like Milvus's TSO (physical milliseconds << 18); pymilvus asks for one
        while it waits for an index to be built."""
        return milvus_pb2.AllocTimestampResponse(status=status_ok(), timestamp=int(time.time() * 1000) << 18)

    @rpc(milvus_pb2.CheckHealthResponse)
    async def CheckHealth(self, request: Any, context: Any) -> Any:
        health = await self.cluster.check_health()
        reasons = [f"node {nid} is not answering" for nid, ok in health.items() if not ok]
        if not self.cluster.ring:
            reasons.append("no Milvus node is registered")
        return milvus_pb2.CheckHealthResponse(status=status_ok(), isHealthy=not reasons, reasons=reasons)

    # ------------------------------------------------------------------ DDL
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
        props = _kv(request.properties)
        try:
            replicas = int(props.get("shardproxy.replicas") or self.settings.default_replicas)
        except ValueError as exc:
            raise InvalidArgument("property shardproxy.replicas must be an integer") from exc
        write_ack = (props.get("shardproxy.write_ack") or self.settings.default_write_ack).lower()
        if replicas < 1 or replicas > 16:
            raise InvalidArgument(f"shardproxy.replicas must be in [1, 16], got {replicas}")
        if write_ack not in ("all", "quorum"):
            raise InvalidArgument(f"shardproxy.write_ack must be 'all' or 'quorum', got {write_ack!r}")
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
        await fan_out(clients, lambda c: self._ensure_created(c, rec))
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
        resp = None
        for client in self.cluster.ring_clients():
            try:
                resp = await client.call("DescribeCollection", request)
                break
            except ProxyError:
                continue
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
            total += int(_kv(r.stats).get("row_count", "0"))
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

    # ------------------------------------------------------------------ writes
    def _validate_columns(self, rec: CollectionRecord, fields: Sequence[schema_pb2.FieldData], num_rows: int) -> None:
        known = set(rec.field_names)
        for fd in fields:
            if fd.is_dynamic:
                if not rec.dynamic:
                    raise InvalidArgument(f"collection {rec.name} has no dynamic field; unknown fields were sent")
                continue
            if fd.field_name not in known:
                raise InvalidArgument(f"field {fd.field_name!r} does not exist in collection {rec.name}")
            n = fielddata.num_rows(fd)
            if n != num_rows:
                raise InvalidArgument(f"field {fd.field_name!r} has {n} rows, but the request says {num_rows}")
            if fd.type == schema_pb2.DataType.FloatVector:
                dim = rec.dim(fd.field_name)
                if fd.vectors.dim != dim:
                    raise InvalidArgument(
                        f"field {fd.field_name!r}: vectors have dimension {fd.vectors.dim}, but the collection expects {dim}"
                    )
                validation.validate_matrix(fielddata.float_vectors(fd), dim, fd.field_name)

    async def _write(self, method: str, request: Any) -> milvus_pb2.MutationResult:
        rec = await self._collection(request)
        self._check_size(request)
        self.cluster.require_nodes()
        num_rows = int(request.num_rows)
        if num_rows == 0:
            raise InvalidArgument("no rows to write")
        fields = list(request.fields_data)
        pk_col = next((fd for fd in fields if fd.field_name == rec.pk_name and not fd.is_dynamic), None)
        if pk_col is None:
            if not rec.auto_id:
                raise InvalidArgument(f"primary key field {rec.pk_name!r} is missing")
            ids = await self.cluster.reserve_ids(rec.name, num_rows)
            pk_col = schema_pb2.FieldData(type=rec.pk_field.data_type, field_name=rec.pk_name)
            if rec.pk_is_str:
                pk_col.scalars.string_data.data.extend(str(i) for i in ids)
            else:
                pk_col.scalars.long_data.data.extend(ids)
            fields.append(pk_col)
        elif rec.auto_id and method == "Insert":
            raise InvalidArgument(
                f"collection {rec.name} assigns ids itself (auto_id); do not send {rec.pk_name!r}"
            )
        self._validate_columns(rec, fields, num_rows)
        pks = fielddata.column_values(pk_col)
        if len(set(pks)) != len(pks) and method == "Upsert":
            raise InvalidArgument("duplicate primary keys in one upsert batch")
        parts = routing.replica_split(self.cluster.ring, pks, rec.replicas)
        clients = {c.id: c for c in self.cluster.ring_clients()}
        if self.cluster.moving:
            # Tell the migrator these keys were written at their new owner (it must not copy
            # an older version over them); see shardproxy/migrator.py.
            await self.cluster.moves.touch(
                rec.name,
                pks if rec.replicas > 1 else routing.changed_owner(self.cluster.current_ring, self.cluster.ring, pks),
                "w",
            )

        async def send(node_id: str, rows: np.ndarray) -> Any:
            sub = type(request)()
            sub.collection_name = request.collection_name
            sub.partition_name = request.partition_name
            sub.num_rows = len(rows)
            sub.fields_data.extend(fielddata.take_all(fields, rows))
            if method == "Upsert":
                sub.partial_update = request.partial_update
            if rec.replicas > 1 and not self.cluster.is_live(node_id):
                raise Unavailable(f"node {node_id} is down")  # circuit open: not called
            try:
                resp = await clients[node_id].write(method, rec.name, sub)
            except Unavailable:
                self.cluster.mark_failed(node_id)
                raise
            metrics.ROWS_ROUTED.labels(node=node_id).inc(len(rows))  # rows the node accepted
            return resp

        node_ids = list(parts)
        results = await asyncio.gather(*(send(n, parts[n]) for n in node_ids), return_exceptions=True)
        acks = np.zeros(num_rows, dtype=np.int32)
        reasons: list[str] = []
        for nid, res in zip(node_ids, results):
            if isinstance(res, BaseException):
                msg = res.message if isinstance(res, ProxyError) else repr(res)
                reasons.append(f"node {nid} refused {len(parts[nid])} row(s): {msg}")
                if rec.replicas > 1 and isinstance(res, Unavailable):
                    # hinted handoff: the node gets these keys replayed when it answers again
                    await self.cluster.add_hints(nid, rec.name, [pks[i] for i in parts[nid]])
            else:
                acks[parts[nid]] += 1
        needed = min(rec.acks_needed, len(self.cluster.ring)) if rec.replicas > 1 else 1
        failed_rows = np.flatnonzero(acks < needed).tolist()
        ok_rows = np.flatnonzero(acks >= needed).tolist()
        out = milvus_pb2.MutationResult(
            IDs=fielddata.make_ids(pks, rec.pk_is_str),  # type: ignore[arg-type]
            succ_index=ok_rows,
            err_index=sorted(failed_rows),
        )
        if method == "Insert":
            out.insert_cnt = len(ok_rows)
        else:
            out.upsert_cnt = len(ok_rows)
        if failed_rows:
            first = next((r for r in results if isinstance(r, BaseException)), Unavailable("not enough replicas"))
            status = to_milvus_status(first)
            status.reason = (
                f"{method.lower()} partially failed: {len(failed_rows)} of {num_rows} row(s) not written"
                + (f" on {needed} of {rec.replicas} replicas ({rec.write_ack})" if rec.replicas > 1 else "")
                + " "
                f"(err_index lists them); " + "; ".join(reasons)
            )
            out.status.CopyFrom(status)
        else:
            out.status.CopyFrom(status_ok())
        return out

    @rpc(milvus_pb2.MutationResult)
    async def Insert(self, request: milvus_pb2.InsertRequest, context: Any) -> Any:
        return await self._write("Insert", request)

    @rpc(milvus_pb2.MutationResult)
    async def Upsert(self, request: milvus_pb2.UpsertRequest, context: Any) -> Any:
        return await self._write("Upsert", request)

    @rpc(milvus_pb2.MutationResult)
    async def Delete(self, request: milvus_pb2.DeleteRequest, context: Any) -> Any:
        rec = await self._collection(request)
        self._check_size(request)
        self.cluster.require_nodes()
        if not request.expr.strip():
            raise InvalidArgument("delete needs a filter expression or ids")
        validation.validate_filter(request.expr, rec.field_names, rec.dynamic)
        pks = validation.pk_list(request.expr, rec.pk_name, rec.pk_is_str)
        if pks is not None:
            if self.cluster.moving:
                # Tombstones first, then the delete: a row the migrator is copying cannot come back.
                await self.cluster.moves.touch(
                    rec.name,
                    pks if rec.replicas > 1 else routing.changed_owner(self.cluster.current_ring, self.cluster.ring, pks),
                    "d",
                )
            targets = {
                nid: milvus_pb2.DeleteRequest(
                    collection_name=rec.name, partition_name=request.partition_name, expr=expr
                )
                for nid, expr in self._owner_exprs(rec, pks).items()
            }
        else:
            if self.cluster.moving:
                # A filter delete during a move: find the matching keys first and write their
                # tombstones, so a row the migrator is copying cannot come back after the delete.
                matched = await self._matching_pks(rec, request.expr)
                await self.cluster.moves.touch(
                    rec.name,
                    matched if rec.replicas > 1
                    else routing.changed_owner(self.cluster.current_ring, self.cluster.ring, matched),
                    "d",
                )
            targets = {c.id: request for c in self.cluster.search_clients()}
        clients = {c.id: c for c in self.cluster.all_clients()}
        if rec.replicas > 1 and pks is not None:
            # A replica that is down gets the delete later (hinted handoff); the others now.
            for nid in [n for n in targets if not self.cluster.is_live(n)]:
                await self.cluster.add_hints(nid, rec.name, validation.pk_list(targets.pop(nid).expr, rec.pk_name, rec.pk_is_str) or [])
            raw = await asyncio.gather(*(clients[n].write("Delete", rec.name, targets[n]) for n in targets),
                                       return_exceptions=True)
            results = {}
            for nid, r in zip(targets, raw):
                if isinstance(r, Unavailable):
                    self.cluster.mark_failed(nid)
                    await self.cluster.add_hints(nid, rec.name, validation.pk_list(targets[nid].expr, rec.pk_name, rec.pk_is_str) or [])
                elif isinstance(r, BaseException):
                    raise r
                else:
                    results[nid] = r
            if not results:
                raise Unavailable("no replica of these keys answered; the delete is kept as hints and replayed")
        else:
            results = await fan_out(
                [clients[n] for n in targets], lambda c: c.write("Delete", rec.name, targets[c.id])
            )
        deleted = sum(r.delete_cnt for r in results.values())
        # Like Milvus 2.3.2+, report a count (not the deleted keys).
        if rec.replicas > 1 and pks is not None:
            deleted = len(set(pks))  # each key is deleted on R replicas
        return milvus_pb2.MutationResult(status=status_ok(), delete_cnt=deleted)

    async def _matching_pks(self, rec: CollectionRecord, expr: str) -> list[int | str]:
        """Primary keys matching a filter on every node that holds data (deduplicated)."""
        q = milvus_pb2.QueryRequest(collection_name=rec.name, expr=expr, output_fields=[rec.pk_name])
        results = await fan_out(self.cluster.search_clients(), lambda c: self._read(c, "Query", q))
        found: set[int | str] = set()
        for r in results.values():
            for fd in r.fields_data:
                if fd.field_name == rec.pk_name:
                    found.update(fielddata.column_values(fd))
        return sorted(found, key=str)

    def _owner_exprs(self, rec: CollectionRecord, pks: Sequence[int | str]) -> dict[str, str]:
        """One ``pk in [...]`` expression per node that may hold the keys, for deletes and gets by
        id: the owner (all R replicas when R > 1), and during a move also the keys' owners on the
        current ring (see :mod:`shardproxy.routing`)."""
        if not pks:
            return {}
        if rec.replicas > 1:
            parts: dict[str, Any] = {n: r.tolist() for n, r in routing.replica_split(self.cluster.ring, list(pks), rec.replicas).items()}
            if self.cluster.moving:
                for nid, rows in routing.replica_split(self.cluster.current_ring, list(pks), rec.replicas).items():
                    parts[nid] = sorted(set(parts.get(nid, [])) | set(rows.tolist()))
        elif self.cluster.moving:
            parts = routing.read_split(self.cluster.current_ring, self.cluster.ring, list(pks))
        else:
            parts = self.cluster.ring.split(list(pks))
        return {
            nid: pk_expr(rec.pk_name, [pks[i] for i in rows], rec.pk_is_str) for nid, rows in parts.items()
        }

    # ------------------------------------------------------------------ reads
    async def _gather_reads(self, rec: CollectionRecord, context: Any, method: str, reqs: dict[str, Any]) -> dict[str, Any]:
        """Send read requests to the nodes that are live; tolerate nodes that fail or are down
        as long as every shard still has a live replica. Otherwise the request's partial policy
        decides: fail UNAVAILABLE naming the missing shards (default), or, with request
        metadata ``x-shardproxy-partial: allow``, answer what the live nodes hold and say so in
        trailing metadata (``x-shardproxy-partial: true``, ``x-shardproxy-missing-shards``)."""
        clients = {c.id: c for c in self.cluster.all_clients()}
        down = {n for n in reqs if not self.cluster.is_live(n)}
        for nid in down:  # circuit open: not called, but the request went without it
            metrics.NODE_ERRORS.labels(node=nid, method=method).inc()
        live = [n for n in reqs if n not in down]
        async def one(nid: str) -> Any:
            # NodeClient.call records per-node latency, errors and timeouts
            return await self._read(clients[nid], method, reqs[nid])

        raw = await asyncio.gather(*(one(n) for n in live), return_exceptions=True)
        results: dict[str, Any] = {}
        failed: list[str] = []
        for nid, r in zip(live, raw):
            if isinstance(r, Unavailable):
                self.cluster.mark_failed(nid)
                failed.append(f"{nid}: {r.message}")
                down.add(nid)
            elif isinstance(r, BaseException):
                raise r
            else:
                results[nid] = r
        if down:
            # DOWN nodes stay on the ring: their keys count as missing unless replicas cover them
            missing = self.cluster.missing_shards(rec, down)
            # a joining/draining node down during a move: its rows may have no other copy
            missing += [n for n in down if n not in self.cluster.ring.node_ids and n not in self.cluster.current_ring.node_ids]
            if missing:
                allow = any(k == PARTIAL_KEY and v.lower() in ("allow", "true", "1")
                            for k, v in (context.invocation_metadata() or ()))
                if not allow:
                    raise Unavailable(
                        f"shard(s) unavailable, no live replica: {', '.join(missing)} (down: {', '.join(sorted(down))}); "
                        f"send request metadata '{PARTIAL_KEY}: allow' to accept partial results"
                        + (f"; {failed[0]}" if failed else "")
                    )
                metrics.PARTIAL_RESULTS.labels(method=method).inc()
                EXTRA_TRAILERS.get().extend(((PARTIAL_KEY, "true"), (MISSING_KEY, ",".join(missing))))
        return results

    @rpc(milvus_pb2.QueryResults)
    async def Query(self, request: milvus_pb2.QueryRequest, context: Any) -> Any:
        rec = await self._collection(request)
        self._check_size(request)
        self.cluster.require_nodes()
        output_fields = list(request.output_fields)
        validation.validate_output_fields(output_fields, rec.field_names, rec.dynamic)
        if request.expr:
            validation.validate_filter(request.expr, rec.field_names, rec.dynamic)
        params = _kv(request.query_params)
        has_limit = "limit" in params and params["limit"] != ""
        limit = _int_param(params, "limit", 0)
        offset = _int_param(params, "offset", 0)
        if has_limit:
            validation.validate_limit(limit, offset, self.settings.max_top_k)
        elif offset:
            raise InvalidArgument("offset requires a limit")
        elif not request.expr and "count(*)" not in output_fields:
            raise InvalidArgument("a query needs a filter expression or a limit")

        if "count(*)" in output_fields:
            if len(output_fields) > 1:
                raise InvalidArgument("count(*) cannot be combined with other output fields")
            nodes = [c.id for c in self.cluster.search_clients()]
            if rec.replicas > 1:
                # every row is stored R times: count distinct primary keys instead
                total = await self._count_distinct(rec, context, request.expr, nodes)
            else:
                results = await self._gather_reads(rec, context, "Query", {n: request for n in nodes})
                total = 0
                for r in results.values():
                    total += sum(fielddata.column_values(fd)[0] for fd in r.fields_data if fd.field_name == "count(*)")
            col = schema_pb2.FieldData(type=schema_pb2.DataType.Int64, field_name="count(*)")
            col.scalars.long_data.data.append(total)
            return milvus_pb2.QueryResults(
                status=status_ok(), fields_data=[col], collection_name=rec.name, output_fields=["count(*)"]
            )

        pks = validation.pk_list(request.expr, rec.pk_name, rec.pk_is_str) if request.expr else None
        sub = milvus_pb2.QueryRequest()
        sub.CopyFrom(request)
        if has_limit:
            _set_kv(sub.query_params, "limit", str(offset + limit))
            _set_kv(sub.query_params, "offset", None)
        if pks is not None:
            reqs: dict[str, Any] = {}
            for nid, expr in self._owner_exprs(rec, pks).items():
                q = milvus_pb2.QueryRequest()
                q.CopyFrom(sub)
                q.expr = expr
                reqs[nid] = q
        else:
            reqs = {c.id: sub for c in self.cluster.search_clients()}
        results = await self._gather_reads(rec, context, "Query", reqs)
        resps = list(results.values())
        merged = merge.merge_query_rows(
            [list(r.fields_data) for r in resps], rec.pk_name, offset if has_limit else 0, limit if has_limit else None
        )
        names = next((list(r.output_fields) for r in resps if r.output_fields), output_fields)
        return milvus_pb2.QueryResults(
            status=status_ok(), fields_data=merged, collection_name=rec.name,
            output_fields=names, primary_field_name=rec.pk_name,
        )

    async def _count_distinct(self, rec: CollectionRecord, context: Any, expr: str, nodes: list[str]) -> int:
        from shardproxy.migrator import scan_pks

        clients = {c.id: c for c in self.cluster.all_clients()}
        seen: set = set()
        down: set[str] = set()
        for nid in nodes:
            if not self.cluster.is_live(nid):
                down.add(nid)
                continue
            last = None
            try:
                while True:
                    pks = await scan_pks(clients[nid], rec, last, 16384, extra=expr)
                    seen.update(pks)
                    if len(pks) < 16384:
                        break
                    last = pks[-1]
            except Unavailable:
                self.cluster.mark_failed(nid)
                down.add(nid)
        if down:
            missing = self.cluster.missing_shards(rec, down)
            if missing:
                allow = any(k == PARTIAL_KEY and v.lower() in ("allow", "true", "1")
                            for k, v in (context.invocation_metadata() or ()))
                if not allow:
                    raise Unavailable(f"shard(s) unavailable, no live replica: {', '.join(missing)}")
                EXTRA_TRAILERS.get().extend(((PARTIAL_KEY, "true"), (MISSING_KEY, ",".join(missing))))
        return len(seen)

    @rpc(milvus_pb2.SearchResults)
    async def Search(self, request: milvus_pb2.SearchRequest, context: Any) -> Any:
        rec = await self._collection(request)
        self._check_size(request)
        self.cluster.require_nodes()
        if request.sub_reqs:
            raise Unimplemented("Search with sub-requests (hybrid search) is not implemented by shardproxy")
        if request.search_by_primary_keys:
            raise Unimplemented("Search by primary keys is not implemented by shardproxy")
        params = _kv(request.search_params)
        for key in ("group_by_field", "iterator", "search_iter_v2", "order_by_fields"):
            if params.get(key) not in (None, "", "false", "False"):
                raise Unimplemented(f"Search with {key} is not implemented by shardproxy")
        limit = _int_param(params, "topk", 10)
        offset = _int_param(params, "offset", 0)
        validation.validate_limit(limit, offset, self.settings.max_top_k)
        anns_field = params.get("anns_field") or rec.default_vector_field()
        if anns_field not in rec.vector_fields:
            raise InvalidArgument(f"vector field {anns_field!r} does not exist in collection {rec.name}")
        ph_type, vectors, nq = validation.query_vectors(request.placeholder_group)
        if nq > self.settings.max_nq:
            raise InvalidArgument(f"nq ({nq}) exceeds the limit of {self.settings.max_nq} query vectors")
        if vectors is not None:
            validation.validate_vectors(vectors, rec.dim(anns_field))
        if request.dsl:
            validation.validate_filter(request.dsl, rec.field_names, rec.dynamic)
        validation.validate_output_fields(request.output_fields, rec.field_names, rec.dynamic)
        metric = (params.get("metric_type") or "").strip('"').upper() or rec.metric(anns_field) or "L2"

        sub = milvus_pb2.SearchRequest()
        sub.CopyFrom(request)
        _set_kv(sub.search_params, "topk", str(offset + limit))
        _set_kv(sub.search_params, "offset", None)
        if request.nq == 0:
            sub.nq = nq

        clients = self.cluster.search_clients()
        start = time.perf_counter()

        with tracing.span("shardproxy.search.fan_out", collection=rec.name, nq=nq, nodes=len(clients)):
            results = await self._gather_reads(rec, context, "Search", {c.id: sub for c in clients})
        t_merge = time.perf_counter()
        merged = merge.merge_search_results(
            [r.results for r in results.values()], nq, metric, offset, limit, list(request.output_fields)
        )
        metrics.MERGE_SECONDS.observe(time.perf_counter() - t_merge)
        log.debug("search %s nq=%d k=%d over %d nodes in %.1f ms", rec.name, nq, limit, len(clients),
                  (time.perf_counter() - start) * 1000)
        return milvus_pb2.SearchResults(status=status_ok(), results=merged, collection_name=rec.name)


PARTIAL_KEY = "x-shardproxy-partial"
MISSING_KEY = "x-shardproxy-missing-shards"


def pk_expr(pk_name: str, values: Sequence[int | str], is_str: bool) -> str:
    if is_str:
        quoted = ",".join(json.dumps(str(v)) for v in values)
        return f"{pk_name} in [{quoted}]"
    return f"{pk_name} in [{','.join(str(int(v)) for v in values)}]"


def _unimplemented(name: str) -> Callable[..., Any]:
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metrics.RPCS.labels(method=name, code="UNIMPLEMENTED").inc()
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"shardproxy does not implement the Milvus RPC {name}"
        )

    handler.__name__ = name
    return handler


def _install_unimplemented() -> None:
    """Every MilvusService RPC the proxy does not implement answers UNIMPLEMENTED, naming itself."""
    service = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
    for name in service.methods_by_name:
        if name not in MilvusProxyServicer.__dict__ and name not in RbacHandlers.__dict__:
            setattr(MilvusProxyServicer, name, _unimplemented(name))


_install_unimplemented()
