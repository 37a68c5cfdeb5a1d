"""Check as a person would: run a dev cluster, send traffic through the proxy with pymilvus, scrape
/metrics over HTTP and check the series moved as they should."""

from __future__ import annotations

import json
import time
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from devkit.devcluster import DevCluster

ROWS = 300
DIM = 8


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == want for k, want in labels.items()))


def by_label(samples: dict, name: str, label: str, **labels: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, lab), v in samples.items():
        d = dict(lab)
        if n == name and all(d.get(k) == want for k, want in labels.items()):
            out[d[label]] = out.get(d[label], 0.0) + v
    return out


@pytest.fixture(scope="module")
def traffic(ops_cluster: tuple[DevCluster, int]):  # type: ignore[no-untyped-def]
    """Scrape, send inserts and searches, scrape again."""
    cluster, port = ops_cluster
    before = scrape(port)
    client = cluster.client()
    client.create_collection("ops_metrics", dimension=DIM, metric_type="L2", auto_id=False)
    rng = np.random.default_rng(7)
    vecs = rng.random((ROWS, DIM), dtype=np.float32)
    inserts = 3
    for b in range(inserts):
        rows = [{"id": i, "vector": vecs[i].tolist()} for i in range(b * 100, (b + 1) * 100)]
        res = client.insert("ops_metrics", rows)
        assert res["insert_count"] == 100
    searches = 5
    for i in range(searches):
        hits = client.search("ops_metrics", data=[vecs[i].tolist()], limit=3)
        assert hits[0][0]["id"] == i
    client.close()
    after = scrape(port)
    return before, after, inserts, searches


def test_rpc_counts_moved(traffic) -> None:  # type: ignore[no-untyped-def]
    before, after, inserts, searches = traffic
    for method, n in (("Insert", inserts), ("Search", searches)):
        delta = total(after, "shardproxy_rpcs_total", method=method, code="OK") - total(
            before, "shardproxy_rpcs_total", method=method, code="OK")
        assert delta == n, method
        count = total(after, "shardproxy_rpc_duration_seconds_count", method=method) - total(
            before, "shardproxy_rpc_duration_seconds_count", method=method)
        assert count == n, method


def test_rows_routed_sum_to_rows_inserted(traffic, ops_cluster) -> None:  # type: ignore[no-untyped-def]
    before, after, _, _ = traffic
    cluster, _ = ops_cluster
    routed = by_label(after, "shardproxy_rows_routed_total", "node")
    prior = by_label(before, "shardproxy_rows_routed_total", "node")
    delta = {n: v - prior.get(n, 0.0) for n, v in routed.items()}
    assert sum(delta.values()) == ROWS
    # 300 keys over 2 nodes: both get a share, and the labels are the node ids, nothing else
    assert set(delta) == {p.name for p in cluster.milvus}
    assert all(v > 0 for v in delta.values())


def test_node_latency_per_node(traffic, ops_cluster) -> None:  # type: ignore[no-untyped-def]
    before, after, inserts, searches = traffic
    cluster, _ = ops_cluster
    counts = by_label(after, "shardproxy_node_call_duration_seconds_count", "node", method="Search")
    prior = by_label(before, "shardproxy_node_call_duration_seconds_count", "node", method="Search")
    for node in (p.name for p in cluster.milvus):
        assert counts.get(node, 0) - prior.get(node, 0) == searches, node
    writes = by_label(after, "shardproxy_node_call_duration_seconds_count", "node", method="Insert")
    assert sum(writes.values()) >= inserts
    assert total(after, "shardproxy_merge_duration_seconds_count") - total(
        before, "shardproxy_merge_duration_seconds_count") == searches
    assert total(after, "shardproxy_node_errors_total") == total(before, "shardproxy_node_errors_total")


def test_cluster_view(traffic, ops_cluster) -> None:  # type: ignore[no-untyped-def]
    _, after, _, _ = traffic
    cluster, _ = ops_cluster
    assert total(after, "shardproxy_ring_epoch") >= 1
    states = by_label(after, "shardproxy_nodes", "state")
    assert states["active"] == 2
    assert set(states) >= {"active", "joining", "draining", "drained", "down", "spare"}
    assert total(after, "shardproxy_replication_factor") == 1
    up = by_label(after, "shardproxy_node_up", "node")
    assert up == {p.name: 1.0 for p in cluster.milvus}


