"""Aliases: Create/Alter/Drop/Describe/ListAliases, resolved in the proxy's catalog.

Redis (``{p}:aliases:{db}``) is what requests are resolved with: switching an alias is one
``HSET``, and every proxy drops its cached aliases on the ``alias {db}`` notice, so all readers
move to the new collection together (blue/green re-index). The nodes get the same aliases
(so their own checks and messages answer conflicts), but no read depends on a node's alias.
"""

from __future__ import annotations

import logging
from typing import Any

from pymilvus.grpc_gen import milvus_pb2

from shardproxy import ddlrules
from shardproxy.errors import AlreadyExists, InvalidArgument, NotFound, status_ok
from shardproxy.handlers.base import HandlerBase
from shardproxy.nodepool import NodeClient
from shardproxy.rpc import rpc

log = logging.getLogger(__name__)


class AliasHandlers(HandlerBase):
    async def _alias_target(self, request: Any, context: Any) -> tuple[str, str]:
        """(db, collection) for Create/AlterAlias: the collection must exist (not an alias)."""
        db = await self._require_db(request, context)
        ddlrules.validate_alias(request.alias)
        if await self.cluster.store.collection(self._key(db, request.collection_name)) is None:
            await self._native_error(request, NotFound(
                f"collection not found[database={db}][collection={request.collection_name}]"))
        return db, request.collection_name

    @rpc(None)
    async def CreateAlias(self, request: milvus_pb2.CreateAliasRequest, context: Any) -> Any:
        db, target = await self._alias_target(request, context)
        aliases = await self.cluster.store.catalog.aliases(db)
        if request.alias in aliases or request.alias in await self.cluster.store.collection_names(db):
            await self._native_error(request, AlreadyExists(
                f"alias exists and already aliased to another collection, alias: {request.alias}, "
                f"collection: {aliases.get(request.alias, request.alias)}, other collection: {target}"))

        async def ensure(c: NodeClient) -> None:
            have = await c.call("ListAliases", milvus_pb2.ListAliasesRequest(db_name=db))
            if request.alias in have.aliases:
                await c.call("AlterAlias", milvus_pb2.AlterAliasRequest(
                    db_name=db, alias=request.alias, collection_name=target))
            else:
                await c.call("CreateAlias", request)

        await self._broadcast("CreateAlias", ensure)
        await self.cluster.store.catalog.set_alias(db, request.alias, target, create=True)
        self.cluster.catalog.invalidate("alias", db)
        return status_ok()

    @rpc(None)
    async def AlterAlias(self, request: milvus_pb2.AlterAliasRequest, context: Any) -> Any:
        db, target = await self._alias_target(request, context)
        aliases = await self.cluster.store.catalog.aliases(db)
        if request.alias not in aliases:
            await self._native_error(request, NotFound(f"alias not found[database={db}][alias={request.alias}]"))

        async def ensure(c: NodeClient) -> None:
            have = await c.call("ListAliases", milvus_pb2.ListAliasesRequest(db_name=db))
            if request.alias in have.aliases:
                await c.call("AlterAlias", request)
            else:
                await c.call("CreateAlias", milvus_pb2.CreateAliasRequest(
                    db_name=db, alias=request.alias, collection_name=target))

        await self._broadcast("AlterAlias", ensure)
        # The switch every reader sees: one HSET in Redis, then the notice to every proxy.
        await self.cluster.store.catalog.set_alias(db, request.alias, target, create=False)
        self.cluster.catalog.invalidate("alias", db)
        log.info("alias %s.%s now points at %s (was %s)", db, request.alias, target, aliases.get(request.alias))
        return status_ok()

    @rpc(None)
    async def DropAlias(self, request: milvus_pb2.DropAliasRequest, context: Any) -> Any:
        db = await self._require_db(request, context)
        if not request.alias:
            raise InvalidArgument("alias name should not be empty")
        if request.alias not in await self.cluster.store.catalog.aliases(db):
            # Milvus and milvus-lite accept dropping an alias that does not exist; let a node say so.
            await self._native_ok(request)
            return status_ok()

        async def ensure(c: NodeClient) -> None:
            have = await c.call("ListAliases", milvus_pb2.ListAliasesRequest(db_name=db))
            if request.alias in have.aliases:
                await c.call("DropAlias", request)

        await self._broadcast("DropAlias", ensure)
        await self.cluster.store.catalog.drop_alias(db, request.alias)
        self.cluster.catalog.invalidate("alias", db)
        return status_ok()

    @rpc(milvus_pb2.DescribeAliasResponse)
    async def DescribeAlias(self, request: milvus_pb2.DescribeAliasRequest, context: Any) -> Any:
        db = await self._require_db(request, context)
        target = (await self.cluster.store.catalog.aliases(db)).get(request.alias)
        if target is None:
            await self._native_error(request, NotFound(f"alias not found[database={db}][alias={request.alias}]"))
        return milvus_pb2.DescribeAliasResponse(status=status_ok(), db_name=db, alias=request.alias, collection=target)

    @rpc(milvus_pb2.ListAliasesResponse)
    async def ListAliases(self, request: milvus_pb2.ListAliasesRequest, context: Any) -> Any:
        db = await self._require_db(request, context)
        aliases = await self.cluster.store.catalog.aliases(db)
        names = sorted(aliases)
        if request.collection_name:
            target = aliases.get(request.collection_name, request.collection_name)
            if await self.cluster.store.collection(self._key(db, target)) is None:
                await self._native_error(request, NotFound(f"collection not found[collection={request.collection_name}]"))
            names = sorted(a for a, t in aliases.items() if t == target)
        return milvus_pb2.ListAliasesResponse(
            status=status_ok(), db_name=db, collection_name=request.collection_name, aliases=names
        )

    async def _native_ok(self, request: Any) -> None:
        """A request the catalog says changes nothing: still let one node check it (so a
        backend that refuses it refuses it here too)."""
        try:
            await self._native_error(request, AlreadyExists("unused"), quiet=True)
        except AlreadyExists:
            return
