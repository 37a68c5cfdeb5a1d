"""shardproxy_partial_results_total (the PartialResults alert, the partial-results panel) moves
when a read that allows partial results skips a dead node."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from devkit.devcluster import DevCluster
from tests.helpers import eventually, make_collection, make_rows


def partial_total(url: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "shardproxy_partial_results_total")


def test_partial_reads_are_counted(tmp_path: Path) -> None:
    cluster = DevCluster(data_dir=tmp_path / "c", nodes=2, metrics=True).start()
    try:
        url = cluster.metrics_endpoints()["proxy"]
        client = cluster.client()
        make_collection(client, "half", 8)
        client.insert("half", make_rows(400, 8, seed=1))
        client.close()
        assert partial_total(url) == 0
        cluster.milvus[1].kill()
        stub = milvus_pb2_grpc.MilvusServiceStub(cluster.channel())
        req = milvus_pb2.QueryRequest(collection_name="half", expr="id >= 0", output_fields=["id"],
                                      query_params=[common_pb2.KeyValuePair(key="limit", value="1000")])

        def partial() -> int:
            resp, call = stub.Query.with_call(req, timeout=30, metadata=(("x-shardproxy-partial", "allow"),))
            assert resp.status.code == 0 and dict(call.trailing_metadata()).get("x-shardproxy-partial") == "true"
            return len(resp.fields_data[0].scalars.long_data.data)

        n = eventually(partial, timeout=60)
        assert 0 < n < 400
        assert partial_total(url) >= 1
    finally:
        cluster.stop()
