"""The authorization table and decision, pure: no servers."""

from __future__ import annotations

import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2
from shopbyimage.v1 import admin_pb2, image_search_pb2

from shardproxy.auth.privileges import (
    BUILTIN_GROUPS, Grant, decide, denial_message, is_own_request, privilege_level, v2_grant_target,
)
from shardproxy.auth.rpc_table import MILVUS_RULES, MILVUS_SERVICE, is_open, required_check

M = f"/{MILVUS_SERVICE}/"


def test_table_matches_the_privileges_milvus_declares_in_its_proto() -> None:
    ext = common_pb2.privilege_ext_obj
    service = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
    declared = {}
    for m in service.methods:
        opts = m.input_type.GetOptions()
        if not opts.HasExtension(ext):
            continue
        e = opts.Extensions[ext]
        fields = {f.number: f.name for f in m.input_type.fields}
        field = fields.get(e.object_name_indexs) or fields.get(e.object_name_index)
        declared[m.name] = (common_pb2.ObjectType.Name(e.object_type),
                            common_pb2.ObjectPrivilege.Name(e.object_privilege)[len("Privilege"):], field)
    ours = {name: (r.object_type, r.privilege, r.field) for name, r in MILVUS_RULES.items()}
    assert ours == declared


@pytest.mark.parametrize("method,request_,privilege,names", [
    ("Search", milvus_pb2.SearchRequest(collection_name="c1"), "Search", ("c1",)),
    ("HybridSearch", milvus_pb2.HybridSearchRequest(collection_name="c1"), "Search", ("c1",)),
    ("Query", milvus_pb2.QueryRequest(collection_name="c1"), "Query", ("c1",)),
    ("Insert", milvus_pb2.InsertRequest(collection_name="c1"), "Insert", ("c1",)),
    ("Upsert", milvus_pb2.UpsertRequest(collection_name="c1"), "Upsert", ("c1",)),
    ("Delete", milvus_pb2.DeleteRequest(collection_name="c1"), "Delete", ("c1",)),
    ("LoadCollection", milvus_pb2.LoadCollectionRequest(collection_name="c1"), "Load", ("c1",)),
    ("CreateIndex", milvus_pb2.CreateIndexRequest(collection_name="c1"), "CreateIndex", ("c1",)),
    ("DropCollection", milvus_pb2.DropCollectionRequest(collection_name="c1"), "DropCollection", ("*",)),
    ("Flush", milvus_pb2.FlushRequest(collection_names=["a", "b"]), "Flush", ("a", "b")),
])
def test_required_check_names_privilege_and_object(method, request_, privilege, names) -> None:  # type: ignore[no-untyped-def]
    check = required_check(M + method, request_)
    assert check is not None
    assert (check.privilege, check.object_names, check.db) == (privilege, names, "default")


