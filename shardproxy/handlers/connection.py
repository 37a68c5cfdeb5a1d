"""Connection RPCs: Connect, GetVersion, AllocTimestamp, CheckHealth."""

from __future__ import annotations

import time
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from shardproxy.errors import status_ok
from shardproxy.handlers.base import HandlerBase
from shardproxy.rpc import rpc

VERSION = "0.1.0"


class ConnectionHandlers(HandlerBase):
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
