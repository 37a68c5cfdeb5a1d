"""The proxy's service credential towards the Milvus nodes: a gRPC server standing in for a node
(it only records the metadata of the calls it gets) sees ``authorization`` exactly as pymilvus
would send it, and nothing when no credential is configured (milvus-lite has no auth)."""

from __future__ import annotations

import asyncio
import base64

import grpc
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from shardproxy.auth import nodecreds
from shardproxy.metastore import NodeRecord
from shardproxy.nodepool import NodeClient


class Recorder(milvus_pb2_grpc.MilvusServiceServicer):
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def ShowCollections(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self.seen.append({k: v for k, v in context.invocation_metadata()})
        return milvus_pb2.ShowCollectionsResponse()


async def _call_with(token: str) -> dict[str, str]:
    rec = Recorder()
    server = grpc.aio.server()
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(rec, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        nodecreds.configure(nodecreds.NodeAccess(token=token))
        client = NodeClient(NodeRecord(id="n0", address=f"127.0.0.1:{port}"), timeout_s=10, write_concurrency=1)
        await client.call("ShowCollections", milvus_pb2.ShowCollectionsRequest())
        await client.channel.close()
    finally:
        nodecreds.configure(nodecreds.NodeAccess())
        await server.stop(0)
    return rec.seen[0]


def test_node_calls_carry_the_service_credential() -> None:
    md = asyncio.run(_call_with("proxysvc:node-secret"))
    assert md["authorization"] == base64.b64encode(b"proxysvc:node-secret").decode()


def test_no_credential_no_header() -> None:
    md = asyncio.run(_call_with(""))
    assert "authorization" not in md
