"""A node that joins (or restarts empty) is brought to the recorded catalog: databases,
collections in their databases, partitions the user created, and aliases."""

from __future__ import annotations

import asyncio

from pymilvus import MilvusClient

from devkit import procs
from shardproxy.metastore import MetaStore, NodeRecord
from shardproxy.nodepool import CatalogState, NodeClient
from tests.helpers import make_collection


def test_new_node_gets_databases_partitions_and_aliases(dev_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proxy = dev_cluster.client()
    if "sync_db" not in proxy.list_databases():
        proxy.create_database("sync_db")
    in_db = dev_cluster.client(db_name="sync_db")
    make_collection(in_db, "sync_c", 8)
    in_db.create_partition("sync_c", "sync_p")
    in_db.create_alias("sync_c", "sync_alias")

    fresh = procs.start_milvus(tmp_path / "fresh", name="fresh")
    try:
        async def bring() -> list[str]:
            store = MetaStore(dev_cluster.redis_url)
            client = NodeClient(NodeRecord(id="fresh", address=fresh.address), timeout_s=60, write_concurrency=1)
            try:
                return await client.sync(await store.collections(), await CatalogState.load(store))
            finally:
                await client.close()
                await store.close()

        done = asyncio.run(bring())
        assert "created database sync_db" in done
        node = MilvusClient(uri=f"http://{fresh.address}/sync_db")
        assert "sync_c" in node.list_collections()
        assert "sync_p" in node.list_partitions("sync_c")
        assert node.describe_alias("sync_alias")["collection_name"] == "sync_c"
        assert node.get_load_state("sync_c")["state"].name == "Loaded"
        node.close()
        assert asyncio.run(bring()) == []  # idempotent
    finally:
        fresh.stop()
        in_db.drop_alias("sync_alias")
        in_db.drop_collection("sync_c")
        proxy.drop_database("sync_db")
        in_db.close()
        proxy.close()
