"""A privilege check on a collection named through an alias is made on the collection the alias
points at (Milvus's privilege interceptor resolves aliases the same way)."""

from __future__ import annotations

import asyncio

from shardproxy.auth.interceptor import resolve_aliases
from shardproxy.auth.privileges import Grant, decide
from shardproxy.auth.rpc_table import required_check

ALIASES = {("default", "live"): "products_v2", ("shop", "live"): "items"}


async def _resolve(db: str, name: str) -> str:
    return ALIASES.get((db, name), name)


async def _broken(db: str, name: str) -> str:
    raise ConnectionError("redis down")


def _check(method: str, request: object, db: str = "") -> object:
    return asyncio.run(resolve_aliases(required_check(f"/milvus.proto.milvus.MilvusService/{method}", request, db),
                                       _resolve))


def test_alias_resolved_per_database_and_grant_on_collection_applies() -> None:
    from pymilvus.grpc_gen import milvus_pb2

    check = _check("Search", milvus_pb2.SearchRequest(collection_name="live"))
    assert check.object_names == ("products_v2",)
    assert _check("Search", milvus_pb2.SearchRequest(collection_name="live", db_name="shop")).object_names == ("items",)
    assert _check("Search", milvus_pb2.SearchRequest(collection_name="other")).object_names == ("other",)
    grants = [Grant("readers", "Collection", "products_v2", "default", "Search", "root")]
    assert decide("alice", ["readers"], check, grants, {})
    on_alias = [Grant("readers", "Collection", "live", "default", "Search", "root")]
    assert not decide("alice", ["readers"], check, on_alias, {})  # as Milvus: the grant names the collection


def test_wildcards_global_objects_and_resolver_failures_left_alone() -> None:
    from pymilvus.grpc_gen import milvus_pb2

    check = required_check("/milvus.proto.milvus.MilvusService/Search", milvus_pb2.SearchRequest(collection_name="live"))
    assert asyncio.run(resolve_aliases(check, None)) == check
    assert asyncio.run(resolve_aliases(check, _broken)).object_names == ("live",)
    glob = required_check("/milvus.proto.milvus.MilvusService/CreateCredential", milvus_pb2.CreateCredentialRequest())
    assert asyncio.run(resolve_aliases(glob, _resolve)) == glob