def test_node_down_shows(traffic, ops_cluster) -> None:  # type: ignore[no-untyped-def]
    """Kill one node: within a few health checks node_up drops to 0 and searches count errors."""
    cluster, port = ops_cluster
    victim = cluster.milvus[-1]
    victim.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        up = by_label(scrape(port), "shardproxy_node_up", "node")
        if up.get(victim.name) == 0.0:
            break
        time.sleep(0.5)
    assert up[victim.name] == 0.0
    assert up[cluster.milvus[0].name] == 1.0
    before = scrape(port)
    client = cluster.client()
    with pytest.raises(Exception):  # noqa: B017 - the proxy answers with an error status
        client.search("ops_metrics", data=[[0.1] * DIM], limit=3)
    rows = [{"id": 10_000 + i, "vector": [0.5] * DIM} for i in range(100)]
    with pytest.raises(Exception, match="partially failed"):  # noqa: B017
        client.insert("ops_metrics", rows)
    client.close()
    after = scrape(port)
    # rows_routed_total counts rows a node accepted: the dead node's share is not counted
    routed_before = by_label(before, "shardproxy_rows_routed_total", "node")
    routed_after = by_label(after, "shardproxy_rows_routed_total", "node")
    assert routed_after[victim.name] == routed_before[victim.name]
    live = cluster.milvus[0].name
    assert 0 < routed_after[live] - routed_before[live] < 100
    assert total(after, "shardproxy_node_errors_total", node=victim.name, method="Search") > total(
        before, "shardproxy_node_errors_total", node=victim.name, method="Search")
    failed = {k: v for (n, lab), v in after.items() if n == "shardproxy_rpcs_total"
              for k in [dict(lab)["code"]] if dict(lab)["method"] == "Search"}
    assert any(code != "OK" and v >= 1 for code, v in failed.items())


def test_request_id_round_trip_and_logged(ops_cluster) -> None:  # type: ignore[no-untyped-def]
    """A caller's x-request-id comes back in the trailing metadata, a fresh one is made when absent,
    and JSON log lines written while serving carry it."""
    cluster, _ = ops_cluster
    with cluster.channel() as ch:
        stub = milvus_pb2_grpc.MilvusServiceStub(ch)
        _, call = stub.DescribeCollection.with_call(
            milvus_pb2.DescribeCollectionRequest(collection_name="no_such_collection"),
            metadata=(("x-request-id", "ops-test-rid-42"),), timeout=10,
        )
        trailing = dict(call.trailing_metadata())
        assert trailing["x-request-id"] == "ops-test-rid-42"
        _, call = stub.GetVersion.with_call(milvus_pb2.GetVersionRequest(), timeout=10)
        fresh = dict(call.trailing_metadata())["x-request-id"]
        assert fresh and fresh != "ops-test-rid-42"
    lines = [json.loads(line) for line in cluster.proxy.log_path.read_text().splitlines()
             if line.startswith("{")]
    assert lines, "the proxy writes JSON log lines when SHARDPROXY_LOG_JSON=true"
    assert all({"ts", "level", "logger", "msg"} <= set(rec) for rec in lines)
    tagged = [rec for rec in lines if rec.get("request_id") == "ops-test-rid-42"]
    assert tagged, "the failed DescribeCollection was logged (debug) with the caller's request id"


def test_healthcheck_against_the_running_proxy(ops_cluster) -> None:  # type: ignore[no-untyped-def]
    """What the compose health checks run: SERVING proxy -> 0; /metrics over HTTP -> 0."""
    from shardproxy import healthcheck

    cluster, port = ops_cluster
    assert healthcheck.main(["--grpc", cluster.proxy_address]) == 0
    assert healthcheck.main(["--http", f"http://127.0.0.1:{port}/metrics"]) == 0
