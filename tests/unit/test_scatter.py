"""The executor over an in-memory node double (beside, never instead of, the real-process tests):
circuits open on Unavailable for DDL, reads and writes alike; the partial policy; re-sync and
retry after "not loaded"; hinted handoff; the ack tally and err_index of a write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from shardproxy.acks import tally
from shardproxy.config import ProxySettings
from shardproxy.hedging import HedgeBudget
from shardproxy.latency import LatencyTracker
from shardproxy.errors import DeadlineBeforeSend, DeadlineExceeded, InvalidArgument, NodeError, Unavailable
from shardproxy.hints import UNDO
from shardproxy.placement import Placement
from shardproxy.ring import Ring, RingNode
from shardproxy.scatter import MILVUS_CODE_NOT_LOADED, Scatter, unknown_outcome


class FakeNode:
    """A NodeClient double: answers ``ok:<id>``, or raises what ``fail`` says for a method."""

    def __init__(self, nid: str) -> None:
        self.id = nid
        self.address = f"fake:{nid}"
        self.synced = True
        self.fail: dict[str, BaseException] = {}
        self.not_loaded_once = False
        self.calls: list[str] = []

    async def call(self, method: str, request: Any) -> Any:
        self.calls.append(method)
        if self.not_loaded_once:
            self.not_loaded_once = False
            raise NodeError(self.id, common_pb2.Status(code=MILVUS_CODE_NOT_LOADED, reason="collection not loaded"))
        if method in self.fail:
            raise self.fail[method]
        return f"ok:{self.id}"

    async def write(self, method: str, collection: str, request: Any) -> Any:
        return await self.call(method, request)


class FakeCluster:
    def __init__(self, n: int = 3, moving: bool = False) -> None:
        self.nodes = {f"n{i}": FakeNode(f"n{i}") for i in range(n)}
        r = Ring([RingNode(nid) for nid in self.nodes])
        self.layout = Placement.steady(r)
        self.failed: list[str] = []
        self.down: set[str] = set()
        self.hints: dict[str, list[Any]] = {}
        self.events: list[tuple[str, str, str, tuple[Any, ...]]] = []  # hints and node writes, in order
        self.synced: list[str] = []
        self.rec = SimpleNamespace(name="c", db="default", key="c", replicas=1, loaded=True)
        self.settings = ProxySettings()
        self.hedge_budget = HedgeBudget()
        self.latency = LatencyTracker()

    def client(self, node_id: str) -> FakeNode:
        return self.nodes[node_id]

    def is_live(self, node_id: str) -> bool:
        return node_id not in self.down and node_id not in self.failed

    def has_hints(self, node_id: str) -> bool:
        return False

    def mark_failed(self, node_id: str) -> None:
        self.failed.append(node_id)

    def placement(self, rec: Any) -> Placement:
        return self.layout.with_replicas(rec.replicas)

    async def collection(self, name: str, db: str = "default") -> Any:
        return self.rec

    async def sync_nodes(self, clients: Iterable[FakeNode]) -> None:
        for c in clients:
            self.synced.append(c.id)
            c.synced = True

    async def add_hints(self, node_id: str, collection: str, pks: Iterable[Any], standin: str = "",
                        again: bool = False, in_flight: bool = False) -> bool:
        pks = list(pks)
        if not again:
            self.hints.setdefault(node_id, []).extend(pks)
        self.events.append(("hint-in-flight" if in_flight else "hint", node_id, standin, tuple(pks)))
        return True

    async def touch_hints(self, collection: str, by_node: dict[str, list[Any]]) -> None:
        for node, pks in by_node.items():
            self.events.append(("touch", node, "", tuple(pks)))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def cl() -> FakeCluster:
    return FakeCluster()


def test_ddl_failure_opens_the_circuit(cl: FakeCluster) -> None:
    cl.nodes["n1"].fail["CreateIndex"] = Unavailable("connection refused")
    with pytest.raises(Unavailable, match=r"node\(s\) unavailable: n1 \(fake:n1\); connection refused"):
        run(Scatter(cl).call_all("CreateIndex", milvus_pb2.CreateIndexRequest(), cl.nodes.values()))
    assert cl.failed == ["n1"]


def test_ddl_node_error_propagates_without_opening_the_circuit(cl: FakeCluster) -> None:
    cl.nodes["n2"].fail["DropIndex"] = InvalidArgument("no such index")
    with pytest.raises(InvalidArgument):
        run(Scatter(cl).call_all("DropIndex", None, cl.nodes.values()))
    assert cl.failed == []
    assert run(Scatter(cl).call_all("Flush", None, cl.nodes.values())) == {n: f"ok:{n}" for n in cl.nodes}


def test_read_failure_opens_the_circuit_and_fails_without_partial(cl: FakeCluster) -> None:
    cl.nodes["n0"].fail["Search"] = Unavailable("timed out")
    reqs = {n: milvus_pb2.SearchRequest(collection_name="c") for n in cl.nodes}
    with pytest.raises(Unavailable, match="no live replica: n0") as exc:
        run(Scatter(cl).read(cl.rec, "Search", reqs, allow_partial=False))
    assert "n0: timed out" in exc.value.message
    assert cl.failed == ["n0"]


def test_read_partial_when_allowed(cl: FakeCluster) -> None:
    cl.down.add("n2")  # circuit open: not called at all
    reqs = {n: milvus_pb2.SearchRequest(collection_name="c") for n in cl.nodes}
    got = run(Scatter(cl).read(cl.rec, "Search", reqs, allow_partial=True))
    assert got.results == {"n0": "ok:n0", "n1": "ok:n1"}
    assert got.coverage.missing == ("n2",) and got.coverage.partial
    assert "Search" not in cl.nodes["n2"].calls


def test_read_with_replicas_tolerates_one_down_node(cl: FakeCluster) -> None:
    cl.rec.replicas = 2
    cl.nodes["n1"].fail["Query"] = Unavailable("gone")
    got = run(Scatter(cl).read(cl.rec, "Query", {n: milvus_pb2.QueryRequest(collection_name="c") for n in cl.nodes},
                               allow_partial=False))
    assert not got.coverage.partial and set(got.results) == {"n0", "n2"}
    assert cl.failed == ["n1"]


def test_read_resyncs_and_retries_after_not_loaded(cl: FakeCluster) -> None:
    cl.nodes["n1"].not_loaded_once = True
    reqs = {n: milvus_pb2.QueryRequest(collection_name="c") for n in cl.nodes}
    got = run(Scatter(cl).read(cl.rec, "Query", reqs, allow_partial=False))
    assert got.results["n1"] == "ok:n1"
    assert cl.synced == ["n1"] and cl.nodes["n1"].calls == ["Query", "Query"]
    # a collection recorded as released: the node's answer stands
    cl.rec.loaded = False
    cl.nodes["n1"].not_loaded_once = True
    with pytest.raises(NodeError):
        run(Scatter(cl).read(cl.rec, "Query", reqs, allow_partial=True))


def test_write_failure_opens_the_circuit_and_tally_reports_err_index(cl: FakeCluster) -> None:
    parts = {"n0": [0, 3], "n1": [1], "n2": [2, 4]}
    cl.nodes["n1"].fail["Insert"] = Unavailable("refused")
    results = run(Scatter(cl).write(cl.rec, "Insert", {n: None for n in parts},
                                    {n: [f"k{i}" for i in r] for n, r in parts.items()}))
    assert isinstance(results["n1"], Unavailable) and set(cl.failed) == {"n1"}
    acked = {n for n, r in results.items() if not isinstance(r, BaseException)}
    t = tally(5, parts, acked, 1)
    assert t.err_rows == [1] and t.ok_rows == [0, 2, 3, 4]
    # no replicas to replay from; the insert may still land on n1: recorded for undo there
    assert cl.hints == {"n1": ["k1"]} and ("hint", "n1", UNDO, ("k1",)) in cl.events


def test_r1_insert_with_unknown_outcome_is_undone_before_the_node_serves_again(cl: FakeCluster) -> None:
    # issue 16: with R = 1 an insert to a hung node failed at the deadline and still landed when
    # the node resumed. Its rows are recorded for undo and the node's circuit opened, so the
    # node is not called again (no retry can land before the undo ran).
    parts = {"n0": [0], "n1": [1, 2], "n2": [3]}
    keys = {n: [f"k{i}" for i in r] for n, r in parts.items()}
    cl.nodes["n1"].fail["Insert"] = DeadlineExceeded("no answer in time")
    cl.nodes["n2"].fail["Insert"] = NodeError("n2", common_pb2.Status(code=1100, reason="bad row"))
    results = run(Scatter(cl).write(cl.rec, "Insert", {n: None for n in parts}, keys))
    assert unknown_outcome(results["n1"]) and not unknown_outcome(results["n2"])  # n2 refused it
    assert cl.hints == {"n1": ["k1", "k2"]} and not cl.is_live("n1")
    # the retry is not sent to n1 while the undo is pending (not called: nothing to undo)
    cl.nodes["n1"].calls.clear()
    results = run(Scatter(cl).write(cl.rec, "Insert", {n: None for n in parts}, keys))
    assert cl.nodes["n1"].calls == [] and isinstance(results["n1"], Unavailable)
    assert not unknown_outcome(results["n1"]) and cl.hints == {"n1": ["k1", "k2"]}
    # an upsert is not undone (the reply says its rows may land; retrying it is idempotent)
    cl.failed.clear()
    cl.nodes["n1"].fail["Upsert"] = DeadlineExceeded("no answer in time")
    run(Scatter(cl).write(cl.rec, "Upsert", {n: None for n in parts}, keys))
    assert cl.hints == {"n1": ["k1", "k2"]}
    # the caller had no time left: nothing was sent, nothing to undo, the node stays in
    cl.nodes["n0"].fail["Insert"] = DeadlineBeforeSend("the caller's deadline expired before it was sent")
    run(Scatter(cl).write(cl.rec, "Insert", {n: None for n in parts}, keys))
    assert "n0" not in cl.hints and cl.is_live("n0")


def test_replicated_write_skips_open_circuits_and_records_hints(cl: FakeCluster) -> None:
    cl.rec.replicas = 2
    cl.down.add("n0")
    cl.nodes["n2"].fail["Delete"] = Unavailable("refused")
    keys = {"n0": [1, 2], "n1": [2, 3], "n2": [1, 3]}
    results = run(Scatter(cl).write(cl.rec, "Delete", {n: None for n in keys}, keys))
    assert "Delete" not in cl.nodes["n0"].calls
    assert isinstance(results["n0"], Unavailable) and isinstance(results["n2"], Unavailable)
    assert results["n1"] == "ok:n1"
    assert cl.hints == {"n0": [1, 2], "n2": [1, 3]}
    assert cl.failed == ["n2"]


def test_first_answer_marks_unreachable_nodes(cl: FakeCluster) -> None:
    cl.nodes["n0"].fail["DescribeCollection"] = Unavailable("refused")
    cl.nodes["n1"].fail["DescribeCollection"] = NodeError("n1", common_pb2.Status(code=100, reason="nope"))
    assert run(Scatter(cl).first(cl.nodes.values(), "DescribeCollection", None)) == "ok:n2"
    assert cl.failed == ["n0"]
    cl.nodes["n2"].fail["DescribeCollection"] = Unavailable("refused")
    assert run(Scatter(cl).first(cl.nodes.values(), "DescribeCollection", None)) is None
