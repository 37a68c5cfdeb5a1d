"""R=2: kill -9 a Milvus node under load; searches stay complete, acknowledged writes survive,
the node catches up (hinted handoff) when it returns; partial-result policy when a shard has no
live replica."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from pymilvus import MilvusClient
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc
from shopbyimage.v1 import admin_pb2

from shardproxy.ring import Ring, RingNode

from .conftest import COLLECTION, Load, admin, create_collection, fill, node_pks, use_redis


def states(stub) -> dict[str, int]:
    return {n.id: n.state for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}


def wait_state(stub, node_id: str, state: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while states(stub)[node_id] != state:
        assert time.monotonic() < deadline, f"{node_id} never reached state {state}: {states(stub)}"
        time.sleep(0.5)


def get_ids(client: MilvusClient, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for i in range(0, len(ids), 2000):
        res = client.query(COLLECTION, filter=f"id in {ids[i:i + 2000]}", output_fields=["id"])
        found |= {r["id"] for r in res}
    return found


def test_r2_kill_node_under_load_then_catch_up(make_cluster, loads):
    cluster = make_cluster(nodes=3, replicas=2)
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    ids = fill(client, 6000)
    stub = admin(cluster)
    ring = Ring([RingNode(f"node-{i}") for i in range(3)])

    # every key lives on exactly its two replicas
    held = {f"node-{i}": set(node_pks(m.address)) for i, m in enumerate(cluster.milvus)}
    copies = Counter(pk for pks in held.values() for pk in pks)
    assert set(copies) == set(ids.tolist()) and set(copies.values()) == {2}
    for pk in ids[:500].tolist():
        assert {n for n, pks in held.items() if pk in pks} == set(ring.replicas(pk, 2))
    # counts and searches are not double-counted
    assert client.query(COLLECTION, filter="", output_fields=["count(*)"])[0]["count(*)"] == len(ids)

    load = Load(cluster.connect_kwargs(), ids).start()
    loads.append(load)
    time.sleep(2.0)
    cluster.milvus[1].kill()
    wait_state(stub, "node-1", admin_pb2.NODE_STATE_DOWN, timeout=30)
    time.sleep(3.0)  # inserts and searches with node-1 down
    cluster.restart_node(1)
    wait_state(stub, "node-1", admin_pb2.NODE_STATE_ACTIVE, timeout=90)
    time.sleep(1.0)
    load.finish()

    assert load.searches > 30
    assert not load.search_errors, load.search_errors[:3]
    assert not load.misses, f"{len(load.misses)} of {load.searches} searches missed rank 1: {load.misses[:5]}"
    acked = sorted(set(load.acked))
    assert acked
    expected = set(ids.tolist()) | set(acked)
    assert get_ids(client, sorted(expected)) == expected
    assert client.query(COLLECTION, filter="", output_fields=["count(*)"])[0]["count(*)"] >= len(expected)

    # node-1 caught up: every acknowledged key it is a replica of and that was written while it
    # was down is on it now (hinted handoff replayed)
    on_1 = set(node_pks(cluster.milvus[1].address))
    want_1 = {pk for pk in acked if "node-1" in ring.replicas(pk, 2)}
    missing = want_1 - on_1
    assert not missing, f"{len(missing)} acknowledged key(s) missing on node-1 after catch-up"


def test_partial_result_policy(make_cluster):
    cluster = make_cluster(nodes=3, replicas=1)
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    fill(client, 600)
    stub = admin(cluster)
    cluster.milvus[2].kill()
    wait_state(stub, "node-2", admin_pb2.NODE_STATE_DOWN, timeout=30)

    milvus = milvus_pb2_grpc.MilvusServiceStub(cluster.channel())
    req = milvus_pb2.QueryRequest(
        collection_name=COLLECTION, expr="id > 0", output_fields=["id"],
        query_params=[common_pb2.KeyValuePair(key="limit", value="1000")],
    )
    # default: UNAVAILABLE (Milvus code 2) naming the missing shard
    resp = milvus.Query(req, timeout=30)
    assert resp.status.code == 2 and "node-2" in resp.status.reason
    # allowed: the partial result, marked in trailing metadata
    resp, call = milvus.Query.with_call(req, timeout=30, metadata=(("x-shardproxy-partial", "allow"),))
    assert resp.status.code == 0
    trailer = dict(call.trailing_metadata())
    assert trailer.get("x-shardproxy-partial") == "true"
    assert trailer.get("x-shardproxy-missing-shards") == "node-2"
    n = len(resp.fields_data[0].scalars.long_data.data)
    assert 0 < n < 600


def test_r2_add_node_keeps_two_copies_on_the_new_replica_sets(make_cluster):
    cluster = make_cluster(nodes=3, spare=1, replicas=2)
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    ids = fill(client, 4000, batch=2000)
    stub = admin(cluster)
    resp = stub.AddNode(admin_pb2.AddNodeRequest(address=cluster.spare_nodes[0].address, id="node-3"), timeout=120)
    assert resp.moving
    deadline = time.monotonic() + 240
    while stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30).active:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    ring = Ring([RingNode(f"node-{i}") for i in range(4)])
    held = {f"node-{i}": set(node_pks(m.address)) for i, m in enumerate(cluster.milvus)}
    for pk in ids.tolist():
        assert {n for n, pks in held.items() if pk in pks} == set(ring.replicas(pk, 2)), pk
    assert held["node-3"]
    assert client.query(COLLECTION, filter="", output_fields=["count(*)"])[0]["count(*)"] == len(ids)


def test_r2_get_by_ids_with_both_replicas_out_is_unavailable_not_absent(make_cluster):
    """A get by primary keys while a node is out asks every live node (copies may be on
    stand-ins); keys whose every replica is out fail UNAVAILABLE naming the shard (before: they
    read as absent, a lost read the history checker found), while keys with a live replica are
    answered, and the partial policy applies on request."""
    cluster = make_cluster(nodes=3, replicas=2)
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    ids = fill(client, 600).tolist()
    stub = admin(cluster)
    ring = Ring([RingNode(f"node-{i}") for i in range(3)])
    both_out = [pk for pk in ids if set(ring.replicas(pk, 2)) == {"node-1", "node-2"}][:20]
    one_live = [pk for pk in ids if "node-0" in ring.replicas(pk, 2)][:20]
    assert both_out and one_live
    cluster.milvus[1].kill()
    cluster.milvus[2].kill()
    wait_state(stub, "node-1", admin_pb2.NODE_STATE_DOWN, timeout=30)
    wait_state(stub, "node-2", admin_pb2.NODE_STATE_DOWN, timeout=30)

    milvus = milvus_pb2_grpc.MilvusServiceStub(cluster.channel())

    def get(pks: list[int], metadata=()):
        req = milvus_pb2.QueryRequest(collection_name=COLLECTION, expr=f"id in {pks}", output_fields=["id"])
        return milvus.Query.with_call(req, timeout=30, metadata=metadata)

    resp, _ = get(one_live)  # a live replica holds every key asked: complete
    assert resp.status.code == 0 and sorted(resp.fields_data[0].scalars.long_data.data) == sorted(one_live)
    resp, _ = get(both_out + one_live)
    assert resp.status.code == 2 and "node-1" in resp.status.reason, resp.status
    resp, call = get(both_out + one_live, metadata=(("x-shardproxy-partial", "allow"),))
    assert resp.status.code == 0 and dict(call.trailing_metadata()).get("x-shardproxy-partial") == "true"
    assert set(one_live) <= set(resp.fields_data[0].scalars.long_data.data)
