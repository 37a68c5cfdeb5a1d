"""AsyncMilvusClient and the ORM API (connections + Collection) through the proxy give the same
answers as on one plain node: databases, partitions and aliases included."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from pymilvus import db as milvus_db
from pymilvus import AsyncMilvusClient, Collection, MilvusClient, CollectionSchema, DataType, FieldSchema, Partition, connections, utility


def _async_program(uri: str, db: str, token: str = "") -> dict:
    async def go() -> dict:
        admin = AsyncMilvusClient(uri=uri, token=token)
        if db not in await admin.list_databases():
            await admin.create_database(db)
        client = AsyncMilvusClient(uri=uri, token=token, db_name=db)
        if await client.has_collection("async_c"):
            await client.drop_collection("async_c")
        schema = MilvusClient.create_schema()
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
        # (the quick form's index step uses an RPC milvus-lite lacks, through the proxy as directly)
        await client.create_collection("async_c", schema=schema, consistency_level="Strong")
        await client.load_collection("async_c")
        await client.create_partition("async_c", "p1")
        await client.insert("async_c", [{"id": i, "vector": [float(i), 1, 0, 0]} for i in range(20)], partition_name="p1")
        await client.insert("async_c", [{"id": i, "vector": [float(i), 0, 1, 0]} for i in range(20, 30)])
        await client.create_alias("async_c", "async_live")
        out = {
            "partitions": await client.list_partitions("async_c"),
            # metric named: without an index the proxy does not know the nodes' default metric (see README)
            "search": [[h["id"] for h in q] for q in await client.search(
                "async_live", [[3.0, 1, 0, 0]], limit=4, partition_names=["p1"], search_params={"metric_type": "COSINE"})],
            "count": (await client.query("async_c", filter="", output_fields=["count(*)"]))[0]["count(*)"],
            "alias": (await client.describe_alias("async_live"))["collection_name"],
        }
        await client.drop_alias("async_live")
        await client.drop_collection("async_c")
        await client.close()
        await admin.close()
        return out

    return asyncio.run(go())


def test_async_client_same(dev_cluster, direct_node) -> None:  # type: ignore[no-untyped-def]
    proxied = _async_program(dev_cluster.connect_kwargs()["uri"], "async_db", dev_cluster.token)
    direct = _async_program(f"http://{direct_node.address}", "async_db")
    assert proxied == direct
    assert proxied["count"] == 30 and proxied["alias"] == "async_c"


def _orm_program(alias: str, db: str, **connect: object) -> dict:
    connections.connect(alias=alias, **connect)
    try:
        if db not in milvus_db.list_database(using=alias):
            milvus_db.create_database(db, using=alias)
        connections.disconnect(alias)
        connections.connect(alias=alias, db_name=db, **connect)
        if utility.has_collection("orm_c", using=alias):
            utility.drop_collection("orm_c", using=alias)
        schema = CollectionSchema([
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("color", DataType.VARCHAR, max_length=8),
            FieldSchema("vec", DataType.FLOAT_VECTOR, dim=4),
        ])
        coll = Collection("orm_c", schema, using=alias, consistency_level="Strong")
        part = Partition(coll, "p_red")
        coll.insert([[i for i in range(12)], ["red"] * 12, [[float(i), 0, 0, 1] for i in range(12)]], partition_name="p_red")
        coll.insert([[i for i in range(12, 20)], ["blue"] * 8, [[float(i), 1, 0, 0] for i in range(12, 20)]])
        coll.create_index("vec", {"index_type": "FLAT", "metric_type": "L2", "params": {}})
        coll.load()
        res = coll.search([[5.0, 0, 0, 1]], "vec", {"metric_type": "L2"}, limit=3, partition_names=["p_red"],
                          output_fields=["color"])
        out = {
            "search": [[(h.id, round(h.distance, 3), h.entity.get("color")) for h in hits] for hits in res],
            "partitions": sorted(p.name for p in coll.partitions),
            "p_red_rows": len(coll.query("id >= 0", partition_names=[part.name])),
            "query": sorted(r["id"] for r in coll.query('color == "blue"', output_fields=["id"])),
            "has": utility.has_partition("orm_c", "p_red", using=alias),
        }
        coll.release()
        coll.drop()
        return out
    finally:
        connections.disconnect(alias)


@pytest.mark.filterwarnings("ignore:.*ORM-style")
def test_orm_same(dev_cluster, direct_node) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    proxied = _orm_program(f"p{tag}", "orm_db", **dev_cluster.connect_kwargs())
    direct = _orm_program(f"d{tag}", "orm_db", uri=f"http://{direct_node.address}")
    assert proxied == direct
    assert proxied["p_red_rows"] == 12 and proxied["query"] == list(range(12, 20))
