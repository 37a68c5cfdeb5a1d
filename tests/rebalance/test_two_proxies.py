"""Two proxies on one Redis: a ring change made through one is used by the other."""

from __future__ import annotations

import time

import numpy as np
from pymilvus import MilvusClient
from shopbyimage.v1 import admin_pb2

from shardproxy.ring import Ring, RingNode

from .conftest import COLLECTION, admin, create_collection, fill, node_pks, rows, use_redis, vectors, wait_move_done


def test_node_added_through_one_proxy_is_used_by_the_other(make_cluster):
    cluster = make_cluster(nodes=2, spare=1, proxies=2)
    use_redis(cluster.redis_url)
    a, b = cluster.all_proxies
    create_collection(cluster.connect_kwargs())
    client_a = cluster.client()
    ids = fill(client_a, 3000, batch=1500)
    stub_a, stub_b = admin(cluster, a.address), admin(cluster, b.address)

    # the spare is listed, outside the ring
    status = stub_b.ClusterStatus(admin_pb2.ClusterStatusRequest(), timeout=60)
    spare = cluster.spare_nodes[0]
    states = {n.address: n.state for n in status.nodes}
    assert states[spare.address] == admin_pb2.NODE_STATE_SPARE

    resp = stub_a.AddNode(admin_pb2.AddNodeRequest(address=spare.address), timeout=120)
    new_id = resp.node.id
    # proxy B sees the move within a second (pub/sub + epoch check) ...
    time.sleep(1.0)
    st_b = stub_b.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
    assert st_b.kind == "add" and st_b.node_id == new_id
    wait_move_done(stub_b)
    time.sleep(1.0)
    nodes_b = {n.id: n for n in stub_b.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
    assert nodes_b[new_id].state == admin_pb2.NODE_STATE_ACTIVE

    # ... and routes writes to the new node: rows the ring gives it land there, through B
    client_b = MilvusClient(**{**cluster.connect_kwargs(), "uri": f"http://{b.address}"})
    new_ids = np.arange(50_000, 52_000, dtype=np.int64)
    client_b.insert(COLLECTION, rows(new_ids))
    ring = Ring([RingNode(n) for n in nodes_b])
    mine = {int(pk) for pk, o in zip(new_ids, ring.owners(new_ids.tolist())) if o == new_id}
    assert mine and mine <= set(node_pks(spare.address))
    # B searches the new node too: every probed vector is found at rank 1
    probe = np.array(sorted(mine)[:20] + sorted(set(ids.tolist()))[:20], dtype=np.int64)
    res = client_b.search(COLLECTION, data=vectors(probe).tolist(), limit=1, anns_field="vec")
    assert [h[0]["id"] for h in res] == probe.tolist()
    count = client_b.query(COLLECTION, filter="", output_fields=["count(*)"])[0]["count(*)"]
    assert count == len(ids) + len(new_ids)

    # a restarted proxy rebuilds everything from Redis
    b.stop()
    from devkit import procs

    cluster.more_proxies[0] = procs.start_proxy(cluster.redis_url, b.port, cluster.host,
                                                log_path=cluster.data_dir / "proxy-1b.log", extra_env=cluster._env())
    client_b2 = MilvusClient(**{**cluster.connect_kwargs(), "uri": f"http://{b.address}"})
    res = client_b2.search(COLLECTION, data=vectors(probe).tolist(), limit=1, anns_field="vec")
    assert [h[0]["id"] for h in res] == probe.tolist()
