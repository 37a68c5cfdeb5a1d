"""Connections to the Milvus nodes: one grpc.aio channel per node, typed calls with deadlines,
per-(node, collection) write limits, and bringing a (re)connected node to the recorded state."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from shardproxy import deadline, logs, metrics, tracing
from shardproxy.auth.nodecreds import node_channel
from shardproxy.errors import DeadlineExceeded, NodeError, NodeUnimplemented, Unavailable, is_ok
from shardproxy.latency import LatencyTracker
from shardproxy.metastore import CollectionRecord, MetaStore, NodeRecord

log = logging.getLogger(__name__)

_MAX_MSG = 512 * 1024 * 1024
T = TypeVar("T")


def _status_of(resp: Any) -> common_pb2.Status:
    if isinstance(resp, common_pb2.Status):
        return resp
    return resp.status


class NodeClient:
    """One Milvus node."""

    def __init__(self, record: NodeRecord, timeout_s: float, write_concurrency: int,
                 latency: LatencyTracker | None = None) -> None:
        self.record = record
        self.latency = latency
        self.timeout_s = timeout_s
        self.write_concurrency = write_concurrency
        self.channel = node_channel(
            record.address,
            [
                ("grpc.max_send_message_length", _MAX_MSG),
                ("grpc.max_receive_message_length", _MAX_MSG),
                # reconnect fast when a node comes back (default backoff grows to 120 s: a restarted
                # node stayed unreachable for many seconds after it listened again)
                ("grpc.initial_reconnect_backoff_ms", 500),
                ("grpc.max_reconnect_backoff_ms", 3_000),
            ],
        )
        self.stub = milvus_pb2_grpc.MilvusServiceStub(self.channel)
        self._write_locks: dict[str, asyncio.Semaphore] = {}
        self.synced = False  # True once the node holds every recorded collection in its state

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def address(self) -> str:
        return self.record.address

    def write_slot(self, collection: str) -> asyncio.Semaphore:
        sem = self._write_locks.get(collection)
        if sem is None:
            sem = self._write_locks[collection] = asyncio.Semaphore(self.write_concurrency)
        return sem

    async def call(self, method: str, request: Any, *, timeout: float | None = None, check: bool = True) -> Any:
        """Call one RPC; transport failures become :class:`Unavailable` naming the node, and
        (with ``check``) a Milvus error status becomes :class:`NodeError`.

        The call's deadline is the caller's remaining time (see :mod:`shardproxy.deadline`) when
        that is shorter than ``timeout`` (default: the per-node deadline); running out of the
        caller's time raises :class:`DeadlineExceeded`, which is not held against the node.
        Cancelling the awaiting task cancels the call on the node."""
        fn: Callable[..., Awaitable[Any]] = getattr(self.stub, method)
        limit, by_caller = deadline.node_timeout(timeout or self.timeout_s, f"{method} on node {self.id}")
        t0 = time.perf_counter()
        try:
            with tracing.span("shardproxy.node.call", node=self.id, method=method):
                resp = await fn(request, timeout=limit, metadata=logs.request_metadata())
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and by_caller:
                raise DeadlineExceeded(
                    f"the caller's deadline expired while waiting for node {self.id} ({self.address}) during {method}"
                ) from exc
            metrics.NODE_ERRORS.labels(node=self.id, method=method).inc()
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # the node is up; it lacks this RPC
                raise NodeUnimplemented(exc.details() or f"{method} is not implemented by node {self.id}") from exc
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                metrics.NODE_TIMEOUTS.labels(node=self.id, method=method).inc()
            raise Unavailable(
                f"node {self.id} ({self.address}) failed during {method}: {exc.code().name}: {exc.details()}"
            ) from exc
        finally:
            metrics.NODE_LATENCY.labels(node=self.id, method=method).observe(time.perf_counter() - t0)
        if self.latency is not None:  # answered calls only: a timeout says nothing about the node's speed
            self.latency.observe(self.id, method, time.perf_counter() - t0)
        if check:
            st = _status_of(resp)
            if not is_ok(st):
                metrics.NODE_ERRORS.labels(node=self.id, method=method).inc()
                raise NodeError(self.id, st)
        return resp

    async def write(self, method: str, collection: str, request: Any) -> Any:
        async with self.write_slot(collection):
            return await self.call(method, request)

    async def close(self) -> None:
        await self.channel.close()

    # -- bringing a node to the recorded state
    async def sync(self, records: Iterable[CollectionRecord], catalog: "CatalogState | None" = None) -> list[str]:
        """Create missing databases, collections, partitions, indexes and aliases, re-apply
        altered properties, and load what should be loaded. Idempotent. Returns what it did,
        for the log."""
        done: list[str] = []
        records = list(records)
        if catalog is not None:
            have_dbs = set((await self.call("ListDatabases", milvus_pb2.ListDatabasesRequest())).db_names)
            for db, props in catalog.databases.items():
                if db not in have_dbs:
                    await self.call("CreateDatabase", milvus_pb2.CreateDatabaseRequest(
                        db_name=db, properties=[common_pb2.KeyValuePair(key=k, value=v) for k, v in props.items()]))
                    done.append(f"created database {db}")
        for rec in records:
            await self._sync_collection(rec, done)
        if catalog is not None:
            for db, aliases in catalog.aliases.items():
                if not aliases:
                    continue
                have = await self.call("ListAliases", milvus_pb2.ListAliasesRequest(db_name=db))
                for alias, target in aliases.items():
                    if alias not in have.aliases:
                        await self.call("CreateAlias", milvus_pb2.CreateAliasRequest(
                            db_name=db, alias=alias, collection_name=target))
                        done.append(f"aliased {db}.{alias} -> {target}")
        self.synced = True
        return done

    async def _sync_collection(self, rec: CollectionRecord, done: list[str]) -> None:
        db = rec.db
        has = await self.call("HasCollection", milvus_pb2.HasCollectionRequest(db_name=db, collection_name=rec.name))
        if not has.value:
            await self.call("CreateCollection", rec.node_create)
            done.append(f"created {rec.key}")
            if rec.props is not None:
                await self.call("AlterCollection", milvus_pb2.AlterCollectionRequest(
                    db_name=db, collection_name=rec.name,
                    properties=[common_pb2.KeyValuePair(key=k, value=v) for k, v in rec.props.items()]))
        if rec.partitions:
            shown = await self.call("ShowPartitions", milvus_pb2.ShowPartitionsRequest(db_name=db, collection_name=rec.name))
            for name in rec.partitions:
                if name not in shown.partition_names:
                    await self.call("CreatePartition", milvus_pb2.CreatePartitionRequest(
                        db_name=db, collection_name=rec.name, partition_name=name))
                    done.append(f"partition {rec.key}.{name}")
        if rec.indexes:
            desc = await self.call(
                "DescribeIndex", milvus_pb2.DescribeIndexRequest(db_name=db, collection_name=rec.name), check=False
            )
            have = {d.field_name for d in desc.index_descriptions} if is_ok(desc.status) else set()
            for field_name, req in rec.indexes.items():
                if field_name not in have:
                    await self.call("CreateIndex", _addressed(req, rec))
                    done.append(f"indexed {rec.key}.{field_name}")
        if rec.loaded or rec.loaded_partitions:
            st = await self.call(
                "GetLoadState", milvus_pb2.GetLoadStateRequest(db_name=db, collection_name=rec.name)
            )
            if st.state != common_pb2.LoadState.LoadStateLoaded:
                if rec.loaded:
                    await self.call("LoadCollection", _addressed(
                        rec.load or milvus_pb2.LoadCollectionRequest(collection_name=rec.name), rec))
                else:
                    await self.call("LoadPartitions", milvus_pb2.LoadPartitionsRequest(
                        db_name=db, collection_name=rec.name, partition_names=rec.loaded_partitions))
                done.append(f"loaded {rec.key}")

    async def healthy(self, timeout: float = 2.0) -> bool:
        """A probe: does the node answer a cheap RPC within ``timeout``? (A hung process accepts
        connections but answers nothing, so only a short deadline tells.)"""
        try:
            with deadline.caller_deadline(None):
                await self.call("GetVersion", milvus_pb2.GetVersionRequest(), timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False


def _addressed(req: Any, rec: CollectionRecord) -> Any:
    """A recorded request addressed to the collection as it is now: its database (records from
    before databases have no db_name) and its current name (it may have been renamed)."""
    if req.db_name == rec.db and req.collection_name == rec.name:
        return req
    out = type(req)()
    out.CopyFrom(req)
    out.db_name = rec.db
    out.collection_name = rec.name
    return out


@dataclass
class CatalogState:
    """The recorded databases (name -> properties) and aliases (db -> alias -> collection)
    that a node is brought to, besides the collections."""

    databases: dict[str, dict[str, str]] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    async def load(cls, store: "MetaStore") -> "CatalogState":
        dbs = await store.catalog.databases()
        out = cls()
        for name, rec in dbs.items():
            if name != "default":
                out.databases[name] = dict(rec.get("properties", {}))
            out.aliases[name] = await store.catalog.aliases(name)
        return out


class NodePool:
    """The set of node clients, rebuilt incrementally when the registry changes."""

    def __init__(self, timeout_s: float, write_concurrency: int) -> None:
        self.timeout_s = timeout_s
        self.write_concurrency = write_concurrency
        self.clients: dict[str, NodeClient] = {}
        self.latency = LatencyTracker()  # per (node, method), for hedging

    def update(self, records: Iterable[NodeRecord]) -> list[NodeClient]:
        """Apply the registry; returns the clients that are new (need a sync)."""
        wanted = {r.id: r for r in records}
        new: list[NodeClient] = []
        for nid in list(self.clients):
            if nid not in wanted or self.clients[nid].address != wanted[nid].address:
                client = self.clients.pop(nid)
                asyncio.ensure_future(client.close())
        for nid, rec in wanted.items():
            if nid in self.clients:
                self.clients[nid].record = rec
            else:
                self.clients[nid] = NodeClient(rec, self.timeout_s, self.write_concurrency, self.latency)
                new.append(self.clients[nid])
        return new

    def get(self, node_id: str) -> NodeClient:
        return self.clients[node_id]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)
        self.clients.clear()
