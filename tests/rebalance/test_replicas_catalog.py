"""R=2 in a database other than ``default``, rows in a user partition: while a replica is down its
rows go to stand-ins; when it returns, hinted handoff brings them back into the same partition
(and database) on the replica, and the stand-ins' copies are removed."""

from __future__ import annotations

import time

import numpy as np
from pymilvus import DataType, MilvusClient
from shopbyimage.v1 import admin_pb2

from shardproxy.ring import Ring, RingNode

from .conftest import admin

DB, NAME, PART, DIM = "shop", "parted", "p1", 8


def _states(stub) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {n.id: n.state for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}


def _wait_state(stub, node_id: str, state: int, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while _states(stub)[node_id] != state:
        assert time.monotonic() < deadline, f"{node_id} never reached state {state}: {_states(stub)}"
        time.sleep(0.5)


def _rows(ids: range) -> list[dict]:
    rng = np.random.default_rng(ids.start)
    return [{"id": i, "vec": rng.standard_normal(DIM).astype(np.float32).tolist(), "tag": f"t{i}"} for i in ids]


def _on_node(address: str, partition: str) -> set[int]:
    node = MilvusClient(uri=f"http://{address}", db_name=DB)
    try:
        res = node.query(NAME, filter="id >= 0", output_fields=["id"], partition_names=[partition], limit=16384)
        return {r["id"] for r in res}
    finally:
        node.close()


def test_r2_handoff_keeps_database_and_partition(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_cluster(nodes=3, replicas=2, name="cat")
    stub = admin(cluster)
    client = cluster.client()
    client.create_database(DB)
    client.using_database(DB)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=32)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(NAME, schema=schema, index_params=idx, consistency_level="Strong")
    client.create_partition(NAME, PART)
    client.insert(NAME, _rows(range(0, 100)), partition_name=PART)

    cluster.milvus[1].kill()
    _wait_state(stub, "node-1", admin_pb2.NODE_STATE_DOWN, timeout=60)
    later = range(1000, 1200)
    res = client.insert(NAME, _rows(later), partition_name=PART)
    assert res["insert_count"] == len(later)
    cluster.restart_node(1)
    _wait_state(stub, "node-1", admin_pb2.NODE_STATE_ACTIVE)

    ring = Ring([RingNode(f"node-{i}") for i in range(3)])
    deadline = time.monotonic() + 60
    while True:  # the replay finishes before node-1 is marked active; the stand-ins' cleanup with it
        held = {f"node-{i}": _on_node(m.address, PART) for i, m in enumerate(cluster.milvus)}
        placed = all(n in ring.replicas(pk, 2) for n, pks in held.items() for pk in pks if pk >= 1000)
        if placed or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    want_1 = {pk for pk in later if "node-1" in ring.replicas(pk, 2)}
    assert want_1 and want_1 <= held["node-1"], "node-1 lacks rows written while it was down (in partition p1)"
    assert not _on_node(cluster.milvus[1].address, "_default") & set(later), "handed back into the wrong partition"
    for n, pks in held.items():  # no stand-in copy is left behind
        assert all(n in ring.replicas(pk, 2) for pk in pks if pk >= 1000), n
    # through the proxy: every row once, in its partition
    got = client.query(NAME, filter="id >= 1000", output_fields=["id"], partition_names=[PART], limit=1000)
    assert sorted(r["id"] for r in got) == list(later)
    client.close()
