"""Request ids, node-call metrics and fan-out spans, over real gRPC: a small Milvus-protocol server
(grpc.aio, in this process) records the metadata it receives; NodeClient calls it as it calls a
Milvus node. Also the log formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from shardproxy import logs, tracing
from shardproxy.scatter import fan_out
from shardproxy.errors import Unavailable
from shardproxy.metastore import NodeRecord
from shardproxy.nodepool import NodeClient


class RecordingNode(milvus_pb2_grpc.MilvusServiceServicer):
    """Answers GetVersion at once and Search after ``search_delay_s``; records request ids."""

    def __init__(self, search_delay_s: float = 0.0) -> None:
        self.search_delay_s = search_delay_s
        self.seen: list[tuple[str, str | None]] = []

    def _record(self, method: str, context: grpc.aio.ServicerContext) -> None:
        md = dict(context.invocation_metadata() or ())
        self.seen.append((method, md.get("x-request-id")))

    async def GetVersion(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("GetVersion", context)
        return milvus_pb2.GetVersionResponse(status=common_pb2.Status(), version="recording-node")

    async def Search(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record("Search", context)
        await asyncio.sleep(self.search_delay_s)
        return milvus_pb2.SearchResults(status=common_pb2.Status())


async def _with_nodes(delays: dict[str, float], body: Any) -> Any:
    servers, nodes, clients = [], {}, []
    try:
        for node_id, delay in delays.items():
            server = grpc.aio.server()
            node = RecordingNode(delay)
            milvus_pb2_grpc.add_MilvusServiceServicer_to_server(node, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            servers.append(server)
            nodes[node_id] = node
            clients.append(NodeClient(NodeRecord(node_id, f"127.0.0.1:{port}"), timeout_s=5.0, write_concurrency=1))
        return await body(nodes, clients)
    finally:
        for c in clients:
            await c.close()
        for s in servers:
            await s.stop(0)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_request_id_reaches_every_node_of_a_fan_out() -> None:
    async def body(nodes: dict[str, RecordingNode], clients: list[NodeClient]) -> None:
        token = logs.REQUEST_ID.set("rid-fanout-1")
        try:
            await fan_out(clients, lambda c: c.call("Search", milvus_pb2.SearchRequest()))
        finally:
            logs.REQUEST_ID.reset(token)
        await clients[0].call("GetVersion", milvus_pb2.GetVersionRequest())  # outside a request: no id
        assert nodes["rid-a"].seen == [("Search", "rid-fanout-1"), ("GetVersion", None)]
        assert nodes["rid-b"].seen == [("Search", "rid-fanout-1")]

    asyncio.run(_with_nodes({"rid-a": 0.0, "rid-b": 0.0}, body))


def test_node_latency_errors_and_timeouts_per_node() -> None:
    async def body(nodes: dict[str, RecordingNode], clients: list[NodeClient]) -> None:
        fast, slow = clients
        before = {k: sample(k, node="tmo-slow", method="Search")
                  for k in ("shardproxy_node_timeouts_total", "shardproxy_node_errors_total")}
        with pytest.raises(Unavailable, match="DEADLINE_EXCEEDED"):
            await slow.call("Search", milvus_pb2.SearchRequest(), timeout=0.2)
        await fast.call("Search", milvus_pb2.SearchRequest())
        assert sample("shardproxy_node_timeouts_total", node="tmo-slow", method="Search") == \
            before["shardproxy_node_timeouts_total"] + 1
        assert sample("shardproxy_node_errors_total", node="tmo-slow", method="Search") == \
            before["shardproxy_node_errors_total"] + 1
        assert sample("shardproxy_node_timeouts_total", node="tmo-fast", method="Search") == 0
        assert sample("shardproxy_node_call_duration_seconds_count", node="tmo-fast", method="Search") == 1
        assert sample("shardproxy_node_call_duration_seconds_count", node="tmo-slow", method="Search") == 1

    asyncio.run(_with_nodes({"tmo-fast": 0.0, "tmo-slow": 2.0}, body))


def test_fan_out_spans_when_tracing_is_on() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    assert tracing.setup(True, "shardproxy-test", exporter=exporter)

    async def body(nodes: dict[str, RecordingNode], clients: list[NodeClient]) -> None:
        token = logs.REQUEST_ID.set("rid-trace-1")
        try:
            with tracing.span("shardproxy.search.fan_out", nodes=len(clients)):
                await fan_out(clients, lambda c: c.call("Search", milvus_pb2.SearchRequest()))
        finally:
            logs.REQUEST_ID.reset(token)

    try:
        asyncio.run(_with_nodes({"tr-a": 0.0, "tr-b": 0.0, "tr-c": 0.0}, body))
    finally:
        tracing.shutdown()
    spans = exporter.get_finished_spans()
    (parent,) = [s for s in spans if s.name == "shardproxy.search.fan_out"]
    children = [s for s in spans if s.name == "shardproxy.node.call"]
    assert sorted(s.attributes["node"] for s in children) == ["tr-a", "tr-b", "tr-c"]
    assert all(s.parent is not None and s.parent.span_id == parent.context.span_id for s in children)
    assert parent.attributes["request_id"] == "rid-trace-1"
    assert not tracing.enabled()
    with tracing.span("off") as sp:  # off again: a no-op
        assert sp is None


def test_request_id_from_metadata() -> None:
    assert logs.request_id_from([("x-request-id", "abc-123")]) == "abc-123"
    fresh = logs.request_id_from([("x-request-id", "bad id with spaces\n")])
    assert fresh != "bad id with spaces\n" and len(fresh) == 16
    assert logs.request_id_from([("x-request-id", "x" * 65)]) != "x" * 65
    assert logs.request_id_from(None) != logs.request_id_from(None)


def _log_line(json_lines: bool, rid: str) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RequestIdFilter())
    handler.setFormatter(logs.JsonFormatter() if json_lines else logging.Formatter(logs.READABLE_FORMAT))
    logger = logging.getLogger("ops.test.format")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    token = logs.REQUEST_ID.set(rid)
    try:
        logger.info("node %s stopped answering", "node-1", extra={"node": "node-1"})
    finally:
        logs.REQUEST_ID.reset(token)
        logger.removeHandler(handler)
    return stream.getvalue().strip()


def test_log_formats_carry_the_request_id() -> None:
    rec = json.loads(_log_line(True, "rid-log-1"))
    assert rec["request_id"] == "rid-log-1" and rec["node"] == "node-1" and rec["level"] == "info"
    assert rec["msg"] == "node node-1 stopped answering" and rec["ts"].endswith("Z")
    assert "request_id" not in json.loads(_log_line(True, ""))
    assert "[rid-log-2] node node-1 stopped answering" in _log_line(False, "rid-log-2")
    assert "[" not in _log_line(False, "")
