"""What every handler mixin shares: the cluster, the executor and request checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shardproxy.cluster import Cluster
from shardproxy.config import ProxySettings
from shardproxy.coverage import partial_allowed
from shardproxy.errors import InvalidArgument
from shardproxy.handlers.lookup import CatalogLookup
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.scatter import Scatter


class HandlerBase(CatalogLookup):
    cluster: Cluster
    settings: ProxySettings
    scatter: Scatter

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.settings = cluster.settings
        self.scatter = Scatter(cluster)

    def _check_size(self, request: Any) -> None:
        size = request.ByteSize()
        if size > self.settings.max_request_bytes:
            raise InvalidArgument(
                f"request of {size} bytes exceeds the proxy's limit of {self.settings.max_request_bytes} bytes; "
                "send smaller batches"
            )

    async def _collection(self, request: Any) -> CollectionRecord:
        """The collection a request names, in its effective database (``db_name``, else the
        ``dbname`` header, else ``default``), an alias resolved to its collection; the request
        is rewritten for the nodes (see :mod:`shardproxy.resolve`)."""
        return await self._resolve(request, None)

    @staticmethod
    def _allow_partial(context: Any) -> bool:
        """The request's partial-result policy (metadata ``x-shardproxy-partial: allow``)."""
        return partial_allowed(context.invocation_metadata())

    async def _all(self, method: str, request: Any, clients: Sequence[NodeClient] | None = None) -> dict[str, Any]:
        """``method`` on every node that holds data (or on ``clients``); all must answer."""
        self.cluster.require_nodes()
        clients = self.cluster.search_clients() if clients is None else clients
        return await self.scatter.call_all(method, request, clients)
