"""Milvus's RBAC through the proxy with pymilvus's own MilvusClient methods: users, roles,
grants (v1 and v2), privilege groups; a reader can read and nothing else; changes reach a
second proxy; the admin API and CLI need the admin role; nothing secret in logs or metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from devkit import procs
from devkit.devcluster import DevCluster
from tests.helpers import eventually, make_collection, make_rows

PW = {"reader": "reader-pw-1", "writer": "writer-pw-2", "nobody": "nobody-pw-3"}


@pytest.fixture(scope="module")
def setup(auth_cluster: DevCluster) -> dict:
    root = auth_cluster.client()
    for user, pw in PW.items():
        if user not in root.list_users():
            root.create_user(user, pw)
    if "readers" not in root.list_roles():
        root.create_role("readers")
        root.grant_privilege_v2("readers", "CollectionReadOnly", "goods")
        root.grant_role("reader", "readers")
    make_collection(root, "goods", 8)
    rows = make_rows(200, 8, seed=3)
    root.insert("goods", rows)
    make_collection(root, "other", 8)
    return {"root": root, "rows": rows}


def denied(fn, privilege: str, user: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        fn()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == f"Privilege{privilege}: permission deny to {user} in the `default` database"


def test_reader_reads_but_cannot_write_or_drop(auth_cluster: DevCluster, setup: dict) -> None:
    reader = auth_cluster.client(token=f"reader:{PW['reader']}")
    rows = setup["rows"]
    hits = eventually(lambda: reader.search("goods", [rows[7]["vector"]], limit=1))
    assert hits[0][0]["id"] == 7
    assert reader.query("goods", filter="id in [1, 2]", output_fields=["id"])
    denied(lambda: reader.insert("goods", make_rows(1, 8, start=9000)), "Insert", "reader")
    denied(lambda: reader.delete("goods", ids=[1]), "Delete", "reader")
    denied(lambda: reader.upsert("goods", make_rows(1, 8, start=1)), "Upsert", "reader")
    denied(lambda: reader.drop_collection("goods"), "DropCollection", "reader")
    denied(lambda: reader.search("other", [rows[7]["vector"]], limit=1), "Search", "reader")  # another collection
    denied(lambda: reader.create_user("x1", "xxxxxxx"), "CreateOwnership", "reader")
    reader.close()


def test_grant_on_a_collection_covers_its_alias(auth_cluster: DevCluster, setup: dict) -> None:
    """Milvus checks a call made through an alias against the collection the alias points at."""
    root, rows = setup["root"], setup["rows"]
    if "goods_live" in root.list_aliases("goods")["aliases"]:
        root.drop_alias("goods_live")
    root.create_alias("goods", "goods_live")
    reader = auth_cluster.client(token=f"reader:{PW['reader']}")
    try:
        hits = eventually(lambda: reader.search("goods_live", [rows[7]["vector"]], limit=1))
        assert hits[0][0]["id"] == 7
        assert [r["id"] for r in reader.query("goods_live", filter="id in [3]", output_fields=["id"])] == [3]
        denied(lambda: reader.insert("goods_live", make_rows(1, 8, start=9001)), "Insert", "reader")
        # switched to a collection the reader has no grant on: refused through the same alias
        root.alter_alias("other", "goods_live")
        eventually(lambda: denied(lambda: reader.search("goods_live", [rows[7]["vector"]], limit=1), "Search", "reader"),
                   errors=(Exception, pytest.fail.Exception))
    finally:
        reader.close()
        root.drop_alias("goods_live")


def test_user_without_roles_has_only_public(auth_cluster: DevCluster, setup: dict) -> None:
    nobody = auth_cluster.client(token=f"nobody:{PW['nobody']}")
    assert "goods" in nobody.list_collections()  # no privilege needed, as on Milvus
    denied(lambda: nobody.query("goods", filter="id in [1]"), "Query", "nobody")
    # a user may change their own password (User object of their own)
    nobody.update_password("nobody", PW["nobody"], "nobody-pw-4")
    nobody.close()
    again = auth_cluster.client(token="nobody:nobody-pw-4")
    again.update_password("nobody", "nobody-pw-4", PW["nobody"])
    again.close()


def test_grant_and_revoke_reach_a_second_proxy(auth_cluster: DevCluster, setup: dict) -> None:
    root: MilvusClient = setup["root"]
    b = auth_cluster.more_proxies[0]
    writer_b = MilvusClient(**{**auth_cluster.connect_kwargs(token=f"writer:{PW['writer']}"), "uri": f"http://{b.address}"})
    row = make_rows(1, 8, start=5000)
    denied(lambda: writer_b.insert("goods", row), "Insert", "writer")
    if "writers" not in root.list_roles():
        root.create_role("writers")
    root.grant_role("writer", "writers")
    root.grant_privilege("writers", "Collection", "Insert", "goods")  # through proxy A
    assert eventually(lambda: writer_b.insert("goods", row), timeout=10)["insert_count"] == 1
    root.revoke_privilege("writers", "Collection", "Insert", "goods")

    def refused() -> None:
        denied(lambda: writer_b.insert("goods", row), "Insert", "writer")

    eventually(refused, timeout=10, errors=(AssertionError, pytest.fail.Exception))
    writer_b.close()


def milvus_error(fn) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(MilvusException) as info:
        fn()
    return info.value.message


def test_rbac_calls_answer_like_milvus(auth_cluster: DevCluster, setup: dict) -> None:
    root: MilvusClient = setup["root"]
    assert milvus_error(lambda: root.create_user("reader", "another-pw")) == "user already exists:reader"
    assert milvus_error(lambda: root.create_role("readers")) == 'role [name:"readers"] already exists'
    missing_role = "not found the role, maybe the role isn't existed or internal system error"
    assert milvus_error(lambda: root.drop_role("no_such_role")) == missing_role
    assert milvus_error(lambda: root.grant_role("reader", "no_such_role")) == missing_role
    assert milvus_error(lambda: root.grant_role("no_such_user", "readers")).startswith("not found the user")
    assert milvus_error(lambda: root.grant_privilege("no_such_role", "Collection", "Search", "goods")) == missing_role
    assert "password" in milvus_error(lambda: root.create_user("shorty", "abc"))
    assert milvus_error(lambda: root.drop_user("root")) == "root user cannot be deleted"
    assert "privilege name" in milvus_error(lambda: root.grant_privilege("readers", "Collection", "Fly", "goods"))
    # describe / list
    assert {"reader", "writer", "root"} <= set(root.list_users())
    assert {"admin", "public", "readers"} <= set(root.list_roles())
    assert root.describe_user("reader")["roles"] == ("readers",)
    grants = root.describe_role("readers")["privileges"]
    assert [(g["object_type"], g["object_name"], g["privilege"]) for g in grants] == [
        ("Collection", "goods", "CollectionReadOnly")]
    # a role with grants is not dropped without force (Milvus's message), with force it is
    root.create_role("temp_role")
    root.grant_privilege("temp_role", "Global", "DescribeCollection", "*")
    assert "revoke privileges" in milvus_error(lambda: root.drop_role("temp_role")).lower()
    root.drop_role("temp_role", force_drop=True)
    assert "temp_role" not in root.list_roles()


def test_privilege_groups(auth_cluster: DevCluster, setup: dict) -> None:
    root: MilvusClient = setup["root"]
    names = {g["privilege_group"] for g in root.list_privilege_groups()}
    assert {"CollectionReadOnly", "CollectionReadWrite", "CollectionAdmin", "DatabaseReadOnly", "DatabaseAdmin",
            "ClusterReadOnly", "ClusterAdmin"} <= names
    root.create_privilege_group("searchers")
    assert "already exists" in milvus_error(lambda: root.create_privilege_group("searchers"))
    root.add_privileges_to_group("searchers", ["Search", "Query"])
    root.create_role("group_role")
    root.grant_privilege_v2("group_role", "searchers", "other")
    root.create_user("grouped", "grouped-pw-1")
    root.grant_role("grouped", "group_role")
    grouped = auth_cluster.client(token="grouped:grouped-pw-1")
    assert grouped.query("other", filter="", output_fields=["count(*)"])[0]["count(*)"] == 0
    denied(lambda: grouped.insert("other", make_rows(1, 8)), "Insert", "grouped")
    assert "being used" in milvus_error(lambda: root.drop_privilege_group("searchers"))
    grouped.close()


def admin_cli(c: DevCluster, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": procs.project_pythonpath(), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    if token is not None:
        env["SHARDPROXY_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "shardproxy", *args, "--proxy", c.proxy_address],
                          capture_output=True, text=True, timeout=120, env=env)


def test_admin_api_and_cli_need_the_admin_role(auth_cluster: DevCluster, setup: dict) -> None:
    c = auth_cluster
    out = admin_cli(c, f"reader:{PW['reader']}", "node", "list", "--json")
    assert out.returncode == 2 and "PERMISSION_DENIED" in out.stderr + out.stdout
    out = admin_cli(c, None, "cluster", "status", "--json")
    assert out.returncode == 2 and "UNAUTHENTICATED" in out.stderr + out.stdout
    out = admin_cli(c, c.token, "node", "list", "--json")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["nodes"]) == 1
    # a user given the admin role may use it too (flag instead of environment)
    root: MilvusClient = setup["root"]
    if "opsadmin" not in root.list_users():
        root.create_user("opsadmin", "opsadmin-pw-1")
        root.grant_role("opsadmin", "admin")
    out = eventually(lambda: _ok(admin_cli(c, None, "cluster", "status", "--json", "--token", "opsadmin:opsadmin-pw-1")))
    assert json.loads(out.stdout)["nodes"]


def _ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert p.returncode == 0, p.stderr
    return p


def test_rate_limit_per_user(auth_cluster: DevCluster, setup: dict) -> None:
    c_proxy = auth_cluster.more_proxies[1]  # 2 requests/s, burst 3
    reader = MilvusClient(**{**auth_cluster.connect_kwargs(token=f"reader:{PW['reader']}"),
                             "uri": f"http://{c_proxy.address}"})
    codes = []
    for _ in range(10):
        try:
            reader.has_collection("goods")
            codes.append("OK")
        except grpc.RpcError as exc:
            codes.append(exc.code().name)
            assert "retry after" in exc.details()
            assert int(dict(exc.trailing_metadata())["retry-after-ms"]) > 0
        except MilvusException as exc:  # pymilvus may wrap it
            codes.append("WRAPPED:" + exc.message)
    assert "RESOURCE_EXHAUSTED" in codes, codes
    reader.close()


def test_audit_log_and_no_secrets_in_logs_or_metrics(auth_cluster: DevCluster, setup: dict) -> None:
    c = auth_cluster
    lines = [json.loads(x) for x in (c.data_dir / "audit.log").read_text().splitlines() if x.startswith("{")]
    created = [x for x in lines if x["rpc"] == "CreateCredential" and x["target"].get("username") == "reader"]
    assert created and created[0]["user"] == "root" and created[0]["outcome"] == "ok" and created[0]["ts"]
    assert any(x["rpc"] == "CreateCollection" and x["target"].get("collection_name") == "goods" for x in lines)
    assert any(x["rpc"] == "AddNode" and x["outcome"] == "ok" for x in lines)  # admin operation
    assert any(x["rpc"] == "DropCollection" and x["outcome"] == "denied" and x["user"] == "reader" for x in lines)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_port}/metrics", timeout=10).read().decode()  # type: ignore[attr-defined]
    assert "shardproxy_auth_failures_total" in metrics and "shardproxy_auth_denied_total" in metrics
    texts = [metrics, (c.data_dir / "audit.log").read_text()]
    texts += [p.log_path.read_text(errors="replace") for p in c.all_proxies]
    secrets = [*PW.values(), c.token.split(":", 1)[1], "grouped-pw-1", "opsadmin-pw-1", "nobody-pw-4"]
    for text in texts:
        for secret in secrets:
            assert secret not in text