def test_unchecked_rpcs_and_open_services() -> None:
    assert required_check(M + "Connect", milvus_pb2.ConnectRequest()) is None
    assert required_check(M + "ShowCollections", milvus_pb2.ShowCollectionsRequest()) is None
    assert is_open("/grpc.health.v1.Health/Check")
    assert is_open("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not is_open(M + "Search")


def test_db_from_request_then_header() -> None:
    req = milvus_pb2.SearchRequest(collection_name="c", db_name="shop")
    assert required_check(M + "Search", req, "other").db == "shop"  # type: ignore[union-attr]
    req2 = milvus_pb2.SearchRequest(collection_name="c")
    assert required_check(M + "Search", req2, "other").db == "other"  # type: ignore[union-attr]


def test_database_rpcs_check_the_callers_database_not_the_target() -> None:
    # CreateDatabase(db_name="new") acts on "new"; the caller works in the header's db (else default)
    req = milvus_pb2.CreateDatabaseRequest(db_name="new")
    assert required_check(M + "CreateDatabase", req, "").db == "default"  # type: ignore[union-attr]
    assert required_check(M + "DropDatabase", milvus_pb2.DropDatabaseRequest(db_name="new"), "shop").db == "shop"  # type: ignore[union-attr]
    # the privilege table covers the catalog RPCs the proxy now implements
    for method, privilege in (("CreatePartition", "CreatePartition"), ("CreateAlias", "CreateAlias"),
                              ("AlterCollection", "CreateCollection"), ("HybridSearch", "Search"),
                              ("RenameCollection", "RenameCollection"), ("ManualCompaction", "Compaction"),
                              ("CreateDatabase", "CreateDatabase")):
        req_cls = getattr(milvus_pb2, method + "Request")
        assert required_check(M + method, req_cls(), "").privilege == privilege, method  # type: ignore[union-attr]


def test_own_services() -> None:
    admin = required_check("/shopbyimage.v1.ShardAdmin/ListNodes", admin_pb2.ListNodesRequest())
    assert admin is not None and admin.admin
    img = required_check("/shopbyimage.v1.ImageSearch/SearchByImage",
                         image_search_pb2.SearchByImageRequest(collection="shoes"))
    assert img is not None and (img.privilege, img.object_names) == ("Search", ("shoes",))


def _check(method: str, req: object, db: str = ""):  # type: ignore[no-untyped-def]
    c = required_check(M + method, req, db)
    assert c is not None
    return c


SEARCH_C1 = _check("Search", milvus_pb2.SearchRequest(collection_name="c1"))
INSERT_C1 = _check("Insert", milvus_pb2.InsertRequest(collection_name="c1"))
DROP = _check("DropCollection", milvus_pb2.DropCollectionRequest(collection_name="c1"))


def test_root_and_admin_pass_everything_nobody_else_by_default() -> None:
    assert decide("root", [], DROP, [], {})
    assert decide("bob", ["admin"], DROP, [], {})
    assert not decide("bob", [], DROP, [], {})
    assert not decide("bob", [], SEARCH_C1, [], {})


def test_direct_grant_on_collection_and_star() -> None:
    g = Grant("reader", "Collection", "c1", "default", "Search")
    assert decide("bob", ["reader"], SEARCH_C1, [g], {})
    assert not decide("bob", ["reader"], INSERT_C1, [g], {})
    other = _check("Search", milvus_pb2.SearchRequest(collection_name="c2"))
    assert not decide("bob", ["reader"], other, [g], {})
    star = Grant("reader", "Collection", "*", "default", "Search")
    assert decide("bob", ["reader"], other, [star], {})
    assert not decide("bob", ["other-role"], other, [star], {})  # a grant of another role


def test_grants_are_per_database() -> None:
    g = Grant("reader", "Collection", "*", "default", "Search")
    in_shop = _check("Search", milvus_pb2.SearchRequest(collection_name="c1", db_name="shop"))
    assert not decide("bob", ["reader"], in_shop, [g], {})
    assert decide("bob", ["reader"], in_shop, [Grant("reader", "Collection", "*", "*", "Search")], {})


def test_public_grants_apply_to_every_user() -> None:
    g = Grant("public", "Collection", "*", "default", "Search")
    assert decide("bob", [], SEARCH_C1, [g], {})


def test_builtin_and_custom_groups() -> None:
    ro = Grant("r", "Collection", "c1", "default", "CollectionReadOnly")
    assert decide("bob", ["r"], SEARCH_C1, [ro], {})
    assert not decide("bob", ["r"], INSERT_C1, [ro], {})
    rw = Grant("r", "Collection", "c1", "default", "CollectionReadWrite")
    assert decide("bob", ["r"], INSERT_C1, [rw], {})
    dba = Grant("r", "Global", "*", "default", "DatabaseAdmin")
    assert decide("bob", ["r"], DROP, [dba], {})
    custom = Grant("r", "Collection", "*", "default", "writers")
    assert decide("bob", ["r"], INSERT_C1, [custom], {"writers": frozenset({"Insert"})})
    assert not decide("bob", ["r"], SEARCH_C1, [custom], {"writers": frozenset({"Insert"})})
    assert decide("bob", ["r"], DROP, [Grant("r", "Global", "*", "default", "All")], {})


def test_multi_object_calls_need_every_object() -> None:
    flush = _check("Flush", milvus_pb2.FlushRequest(collection_names=["a", "b"]))
    only_a = Grant("w", "Collection", "a", "default", "Flush")
    assert not decide("bob", ["w"], flush, [only_a], {})
    assert decide("bob", ["w"], flush, [only_a, Grant("w", "Collection", "b", "default", "Flush")], {})


def test_admin_api_needs_admin_role() -> None:
    c = required_check("/shopbyimage.v1.ShardAdmin/AddNode", admin_pb2.AddNodeRequest())
    assert c is not None
    assert not decide("bob", ["r"], c, [Grant("r", "Global", "*", "*", "All")], {})
    assert decide("bob", ["admin"], c, [], {})


def test_users_may_change_their_own_password_and_read_own_grants() -> None:
    upd = _check("UpdateCredential", milvus_pb2.UpdateCredentialRequest(username="bob"))
    assert decide("bob", [], upd, [], {})
    assert not decide("eve", [], upd, [], {})
    sel = milvus_pb2.SelectGrantRequest(entity=milvus_pb2.GrantEntity(role=milvus_pb2.RoleEntity(name="r")))
    assert is_own_request("SelectGrant", sel, ["r"])
    assert not is_own_request("SelectGrant", sel, ["x"])


def test_denial_message_is_milvus_form() -> None:
    assert denial_message(INSERT_C1, "bob") == "PrivilegeInsert: permission deny to bob in the `default` database"


def test_v2_grant_targets_follow_privilege_level() -> None:
    assert v2_grant_target("Search", "default", "c1") == ("Collection", "c1", "default")
    assert v2_grant_target("CollectionReadOnly", "default", "*") == ("Collection", "*", "default")
    assert v2_grant_target("DatabaseAdmin", "shop", "*") == ("Global", "*", "shop")
    assert v2_grant_target("ClusterReadOnly", "default", "*") == ("Global", "*", "*")
    assert v2_grant_target("CreateDatabase", "default", "*") == ("Global", "*", "*")
    assert privilege_level("writers", {"writers": ["Insert"]}) == "Collection"
    assert BUILTIN_GROUPS["CollectionReadWrite"] > BUILTIN_GROUPS["CollectionReadOnly"]
