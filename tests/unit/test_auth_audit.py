"""Audit summaries name the object of a call and never carry a secret (pure)."""

from __future__ import annotations

import base64

from pymilvus.grpc_gen import milvus_pb2
from shopbyimage.v1 import admin_pb2

from shardproxy.auth import audit


def test_credential_requests_lose_their_passwords() -> None:
    req = milvus_pb2.CreateCredentialRequest(username="bob", password=base64.b64encode(b"s3cret!").decode())
    out = audit.summary(req)
    assert out == {"username": "bob"}
    upd = milvus_pb2.UpdateCredentialRequest(username="bob", oldPassword="b2xk", newPassword="bmV3")
    assert audit.summary(upd) == {"username": "bob"}


def test_grants_and_ddl_name_their_objects() -> None:
    grant = milvus_pb2.OperatePrivilegeV2Request(
        role=milvus_pb2.RoleEntity(name="r"), db_name="default", collection_name="goods",
        grantor=milvus_pb2.GrantorEntity(privilege=milvus_pb2.PrivilegeEntity(name="Insert")))
    out = audit.summary(grant)
    assert out["role"] == {"name": "r"} and out["collection_name"] == "goods"
    assert out["grantor"] == {"privilege": {"name": "Insert"}}
    drop = milvus_pb2.DropCollectionRequest(collection_name="goods")
    assert audit.summary(drop) == {"collection_name": "goods"}


def test_what_is_audited() -> None:
    assert audit.audited("milvus.proto.milvus.MilvusService", "DropCollection")
    assert audit.audited("milvus.proto.milvus.MilvusService", "OperatePrivilegeV2")
    assert not audit.audited("milvus.proto.milvus.MilvusService", "Search")
    assert audit.audited("shopbyimage.v1.ShardAdmin", "AddNode")
    assert not audit.audited("shopbyimage.v1.ShardAdmin", "ListNodes")
    assert audit.summary(admin_pb2.AddNodeRequest(address="h:1", id="n1")) == {"address": "h:1", "id": "n1"}
