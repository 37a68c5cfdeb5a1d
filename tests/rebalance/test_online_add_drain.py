"""Online add and drain under load, on real processes (3 milvus-lite nodes, 30k rows)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import numpy as np
import pytest
from shopbyimage.v1 import admin_pb2

from shardproxy.ring import Ring, RingNode

from .conftest import (
    COLLECTION, PY, Load, admin, child_env, create_collection, fill, node_pks, use_redis, wait_move_done,
)

N_ROWS = 30_000


def ring_of(ids: list[str]) -> Ring:
    return Ring([RingNode(i) for i in ids])


def check_placement(cluster, ring: Ring, expected: set[int], stub) -> dict[str, int]:
    """Every id lives on exactly its owner, nowhere else; the proxy's count is exact."""
    nodes = {n.id: n for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
    per_node: dict[str, list[int]] = {}
    for nid, n in nodes.items():
        if n.state in (admin_pb2.NODE_STATE_ACTIVE, admin_pb2.NODE_STATE_DRAINED):
            per_node[nid] = node_pks(n.address)
    seen = Counter(pk for pks in per_node.values() for pk in pks)
    dupes = [pk for pk, c in seen.items() if c > 1]
    assert not dupes, f"{len(dupes)} id(s) on more than one node, e.g. {dupes[:5]}"
    assert set(seen) == expected, (
        f"missing {len(expected - set(seen))}, unexpected {len(set(seen) - expected)}"
    )
    for nid, pks in per_node.items():
        if pks:
            owners = ring.owners(pks)
            wrong = [pk for pk, o in zip(pks, owners) if o != nid]
            assert not wrong, f"{len(wrong)} id(s) on {nid} belong elsewhere, e.g. {wrong[:5]}"
    return {nid: len(p) for nid, p in per_node.items()}


def proxy_count(client) -> int:
    return int(client.query(COLLECTION, filter="", output_fields=["count(*)"])[0]["count(*)"])


def test_add_fourth_node_under_load(make_cluster, loads):
    cluster = make_cluster(nodes=3, spare=1)
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    ids = fill(client, N_ROWS)
    stub = admin(cluster)
    before = {n: len(node_pks(m.address)) for n, m in zip(["node-0", "node-1", "node-2"], cluster.milvus)}
    assert sum(before.values()) == N_ROWS

    load = Load(cluster.connect_kwargs(), ids).start()
    loads.append(load)
    time.sleep(1.0)
    spare = cluster.spare_nodes[0]
    resp = stub.AddNode(admin_pb2.AddNodeRequest(address=spare.address), timeout=120)
    assert resp.moving and resp.node.state == admin_pb2.NODE_STATE_JOINING
    st = wait_move_done(stub)
    time.sleep(1.5)  # a little load on the new ring
    load.finish()

    assert st.state == "done" and st.node_id == resp.node.id
    assert not load.insert_errors, load.insert_errors[:3]
    assert not load.search_errors, load.search_errors[:3]
    assert load.searches > 50
    assert not load.misses, f"{len(load.misses)} of {load.searches} searches missed rank 1: {load.misses[:5]}"

    nodes = {n.id: n for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
    assert all(n.state == admin_pb2.NODE_STATE_ACTIVE for n in nodes.values())
    expected = set(ids.tolist()) | set(load.acked)
    counts = check_placement(cluster, ring_of(list(nodes)), expected, stub)
    assert proxy_count(client) == len(expected)
    assert counts[resp.node.id] > 0

    moved = st.rows_moved / N_ROWS
    ideal = 1 / 4
    ratio = moved / ideal
    print(f"moved fraction {moved:.4f}, ideal {ideal:.4f}, ratio {ratio:.3f}; rows/s {st.rows_per_second:.0f}")
    assert st.rows_moved == st.rows_to_move
    assert 1 / 1.1 <= ratio <= 1.1


def test_drain_with_migrator_killed_and_resumed(make_cluster, loads):
    # the manual resume path: without the proxies' migrator watchdog (tested in test_abort_and_watchdog.py)
    cluster = make_cluster(nodes=3, proxy_env={"SHARDPROXY_MIGRATOR_WATCHDOG": "false"})
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    ids = fill(client, N_ROWS)
    stub = admin(cluster)
    victim = "node-1"
    on_victim = len(node_pks(cluster.milvus[1].address))

    load = Load(cluster.connect_kwargs(), ids).start()
    loads.append(load)
    time.sleep(1.0)
    resp = stub.DrainNode(admin_pb2.DrainNodeRequest(node_id=victim), timeout=120)
    assert resp.node.state == admin_pb2.NODE_STATE_DRAINING

    # kill -9 the migrator once it has moved some rows
    deadline = time.monotonic() + 120
    while True:
        st = stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
        if st.rows_to_move > 0 and st.rows_moved >= st.rows_to_move // 4 and st.migrator_pid:
            break
        assert st.active, "the move ended before the migrator could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(st.migrator_pid, signal.SIGKILL)
    killed_at = st.rows_moved
    # nothing moves while no migrator runs; the lease expires
    time.sleep(12)
    st = stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
    assert st.active and not st.migrator_running
    assert st.rows_moved < st.rows_to_move
    assert st.rows_moved - killed_at <= 1000  # at most the batch in flight

    # start it again by hand; it resumes from the cursors
    proc = subprocess.run(
        [PY, "-m", "shardproxy", "rebalance", "run", "--redis-url", cluster.redis_url],
        env=child_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = wait_move_done(stub)
    time.sleep(1.0)
    load.finish()

    assert not load.insert_errors, load.insert_errors[:3]
    assert not load.search_errors, load.search_errors[:3]
    assert not load.misses, f"{len(load.misses)} of {load.searches} searches missed rank 1: {load.misses[:5]}"
    nodes = {n.id: n for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
    assert nodes[victim].state == admin_pb2.NODE_STATE_DRAINED
    expected = set(ids.tolist()) | set(load.acked)
    counts = check_placement(cluster, ring_of([n for n in nodes if n != victim]), expected, stub)
    assert counts[victim] == 0
    assert proxy_count(client) == len(expected)
    # every row the victim held was carried (a kill may lose the count of one batch, never rows)
    assert st.rows_to_move >= on_victim
    assert st.rows_to_move - 1000 <= st.rows_moved <= st.rows_to_move
    ratio = (on_victim / N_ROWS) / (1 / 3)
    assert 1 / 1.1 <= ratio <= 1.1

    # drained: it can go
    stub.RemoveNode(admin_pb2.RemoveNodeRequest(node_id=victim), timeout=60)
    assert victim not in {n.id for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
    assert proxy_count(client) == len(expected)
