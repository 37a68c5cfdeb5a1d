"""`rebalance abort` carries back what a move had moved; a finished add is undone by a drain;
a migrator killed with -9 is restarted by a proxy (no `rebalance resume`); count(*) stays exact
during a move. Real processes (milvus-lite nodes, valkey, proxies, migrators)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from shopbyimage.v1 import admin_pb2

from devkit.devcluster import DevCluster
from tests.helpers import eventually
from tests.rebalance.conftest import COLLECTION, PY, child_env, node_pks, rows, use_redis, wait_move_done

N = 2000


def fill(c: DevCluster) -> np.ndarray:
    from pymilvus import DataType

    client = c.client()
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=16)
    schema.add_field("tag", DataType.VARCHAR, max_length=32)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(COLLECTION, schema=schema, index_params=idx)
    ids = np.arange(1, N + 1, dtype=np.int64)
    for i in range(0, N, 1000):
        client.insert(COLLECTION, rows(ids[i : i + 1000]))
    return ids


def layout(c: DevCluster, count: int) -> dict[str, set[int]]:
    return {c.milvus[i].name: set(node_pks(c.milvus[i].address)) for i in range(count)}


def status(c: DevCluster) -> admin_pb2.RebalanceStatusResponse:
    return c.admin().RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)


def verify_clean(c: DevCluster, rows: int) -> dict:
    out = subprocess.run([PY, "-m", "shardproxy", "verify", "--json", "--redis-url", c.redis_url],
                         capture_output=True, text=True, timeout=300, env=child_env())
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and rep["clean"], rep
    assert rep["collections"][0]["rows"] == rows, rep  # more rows than one scan batch: windows work
    return rep


def migrator(c: DevCluster, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "shardproxy", "rebalance", "run", "--redis-url", c.redis_url, *extra],
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[DevCluster] = []

    def make(**env: str) -> DevCluster:
        c = DevCluster(data_dir=tmp_path / f"c{len(made)}", nodes=3, spare=2, proxy_env=env)
        made.append(c)
        c.start()
        use_redis(c.redis_url)
        return c

    yield make
    for c in made:
        c.stop()


def test_abort_moves_back_and_a_finished_add_is_undone_by_a_drain(cluster) -> None:  # type: ignore[no-untyped-def]
    c = cluster(SHARDPROXY_MIGRATOR_AUTOSTART="false")
    ids = fill(c)
    before = layout(c, 3)
    stub = c.admin()
    spare = c.spare_nodes[0]
    stub.AddNode(admin_pb2.AddNodeRequest(address=spare.address), timeout=120)
    slow = migrator(c, "--max-rows-per-s", "10", "--batch", "10")
    try:
        def moved_some() -> None:
            assert status(c).rows_moved >= 20

        eventually(moved_some, timeout=120, errors=AssertionError)
        client = c.client()
        during = np.arange(50_001, 50_101, dtype=np.int64)
        client.insert(COLLECTION, rows(during))  # written during the move: to the joining node too
        out = subprocess.run([PY, "-m", "shardproxy", "rebalance", "abort", "--no-wait", "--json",
                              "--proxy", c.proxy_address], capture_output=True, text=True, timeout=120,
                             env={**child_env(), **c.client_env()})
        assert out.returncode == 0, out.stderr
        ab = json.loads(out.stdout)
        assert ab["kind"] == "abort-add" and ab["aborted_rows_moved"] >= 20
        slow.wait(30)  # killed by the abort (same host), or stopped by its revoked lease
    finally:
        if slow.poll() is None:
            slow.kill()
    st = status(c)
    assert st.active and st.kind == "abort-add" and st.aborted_kind == "add"
    # the reverse move, run to its end
    assert migrator(c).wait(300) == 0
    st = wait_move_done(stub)
    nodes = {n.id: n for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
    assert nodes[spare.name].state == admin_pb2.NODE_STATE_DRAINED
    after = layout(c, 3)
    new_keys = set(int(i) for i in during)
    assert {n: s - new_keys for n, s in after.items()} == before  # every old key back on its old owner
    assert not set(node_pks(spare.address))
    assert sum(len(s) for s in after.values()) == N + len(during)
    assert client.query(COLLECTION, output_fields=["count(*)"])[0]["count(*)"] == N + len(during)
    verify_clean(c, N + len(during))

    # a finished add, undone by draining the node
    second = c.spare_nodes[1]
    stub.AddNode(admin_pb2.AddNodeRequest(address=second.address), timeout=120)
    assert migrator(c).wait(300) == 0
    assert node_pks(second.address)  # it took its share
    stub.DrainNode(admin_pb2.DrainNodeRequest(node_id=second.name), timeout=120)
    assert migrator(c).wait(300) == 0
    wait_move_done(stub)
    assert layout(c, 3) == after and not node_pks(second.address)
    verify_clean(c, N + len(during))
    assert len(ids) == N


def test_a_killed_migrator_is_restarted_and_count_stays_exact_during_the_move(cluster) -> None:  # type: ignore[no-untyped-def]
    c = cluster(SHARDPROXY_MIGRATOR_MAX_ROWS_PER_S="30")
    fill(c)
    client = c.client()
    stub = c.admin()
    spare = c.spare_nodes[0]
    stub.AddNode(admin_pb2.AddNodeRequest(address=spare.address), timeout=120)
    def moving() -> int:
        st = status(c)
        assert st.rows_moved > 0 and st.migrator_pid
        return st.migrator_pid

    first = eventually(moving, timeout=120, errors=AssertionError)
    counts = []
    for _ in range(5):  # rows in flight are on two nodes now and then: count distinct, givers first
        counts.append(client.query(COLLECTION, output_fields=["count(*)"])[0]["count(*)"])
    assert counts == [N] * 5
    os.kill(first, signal.SIGKILL)
    # no `rebalance resume`: a proxy notices the move has no migrator and starts one
    def restarted() -> None:
        st = status(c)
        assert not st.active or (st.migrator_running and st.migrator_pid != first)

    eventually(restarted, timeout=120, errors=AssertionError)
    assert status(c).migrator_pid != first
    wait_move_done(stub, timeout=600)
    assert client.query(COLLECTION, output_fields=["count(*)"])[0]["count(*)"] == N
    verify_clean(c, N)
