"""Databases: Create/Drop/List/Describe/AlterDatabase.

Every node holds the same databases (created on all of them, and on a node that joins or
restarts by :meth:`shardproxy.nodepool.NodeClient.sync`); the proxy's record in Redis
(:mod:`shardproxy.catalog`) is what List/Describe answer from.
"""

from __future__ import annotations

import logging
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from shardproxy import ddlrules
from shardproxy.catalog import DEFAULT_DB
from shardproxy.errors import AlreadyExists, InvalidArgument, NotFound, status_ok
from shardproxy.handlers.base import HandlerBase
from shardproxy.handlers.lookup import DatabaseNotFound, kv
from shardproxy.nodepool import NodeClient
from shardproxy.rpc import rpc

log = logging.getLogger(__name__)


def _ts(created_at: float) -> int:
    """A Milvus hybrid timestamp (physical ms << 18) for a creation time."""
    return int(created_at * 1000) << 18


class DatabaseHandlers(HandlerBase):
    @rpc(None)
    async def CreateDatabase(self, request: milvus_pb2.CreateDatabaseRequest, context: Any) -> Any:
        ddlrules.validate_database_name(request.db_name)
        if await self.cluster.store.catalog.has_database(request.db_name):
            await self._native_error(request, AlreadyExists(f"database already exist: {request.db_name}"))
        props = kv(request.properties)

        async def ensure(c: NodeClient) -> None:
            have = await c.call("ListDatabases", milvus_pb2.ListDatabasesRequest())
            if request.db_name not in have.db_names:
                await c.call("CreateDatabase", request)

        await self._broadcast("CreateDatabase", ensure)
        await self.cluster.store.catalog.create_database(request.db_name, props)
        self.cluster.catalog.invalidate("database", request.db_name)
        log.info("database %s created", request.db_name)
        return status_ok()

    @rpc(None)
    async def DropDatabase(self, request: milvus_pb2.DropDatabaseRequest, context: Any) -> Any:
        db = request.db_name
        if db == DEFAULT_DB:
            await self._native_error(request, InvalidArgument("can not drop default database"))
        if not await self.cluster.store.catalog.has_database(db):
            await self._native_error(request, DatabaseNotFound(db))
        if await self.cluster.store.collection_names(db):
            await self._native_error(request, InvalidArgument(
                f"can not drop database {db} that still has collections"))

        async def ensure(c: NodeClient) -> None:
            have = await c.call("ListDatabases", milvus_pb2.ListDatabasesRequest())
            if db in have.db_names:
                await c.call("DropDatabase", request)

        await self._broadcast("DropDatabase", ensure)
        await self.cluster.store.catalog.drop_database(db)
        self.cluster.catalog.invalidate("database", db)
        log.info("database %s dropped", db)
        return status_ok()

    @rpc(milvus_pb2.ListDatabasesResponse)
    async def ListDatabases(self, request: milvus_pb2.ListDatabasesRequest, context: Any) -> Any:
        dbs = await self.cluster.store.catalog.databases()
        names = sorted(dbs)  # milvus-lite and Milvus list them by name
        return milvus_pb2.ListDatabasesResponse(
            status=status_ok(), db_names=names,
            created_timestamp=[_ts(dbs[n].get("created_at", 0.0)) for n in names],
            db_ids=[int(dbs[n].get("id", 1)) for n in names],
        )

    @rpc(milvus_pb2.DescribeDatabaseResponse)
    async def DescribeDatabase(self, request: milvus_pb2.DescribeDatabaseRequest, context: Any) -> Any:
        db = request.db_name or DEFAULT_DB
        rec = await self.cluster.store.catalog.database(db)
        if rec is None:
            await self._native_error(request, DatabaseNotFound(db))
            raise DatabaseNotFound(db)  # for the type checker; _native_error always raises
        return milvus_pb2.DescribeDatabaseResponse(
            status=status_ok(), db_name=db, dbID=int(rec.get("id", 1)),
            created_timestamp=_ts(rec.get("created_at", 0.0)),
            properties=[common_pb2.KeyValuePair(key=k, value=v) for k, v in rec.get("properties", {}).items()],
        )

    @rpc(None)
    async def AlterDatabase(self, request: milvus_pb2.AlterDatabaseRequest, context: Any) -> Any:
        db = request.db_name or DEFAULT_DB
        if request.properties and request.delete_keys:
            raise InvalidArgument("cannot provide both properties and delete_keys")
        if not await self.cluster.store.catalog.has_database(db):
            await self._native_error(request, DatabaseNotFound(db))
        await self._broadcast("AlterDatabase", request)
        try:
            await self.cluster.store.catalog.alter_database(db, kv(request.properties), list(request.delete_keys))
        except NotFound as exc:
            raise DatabaseNotFound(db) from exc
        self.cluster.catalog.invalidate("database", db)
        return status_ok()
