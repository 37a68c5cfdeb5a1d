"""A node that dies makes searches fail with UNAVAILABLE naming it; when it comes back the proxy
re-syncs it (milvus-lite forgets its load state) and serves again, without a proxy restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymilvus import MilvusClient, MilvusException

from devkit.devcluster import DevCluster
from tests.helpers import eventually, make_collection, make_rows


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    cluster = DevCluster(data_dir=tmp_path_factory.mktemp("failure"), nodes=2)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_dead_node_fails_search_with_unavailable_then_recovers(small_cluster: DevCluster) -> None:
    client = small_cluster.client()
    make_collection(client, "fail", 8, index="FLAT")
    rows = make_rows(300, 8, seed=1)
    client.insert("fail", rows)
    victim = small_cluster.milvus[1]
    victim.kill()

    with pytest.raises(MilvusException) as info:
        client.search("fail", [rows[0]["vector"]], limit=5)
    assert info.value.code == 2  # Milvus "service unavailable"
    assert victim.name in info.value.message and "unavailable" in info.value.message

    # Writes owned by the dead node are refused and reported; the others are acknowledged.
    more = make_rows(40, 8, seed=2, start=1000)
    with pytest.raises(MilvusException, match=rf"partially failed.*node {victim.name}"):
        client.insert("fail", more)

    small_cluster.restart_node(1)
    hits = eventually(lambda: client.search("fail", [rows[0]["vector"]], limit=5), errors=MilvusException)
    assert hits[0][0]["id"] == 0
    total = client.query("fail", filter="", output_fields=["count(*)"])[0]["count(*)"]
    assert 300 <= total < 340  # all original rows are back; the refused part of the batch is absent
    acked = {r["id"] for r in client.query("fail", filter="id >= 1000", output_fields=["id"])}
    assert acked and acked < set(range(1000, 1040))
    client.close()


def test_node_that_forgot_its_load_state_is_resynced_on_first_read(small_cluster: DevCluster) -> None:
    """Release the collection behind the proxy's back on one node: the next search notices
    "not loaded", re-syncs that node from the Redis record, and answers completely."""
    client = small_cluster.client()
    make_collection(client, "forgot", 8, index="FLAT")
    rows = make_rows(100, 8, seed=3)
    client.insert("forgot", rows)
    node = MilvusClient(uri=f"http://{small_cluster.milvus[0].address}")
    node.release_collection("forgot")
    assert str(node.get_load_state("forgot")["state"]) == "NotLoad"
    hits = client.search("forgot", [r["vector"] for r in rows[:20]], limit=1)
    assert [h[0]["id"] for h in hits] == list(range(20))
    assert str(node.get_load_state("forgot")["state"]) == "Loaded"
    node.close()
    client.close()
