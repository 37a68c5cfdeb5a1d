"""Catalog lookups shared by every handler: the effective database, aliases, the collection
record, and errors worded the way the nodes word them.

Where the proxy's catalog (Redis) already knows a request must fail (a database, alias or
partition that does not exist or already exists), the same request is sent to one live node,
which holds the same catalog, so the caller gets that backend's own code and message (milvus-lite
and Milvus word these differently). Only if that node unexpectedly accepts does the proxy answer
with its own Milvus-style error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from shardproxy.catalog import DEFAULT_DB, collection_key
from shardproxy.cluster import Cluster
from shardproxy.errors import CollectionNotFound, NodeError, ProxyError, Unavailable
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.resolve import effective_db, method_of
from shardproxy.scatter import Scatter

log = logging.getLogger(__name__)


class DatabaseNotFound(ProxyError):
    """Milvus's ``ErrDatabaseNotFound`` (code 800)."""

    milvus_code = 800

    def __init__(self, db: str) -> None:
        import grpc

        super().__init__(f"database not found[database={db}]")
        self.grpc_code = grpc.StatusCode.NOT_FOUND


def kv(pairs: Sequence[common_pb2.KeyValuePair]) -> dict[str, str]:
    return {p.key: p.value for p in pairs}


class CatalogLookup:
    """Mixin of :class:`shardproxy.handlers.base.HandlerBase`: needs ``self.cluster`` and
    ``self.scatter``."""

    cluster: Cluster
    scatter: Scatter

    def _db(self, request: Any, context: Any) -> str:
        """The effective database; written into the request for the nodes."""
        db = effective_db(request, context.invocation_metadata() if context is not None else None)
        if hasattr(request, "db_name"):
            request.db_name = db
        return db

    async def _require_db(self, request: Any, context: Any) -> str:
        db = self._db(request, context)
        if not await self.cluster.catalog.has_database(db):
            await self._native_error(request, DatabaseNotFound(db))
        return db

    async def _resolve(self, request: Any, context: Any) -> CollectionRecord:
        """The collection a request names (through an alias when it is one), in the effective
        database; the request is rewritten to name the collection itself."""
        db = await self._require_db(request, context)
        rec = await self._record(db, await self.cluster.catalog.resolve(db, request.collection_name))
        request.collection_name = rec.name
        return rec

    async def _record(self, db: str, name: str) -> CollectionRecord:
        """The record of ``db``.``name``; a missing one fails with the nodes' own wording (asked
        with a harmless DescribeCollection, never with the request itself)."""
        try:
            return await self.cluster.collection(name, db)
        except CollectionNotFound as exc:
            await self._native_error(milvus_pb2.DescribeCollectionRequest(db_name=db, collection_name=name), exc)
            raise

    async def _native_error(self, request: Any, fallback: ProxyError, method: str | None = None,
                            quiet: bool = False) -> None:
        """Raise the error one live node gives for ``request`` (see the module docstring)."""
        method = method or method_of(request)
        clients = self.cluster.ring_clients()
        # live nodes first; a node whose circuit is open (slow health checks) may still answer
        for client in sorted(clients, key=lambda c: not self.cluster.is_live(c.id)):
            try:
                await client.call(method, request)
            except NodeError:
                raise
            except Unavailable:
                continue
            if not quiet:
                log.warning("node %s accepted %s that the catalog refuses; answering %s",
                            client.id, method, fallback.message)
            break
        raise fallback

    async def _broadcast(self, method: str, request: Any | Callable[[NodeClient], Awaitable[Any]],
                         clients: Sequence[NodeClient] | None = None) -> dict[str, Any]:
        """One DDL call on every node (all nodes, not only the ring: a joining node gets it too)."""
        self.cluster.require_nodes()
        clients = self.cluster.all_clients() if clients is None else clients
        call = request if callable(request) else (lambda c: c.call(method, request))
        return await self.scatter.each(clients, call)

    def _forget(self, rec: CollectionRecord) -> None:
        self.cluster.forget(rec.key)

    @staticmethod
    def _key(db: str, name: str) -> str:
        return collection_key(db or DEFAULT_DB, name)

