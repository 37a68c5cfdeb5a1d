"""Deletes by filter while rows move: every deleted row stays deleted and nothing else is lost.

The proxy writes tombstones for the matching keys before deleting, so the migrator does not copy a
deleted row back. The window that protects is a few milliseconds wide, so this test checks the
outcome under real concurrent moves, not that the window was hit (it passes without the tombstones
most of the time)."""

from __future__ import annotations

import time

from shopbyimage.v1 import admin_pb2

from .conftest import COLLECTION, admin, create_collection, fill, node_pks, use_redis, wait_move_done


def test_filter_deletes_during_a_move_stay_deleted(make_cluster) -> None:
    cluster = make_cluster(nodes=2, spare=1)
    use_redis(cluster.redis_url)
    client = create_collection(cluster.connect_kwargs())
    ids = fill(client, 9000)
    stub = admin(cluster)

    resp = stub.AddNode(admin_pb2.AddNodeRequest(address=cluster.spare_nodes[0].address), timeout=120)
    assert resp.moving
    deleted_tags = []
    for tag in ("t1", "t3", "t5"):  # waves of filter deletes while the migrator copies
        if not stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30).active and deleted_tags:
            break
        client.delete(COLLECTION, filter=f'tag == "{tag}"')
        deleted_tags.append(tag)
        time.sleep(0.3)
    st = wait_move_done(stub)
    assert st.state == "done"

    gone = {int(pk) for pk in ids if f"t{int(pk) % 7}" in deleted_tags}
    expected = set(ids.tolist()) - gone
    stored = [pk for m in cluster.milvus for pk in node_pks(m.address)]  # spares included
    assert not (set(stored) & gone), f"{len(set(stored) & gone)} deleted rows came back"
    assert set(stored) == expected and len(stored) == len(expected)
    count = client.query(COLLECTION, filter="", output_fields=["count(*)"])[0]["count(*)"]
    assert count == len(expected)
    for tag in deleted_tags:
        assert client.query(COLLECTION, filter=f'tag == "{tag}"', output_fields=["id"], limit=5) == []
    client.close()
