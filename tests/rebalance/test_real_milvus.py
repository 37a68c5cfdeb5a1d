"""Online add and drain with real Milvus standalone servers as nodes (PyPI's ``milvus`` package,
Milvus 2.3 C++ engine), under a client load: the same checks as on milvus-lite. Slow: each
standalone takes ~0.5 GiB and tens of seconds to start; `make test-slow` installs the package."""

from __future__ import annotations

import time

import pytest
from shopbyimage.v1 import admin_pb2

from tests.helpers import eventually

from .conftest import Load, admin, create_collection, fill, node_pks, use_redis, wait_move_done
from .test_online_add_drain import check_placement, proxy_count, ring_of

pytestmark = pytest.mark.slow

N_ROWS = 6_000


def test_add_and_drain_on_real_milvus(make_cluster, loads):
    pytest.importorskip("milvus", reason="PyPI's milvus package is installed by `make test-slow`")
    cluster = make_cluster(nodes=2, spare=1, engine="milvus")
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    ids = fill(client, N_ROWS)
    stub = admin(cluster)
    # real Milvus counts and scans what is visible under its consistency level: wait for it
    def all_visible() -> None:
        total = sum(len(node_pks(m.address)) for m in cluster.milvus[:2])
        assert total == N_ROWS, total

    eventually(all_visible, timeout=120)

    load = Load(cluster.connect_kwargs(), ids).start()
    loads.append(load)
    time.sleep(1.0)
    spare = cluster.spare_nodes[0]
    resp = stub.AddNode(admin_pb2.AddNodeRequest(address=spare.address, id="node-2"), timeout=120)
    st = wait_move_done(stub, timeout=600)
    assert st.state == "done" and st.rows_moved == st.rows_to_move > 0
    # adding the third of three nodes moves about a third of the rows
    assert 0.25 <= st.rows_moved / N_ROWS <= 0.42, st.rows_moved

    stub.DrainNode(admin_pb2.DrainNodeRequest(node_id=resp.node.id), timeout=120)
    st2 = wait_move_done(stub, timeout=600)
    time.sleep(1.0)
    load.finish()
    assert st2.state == "done" and st2.rows_moved == st2.rows_to_move
    assert not load.insert_errors, load.insert_errors[:3]
    assert not load.search_errors, load.search_errors[:3]
    assert load.searches > 10 and not load.misses, load.misses[:5]

    nodes = {n.id: n for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
    active = [i for i, n in nodes.items() if n.state == admin_pb2.NODE_STATE_ACTIVE]
    assert sorted(active) == ["node-0", "node-1"]
    expected = set(ids.tolist()) | set(load.acked)
    eventually(lambda: check_placement(cluster, ring_of(active), expected, stub), timeout=120)
    def counted() -> None:
        assert proxy_count(client) == len(expected)

    eventually(counted, timeout=120)
