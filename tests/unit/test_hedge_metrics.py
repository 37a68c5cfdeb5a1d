"""The hedging metrics a dashboard panel shows (``shardproxy_hedged_requests_total``,
``shardproxy_hedge_wins_total``) move when the executor hedges a slow replica and the hedge answers
first: the executor over an in-memory node double (the real-process SIGSTOP test drives the same
path against frozen Milvus nodes)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY
from pymilvus.grpc_gen import milvus_pb2

from shardproxy.scatter import Scatter
from tests.unit.test_scatter import FakeCluster, FakeNode


class SlowNode(FakeNode):
    def __init__(self, nid: str, delay_s: float) -> None:
        super().__init__(nid)
        self.delay_s = delay_s
        self.asked = 0

    async def call(self, method: str, request: Any) -> Any:
        self.asked += 1
        await asyncio.sleep(self.delay_s)
        return await super().call(method, request)


def value(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"method": "Search"}) or 0.0


def test_a_hedge_that_answers_first_is_counted_as_a_win() -> None:
    cl = FakeCluster()
    cl.rec.replicas = 2
    cl.nodes["n1"] = SlowNode("n1", 2.0)  # a hung replica: every read that asks it first must hedge
    cl.settings.hedge_min_s = cl.settings.hedge_max_s = 0.02
    hedged0, wins0 = value("shardproxy_hedged_requests_total"), value("shardproxy_hedge_wins_total")
    reqs = {n: milvus_pb2.SearchRequest(collection_name="c") for n in cl.nodes}

    async def reads() -> list[Any]:
        return [await Scatter(cl).read(cl.rec, "Search", reqs, allow_partial=False, fanout=True) for _ in range(6)]

    got = asyncio.run(asyncio.wait_for(reads(), 5.0))  # never waits for the hung replica
    assert all(not g.coverage.partial for g in got)
    slow = cl.nodes["n1"]
    assert isinstance(slow, SlowNode)
    asked_slow_first = slow.asked
    assert asked_slow_first >= 1  # the rotation put the slow replica in the first set at least once
    assert value("shardproxy_hedged_requests_total") - hedged0 >= asked_slow_first
    assert value("shardproxy_hedge_wins_total") - wins0 == asked_slow_first
    assert all("n1" not in g.results for g in got)
