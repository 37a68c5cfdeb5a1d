"""The proxy through an unmodified pymilvus.MilvusClient, over a real 3-node cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymilvus import MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc
from shopbyimage.v1 import admin_pb2

from shardproxy.ring import ring_from_weights
from tests.conftest import node_clients
from tests.helpers import brute_force, make_collection, make_rows

DIM = 16


@pytest.fixture(scope="module")
def flat_data(proxy_client: MilvusClient) -> dict[str, list[dict]]:
    """One FLAT collection per metric, 3000 rows each, inserted through the proxy."""
    data = {}
    for metric in ("L2", "IP", "COSINE"):
        name = f"flat_{metric.lower()}"
        make_collection(proxy_client, name, DIM, metric=metric, index="FLAT")
        rows = make_rows(3000, DIM, seed=hash(metric) % 1000)
        for i in range(0, len(rows), 1000):
            proxy_client.insert(name, rows[i : i + 1000])
        data[metric] = rows
    return data


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
def test_flat_search_equals_numpy_brute_force(proxy_client: MilvusClient, flat_data: dict, metric: str) -> None:
    rows = flat_data[metric]
    name = f"flat_{metric.lower()}"
    queries = np.random.default_rng(7).standard_normal((5, DIM)).astype(np.float32)
    res = proxy_client.search(name, queries.tolist(), limit=10)
    expected = brute_force(rows, queries, metric, 10)
    assert len(res) == 5
    for hits, exp in zip(res, expected):
        assert [h["id"] for h in hits] == [e[0] for e in exp]
        np.testing.assert_allclose([h["distance"] for h in hits], [e[1] for e in exp], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["L2", "COSINE"])
def test_search_with_filter_output_fields_and_offset(proxy_client: MilvusClient, flat_data: dict, metric: str) -> None:
    rows = flat_data[metric]
    name = f"flat_{metric.lower()}"
    by_id = {r["id"]: r for r in rows}
    queries = np.random.default_rng(11).standard_normal((3, DIM)).astype(np.float32)
    res = proxy_client.search(
        name, queries.tolist(), limit=7, offset=5, filter='color == "red" and price < 60',
        output_fields=["color", "price"],
    )
    expected = brute_force(rows, queries, metric, 7, offset=5, where=lambda r: r["color"] == "red" and r["price"] < 60)
    for hits, exp in zip(res, expected):
        assert [h["id"] for h in hits] == [e[0] for e in exp]
        for h in hits:
            assert h["entity"]["color"] == "red" == by_id[h["id"]]["color"]
            assert h["entity"]["price"] == by_id[h["id"]]["price"]


def test_search_returns_vectors_as_output_field(proxy_client: MilvusClient, flat_data: dict) -> None:
    rows = flat_data["L2"]
    q = np.array(rows[123]["vector"], dtype=np.float32)
    hits = proxy_client.search("flat_l2", [q.tolist()], limit=3, output_fields=["vector"])[0]
    assert hits[0]["id"] == 123
    np.testing.assert_allclose(hits[0]["entity"]["vector"], rows[123]["vector"], rtol=1e-6)


def test_rows_spread_over_nodes_and_live_on_their_owner(dev_cluster, proxy_client: MilvusClient) -> None:  # type: ignore[no-untyped-def]
    name = "spread"
    make_collection(proxy_client, name, 8, metric="L2", index="FLAT")
    total = 30_000
    for start in range(0, total, 5000):
        proxy_client.insert(name, make_rows(5000, 8, seed=start, start=start))
    assert proxy_client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] == total
    assert proxy_client.get_collection_stats(name)["row_count"] == total
    ring = ring_from_weights({p.name: 1 for p in dev_cluster.milvus})
    counts = {}
    for node_id, client in node_clients(dev_cluster).items():
        ids = [r["id"] for r in client.query(name, filter="id >= 0", output_fields=["id"])]
        counts[node_id] = len(ids)
        owners = Counter(ring.owners(ids))
        assert set(owners) <= {node_id}, f"{node_id} holds rows owned by {owners}"
        client.close()
    assert sum(counts.values()) == total
    for node_id, n in counts.items():
        assert 0.25 <= n / total <= 0.42, counts


def test_upsert_replaces_delete_removes_get_returns(proxy_client: MilvusClient) -> None:
    name = "crud"
    make_collection(proxy_client, name, DIM, metric="L2", index="FLAT")
    rows = make_rows(500, DIM, seed=3)
    proxy_client.insert(name, rows)
    got = proxy_client.get(name, ids=[0, 17, 499], output_fields=["color", "price"])
    assert sorted(r["id"] for r in got) == [0, 17, 499]
    # upsert replaces
    new = make_rows(3, DIM, seed=99)
    for r, i in zip(new, [0, 17, 499]):
        r["id"], r["color"], r["price"] = i, "white", 1234.0
    proxy_client.upsert(name, new)
    got = proxy_client.get(name, ids=[0, 17, 499], output_fields=["color", "price", "vector"])
    assert {r["id"]: (r["color"], r["price"]) for r in got} == {i: ("white", 1234.0) for i in (0, 17, 499)}
    for r in got:
        exp = next(n for n in new if n["id"] == r["id"])
        np.testing.assert_allclose(r["vector"], exp["vector"], rtol=1e-6)
    assert proxy_client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] == 500
    # delete by ids
    res = proxy_client.delete(name, ids=[1, 2, 3])
    assert res["delete_count"] == 3
    assert proxy_client.get(name, ids=[1, 2, 3]) == []
    # delete by filter
    n_black = sum(1 for r in rows if r["color"] == "black" and r["id"] not in (1, 2, 3, 0, 17, 499))
    res = proxy_client.delete(name, filter='color == "black"')
    assert res["delete_count"] == n_black
    left = proxy_client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]
    assert left == 500 - 3 - n_black
    assert proxy_client.query(name, filter='color == "black"', output_fields=["id"]) == []


def test_query_pagination_is_exact(proxy_client: MilvusClient) -> None:
    name = "pages"
    make_collection(proxy_client, name, 4, metric="L2", index="FLAT")
    proxy_client.insert(name, make_rows(300, 4, seed=5))
    seen = []
    for offset in range(0, 300, 70):
        page = proxy_client.query(name, filter="price >= 0", output_fields=["id"], limit=70, offset=offset)
        seen.extend(r["id"] for r in page)
    assert seen == list(range(300))
    it = proxy_client.query_iterator(name, batch_size=64, filter="id >= 0", output_fields=["id"])
    via_iter = []
    while True:
        batch = it.next()
        if not batch:
            break
        via_iter.extend(r["id"] for r in batch)
    it.close()
    assert sorted(via_iter) == list(range(300))


def test_auto_id_assigned_by_proxy_and_routed(dev_cluster, proxy_client: MilvusClient) -> None:  # type: ignore[no-untyped-def]
    name = "autoid"
    make_collection(proxy_client, name, DIM, metric="L2", index="FLAT", auto_id=True)
    assert proxy_client.describe_collection(name)["auto_id"] is True
    res = proxy_client.insert(name, make_rows(900, DIM, seed=8, with_id=False))
    ids = list(res["ids"])
    assert len(ids) == len(set(ids)) == 900
    got = proxy_client.get(name, ids=ids[:5], output_fields=["color"])
    assert sorted(r["id"] for r in got) == sorted(ids[:5])
    per_node = [c.get_collection_stats(name)["row_count"] for c in node_clients(dev_cluster).values()]
    assert sum(per_node) == 900 and min(per_node) > 0


def test_varchar_primary_keys(proxy_client: MilvusClient) -> None:
    name = "strpk"
    make_collection(proxy_client, name, 4, metric="IP", index="FLAT", varchar_pk=True)
    rows = make_rows(200, 4, seed=9)
    for r in rows:
        r["id"] = f"sku-{r['id']:04d}"
    proxy_client.insert(name, rows)
    got = proxy_client.get(name, ids=["sku-0007", "sku-0150"])
    assert sorted(r["id"] for r in got) == ["sku-0007", "sku-0150"]
    assert proxy_client.delete(name, ids=["sku-0007"])["delete_count"] == 1
    hits = proxy_client.search(name, [rows[150]["vector"]], limit=200)[0]
    assert "sku-0007" not in {h["id"] for h in hits}
    assert len(hits) == 199


def test_ddl_reaches_every_node(dev_cluster, proxy_client: MilvusClient) -> None:  # type: ignore[no-untyped-def]
    name = "ddl"
    make_collection(proxy_client, name, DIM, metric="IP", index="HNSW")
    clients = node_clients(dev_cluster)
    for node_id, c in clients.items():
        assert c.has_collection(name), node_id
        assert c.list_indexes(name) == ["vector"]
        assert c.describe_index(name, "vector")["metric_type"] == "IP"
        assert str(c.get_load_state(name)["state"]) == "Loaded"
    assert name in proxy_client.list_collections()
    proxy_client.release_collection(name)
    for c in clients.values():
        assert str(c.get_load_state(name)["state"]) == "NotLoad"
    proxy_client.load_collection(name)
    assert str(proxy_client.get_load_state(name)["state"]) == "Loaded"
    proxy_client.drop_collection(name)
    for c in clients.values():
        assert not c.has_collection(name)
        c.close()
    assert not proxy_client.has_collection(name)


def _raw_stub(dev_cluster) -> milvus_pb2_grpc.MilvusServiceStub:  # type: ignore[no-untyped-def]
    return milvus_pb2_grpc.MilvusServiceStub(dev_cluster.channel())


class TestBadInput:
    name = "badinput"

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def coll(cls, proxy_client: MilvusClient) -> None:
        make_collection(proxy_client, cls.name, DIM, metric="L2", index="FLAT")
        proxy_client.insert(cls.name, make_rows(50, DIM, seed=1))

    def test_wrong_dimension_search(self, proxy_client: MilvusClient) -> None:
        with pytest.raises(MilvusException, match="dimension 15"):
            proxy_client.search(self.name, [[0.1] * 15], limit=3)

    def test_wrong_dimension_insert(self, proxy_client: MilvusClient) -> None:
        with pytest.raises(MilvusException, match="dim"):
            proxy_client.insert(self.name, [{"id": 10_000, "vector": [0.1] * 17, "color": "red", "price": 1.0}])

    def test_nan_and_inf(self, proxy_client: MilvusClient) -> None:
        v = [0.0] * DIM
        v[3] = float("nan")
        with pytest.raises(MilvusException, match="NaN"):
            proxy_client.search(self.name, [v], limit=3)
        v[3] = float("inf")
        with pytest.raises(MilvusException, match="NaN or infinite"):
            proxy_client.insert(self.name, [{"id": 10_001, "vector": v, "color": "red", "price": 1.0}])
        assert proxy_client.get(self.name, ids=[10_001]) == []  # nothing half-written

    @pytest.mark.parametrize("limit", [0, 16385, 100_000])
    def test_limit_out_of_range(self, proxy_client: MilvusClient, limit: int) -> None:
        with pytest.raises(MilvusException, match=r"out of range \[1, 16384\]|limit|topk"):
            proxy_client.search(self.name, [[0.1] * DIM], limit=limit)

    def test_unknown_collection(self, proxy_client: MilvusClient) -> None:
        # worded by the nodes (milvus-lite: "collection 'x' does not exist"; Milvus: "collection not found[...]")
        with pytest.raises(MilvusException, match="collection not found|does not exist") as ei:
            proxy_client.search("no_such_collection", [[0.1] * DIM], limit=3)
        assert ei.value.code == 100
        with pytest.raises(MilvusException, match="collection not found|does not exist"):
            proxy_client.query("no_such_collection", filter="id > 0")

    def test_unknown_field(self, proxy_client: MilvusClient) -> None:
        with pytest.raises(MilvusException, match="'weight' does not exist"):
            proxy_client.search(self.name, [[0.1] * DIM], limit=3, output_fields=["weight"])
        with pytest.raises(MilvusException, match="'weight' does not exist"):
            proxy_client.query(self.name, filter="weight > 3")

    @pytest.mark.parametrize("expr", ["price > ", "price > 10)", "color == 'a' ; drop", "exec('x')"])
    def test_malformed_filter(self, proxy_client: MilvusClient, expr: str) -> None:
        with pytest.raises(MilvusException, match="invalid filter expression"):
            proxy_client.search(self.name, [[0.1] * DIM], limit=3, filter=expr)

    def test_request_over_size_limit(self, proxy_client: MilvusClient) -> None:
        # ~10 MB on the wire, over the 8 MiB limit the test cluster is configured with
        big = [{"id": 50_000 + i, "vector": [0.5] * DIM, "color": "x" * 16, "price": 1.0} for i in range(120_000)]
        with pytest.raises(MilvusException, match="exceeds the proxy's limit"):
            proxy_client.insert(self.name, big)
        assert proxy_client.get(self.name, ids=[50_000]) == []

    def test_raw_status_codes_and_trailer(self, dev_cluster) -> None:  # type: ignore[no-untyped-def]
        stub = _raw_stub(dev_cluster)
        resp, call = stub.Query.with_call(
            milvus_pb2.QueryRequest(collection_name=self.name, expr="price >>> 1", output_fields=["id"])
        )
        assert resp.status.code == 1100 and "invalid filter expression" in resp.status.reason
        assert ("x-shardproxy-grpc-status", "INVALID_ARGUMENT") in tuple(call.trailing_metadata())
        resp = stub.DescribeCollection(milvus_pb2.DescribeCollectionRequest(collection_name="nope"))
        assert resp.status.code == 100

    def test_unimplemented_rpc_names_itself(self, dev_cluster) -> None:  # type: ignore[no-untyped-def]
        stub = _raw_stub(dev_cluster)
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateResourceGroup(milvus_pb2.CreateResourceGroupRequest(resource_group="rg"))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "CreateResourceGroup" in info.value.details()

    def test_server_keeps_serving(self, proxy_client: MilvusClient) -> None:
        assert proxy_client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"] == 50


def test_health_and_reflection(dev_cluster) -> None:  # type: ignore[no-untyped-def]
    ch = grpc.insecure_channel(dev_cluster.proxy_address)  # open: no token needed (probes, grpcurl)
    resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"milvus.proto.milvus.MilvusService", "shopbyimage.v1.ShardAdmin", "grpc.health.v1.Health"} <= names


def test_add_node_twice_is_refused(dev_cluster, proxy_client: MilvusClient) -> None:  # type: ignore[no-untyped-def]
    # (Adding a node while collections hold data now moves the data online: tests/rebalance.)
    stub = dev_cluster.admin()
    with pytest.raises(grpc.RpcError) as info:
        stub.AddNode(admin_pb2.AddNodeRequest(address=dev_cluster.milvus[0].address), timeout=60)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert len(stub.ListNodes(admin_pb2.ListNodesRequest()).nodes) == 3
    assert not stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest()).active


def test_cluster_status_cli_json(dev_cluster, proxy_client: MilvusClient) -> None:  # type: ignore[no-untyped-def]
    make_collection(proxy_client, "status_cli", 4, index="FLAT")
    proxy_client.insert("status_cli", make_rows(60, 4))
    out = subprocess.run(
        [sys.executable, "-m", "shardproxy", "cluster", "status", "--json", "--proxy", dev_cluster.proxy_address],
        capture_output=True, text=True, timeout=60, check=True, env={**os.environ, **dev_cluster.client_env()},
    )
    data = json.loads(out.stdout)
    assert [n["id"] for n in data["nodes"]] == ["node-0", "node-1", "node-2"]
    assert all(n["state"] == "active" for n in data["nodes"])
    coll = next(c for c in data["collections"] if c["name"] == "status_cli")
    assert coll["total_rows"] == 60 == sum(coll["nodes"].values())
    assert coll["dimension"] == 4 and coll["metric_type"] == "L2"


def test_proxy_restart_keeps_everything(dev_cluster, proxy_client: MilvusClient) -> None:  # type: ignore[no-untyped-def]
    name = "restart"
    make_collection(proxy_client, name, DIM, metric="COSINE", index="FLAT")
    rows = make_rows(400, DIM, seed=4)
    proxy_client.insert(name, rows)
    q = np.array([rows[10]["vector"]], dtype=np.float32)
    before = proxy_client.search(name, q.tolist(), limit=5)
    dev_cluster.restart_proxy()
    client = dev_cluster.client()
    after = client.search(name, q.tolist(), limit=5)
    assert [h["id"] for h in after[0]] == [h["id"] for h in before[0]]
    assert client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"] == 400
    assert name in client.list_collections()
    client.close()


def test_quick_create_form(proxy_client: MilvusClient) -> None:
    proxy_client.create_collection("quick", dimension=8, metric_type="IP")
    assert str(proxy_client.get_load_state("quick")["state"]) == "Loaded"
    proxy_client.insert("quick", [{"id": i, "vector": [float(i % 7)] * 8, "tag": i % 3} for i in range(60)])
    hits = proxy_client.search("quick", [[1.0] * 8], limit=3, filter="tag == 1", output_fields=["tag"])[0]
    assert len(hits) == 3 and all(h["entity"]["tag"] == 1 for h in hits)
    assert proxy_client.describe_collection("quick")["enable_dynamic_field"] is True
