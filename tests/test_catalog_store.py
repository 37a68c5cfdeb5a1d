"""The catalog in a real Redis (valkey): databases, aliases, partitions, per-database collection
keys, and the compatibility of the ``default`` database with the layout from before databases."""

from __future__ import annotations

import asyncio

import pytest
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from shardproxy.errors import AlreadyExists, NotFound
from shardproxy.metastore import MetaStore


def _create(name: str) -> milvus_pb2.CreateCollectionRequest:
    schema = schema_pb2.CollectionSchema(name=name)
    schema.fields.add(name="id", data_type=schema_pb2.DataType.Int64, is_primary_key=True)
    return milvus_pb2.CreateCollectionRequest(collection_name=name, schema=schema.SerializeToString())


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_collections_are_per_database_and_default_keeps_the_old_keys(redis_url: str) -> None:
    async def go() -> None:
        store = MetaStore(redis_url, prefix="t1")
        try:
            assert await store.create_collection(_create("products"))
            assert await store.create_collection(_create("products"), db="tenant_a")
            assert not await store.create_collection(_create("products"), db="tenant_a")
            # default: exactly the keys written before databases existed
            assert await store.r.exists("t1:collection:products")
            assert await store.r.exists("t1:collection:tenant_a/products")
            assert await store.collection_keys() == ["products", "tenant_a/products"]
            assert await store.collection_names() == ["products"]
            assert await store.collection_names("tenant_a") == ["products"]
            rec = await store.collection("tenant_a/products")
            assert rec is not None and rec.db == "tenant_a" and rec.name == "products"
            assert rec.node_create.db_name == "tenant_a"
            assert [r.key for r in await store.collections()] == ["products", "tenant_a/products"]
            assert [r.key for r in await store.collections("tenant_a")] == ["tenant_a/products"]
            # a record written by the old code (no db anywhere) reads as the default database
            await store.r.hset("t1:collection:legacy", mapping={"create": _create("legacy").SerializeToString(),
                                                                "loaded": "1", "created_at": "1700000000.5"})
            await store.r.sadd("t1:collections", "legacy")
            old = await store.collection("legacy")
            assert old is not None and old.db == "default" and old.key == "legacy" and old.loaded
            await store.drop_collection("tenant_a/products")
            assert await store.collection_names("tenant_a") == []
            assert await store.collection_names() == ["legacy", "products"]
        finally:
            await store.close()

    run(go())


def test_databases_aliases_partitions(redis_url: str) -> None:
    async def go() -> None:
        store = MetaStore(redis_url, prefix="t2")
        cat = store.catalog
        try:
            assert list(await cat.databases()) == ["default"]
            await cat.create_database("b_db", {"k": "v"})
            await cat.create_database("a_db", {})
            with pytest.raises(AlreadyExists):
                await cat.create_database("a_db", {})
            with pytest.raises(AlreadyExists):
                await cat.create_database("default", {})
            assert list(await cat.databases()) == ["default", "b_db", "a_db"]  # creation order
            await cat.alter_database("b_db", {"x": "1"}, ["k"])
            assert (await cat.database("b_db"))["properties"] == {"x": "1"}
            with pytest.raises(NotFound):
                await cat.alter_database("nope", {}, [])
            await cat.drop_database("a_db")
            assert not await cat.has_database("a_db") and await cat.has_database("default")

            await cat.set_alias("default", "live", "v1", create=True)
            with pytest.raises(AlreadyExists):
                await cat.set_alias("default", "live", "v2", create=True)
            await cat.set_alias("default", "live", "v2", create=False)
            assert await cat.resolve_alias("default", "live") == "v2"
            assert await cat.resolve_alias("b_db", "live") is None  # aliases are per database
            await cat.drop_aliases_of("default", "v2")
            assert await cat.aliases("default") == {}

            await store.create_collection(_create("c"), db="b_db")
            assert await cat.add_partition("b_db/c", "p2")
            assert await cat.add_partition("b_db/c", "p1")
            assert not await cat.add_partition("b_db/c", "p1")
            await cat.set_partitions_loaded("b_db/c", ["p1"], True)
            rec = await store.collection("b_db/c")
            assert rec is not None and rec.partitions == ["p2", "p1"] and rec.loaded_partitions == ["p1"]
            await store.set_loaded("b_db/c", True)  # loading the collection supersedes partition loads
            rec = await store.collection("b_db/c")
            assert rec is not None and rec.loaded and rec.loaded_partitions == []
            await cat.drop_partition("b_db/c", "p2")
            await cat.set_properties("b_db/c", {"collection.ttl.seconds": "60"})
            rec = await store.collection("b_db/c")
            assert rec is not None and rec.partitions == ["p1"] and rec.properties == {"collection.ttl.seconds": "60"}
            await store.rename_collection("b_db/c", "b_db/d", _create("d"))
            rec = await store.collection("b_db/d")
            assert rec is not None and rec.partitions == ["p1"] and rec.name == "d"
            assert await store.collection_keys() == ["b_db/d"]
        finally:
            await store.close()

    run(go())
