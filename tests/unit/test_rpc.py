"""The RPC wrapper and the UNIMPLEMENTED installer, with a fake servicer context (no servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from pymilvus.grpc_gen import milvus_pb2

from shardproxy.coverage import Coverage
from shardproxy.errors import TRAILER_GRPC_STATUS, NodeUnimplemented, Unavailable, Unimplemented, status_ok
from shardproxy.logs import REQUEST_ID_HEADER
from shardproxy.rpc import Reply, implemented_rpcs, rpc
from shardproxy.servicer import MilvusProxyServicer


class FakeContext:
    def __init__(self, metadata: tuple = ()) -> None:
        self.metadata = metadata
        self.trailers: tuple = ()
        self.aborted: tuple | None = None

    def invocation_metadata(self) -> tuple:
        return self.metadata

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, md: tuple) -> None:
        self.trailers = md

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError("aborted")


class Handlers:
    @rpc(milvus_pb2.QueryResults)
    async def Query(self, request: Any, context: Any) -> Any:
        return Reply(milvus_pb2.QueryResults(status=status_ok()), Coverage(("node-2",)))

    @rpc(milvus_pb2.SearchResults)
    async def Search(self, request: Any, context: Any) -> Any:
        raise Unavailable("shard(s) unavailable")

    @rpc(None)
    async def Flush(self, request: Any, context: Any) -> Any:
        return status_ok()

    @rpc(milvus_pb2.SearchResults)
    async def HybridSearch(self, request: Any, context: Any) -> Any:
        raise Unimplemented("HybridSearch with group_by_field is not implemented by shardproxy")

    @rpc(None)
    async def DropIndex(self, request: Any, context: Any) -> Any:
        raise NodeUnimplemented("DropIndex is not implemented by node node-0")


def test_reply_coverage_becomes_trailers() -> None:
    ctx = FakeContext(((REQUEST_ID_HEADER, "rid-1"),))
    resp = asyncio.run(Handlers().Query(None, ctx))
    assert resp.status.code == 0
    assert dict(ctx.trailers) == {REQUEST_ID_HEADER: "rid-1", "x-shardproxy-partial": "true",
                                  "x-shardproxy-missing-shards": "node-2"}
    ctx = FakeContext()
    asyncio.run(Handlers().Flush(None, ctx))
    assert "x-shardproxy-partial" not in dict(ctx.trailers)


def test_errors_become_statuses_with_the_grpc_code_in_trailers() -> None:
    ctx = FakeContext()
    resp = asyncio.run(Handlers().Search(None, ctx))
    assert resp.status.code == 2 and resp.status.reason == "shard(s) unavailable"
    assert dict(ctx.trailers)[TRAILER_GRPC_STATUS] == "UNAVAILABLE"


def test_servicer_composes_the_mixins_and_answers_unimplemented_for_the_rest() -> None:
    done = set(implemented_rpcs(MilvusProxyServicer))
    assert {"Connect", "CreateCollection", "Insert", "Delete", "Query", "Search", "HybridSearch", "Flush", "CheckHealth"} <= done
    assert {"CreatePartition", "CreateDatabase", "CreateAlias", "AlterCollection"} <= done
    assert "CreateResourceGroup" not in done
    ctx = FakeContext()
    with pytest.raises(RuntimeError):
        asyncio.run(MilvusProxyServicer.CreateResourceGroup(None, None, ctx))  # type: ignore[arg-type]
    assert ctx.aborted == (grpc.StatusCode.UNIMPLEMENTED,
                           "shardproxy does not implement the Milvus RPC CreateResourceGroup")


def test_unimplemented_feature_is_a_milvus_status_a_node_lacking_the_rpc_a_grpc_status() -> None:
    ctx = FakeContext()
    resp = asyncio.run(Handlers().HybridSearch(None, ctx))
    assert ctx.aborted is None and resp.status.code == 10 and "group_by_field" in resp.status.reason
    ctx = FakeContext()
    with pytest.raises(RuntimeError):
        asyncio.run(Handlers().DropIndex(None, ctx))
    assert ctx.aborted == (grpc.StatusCode.UNIMPLEMENTED, "DropIndex is not implemented by node node-0")
