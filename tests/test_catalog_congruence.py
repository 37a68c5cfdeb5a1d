"""Congruence of the catalog surface: databases, partitions (manual and partition-key), aliases,
alters, compaction/flush and DDL errors give the same answers through the proxy over 3 nodes
as on one plain milvus-lite node with the same calls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymilvus import DataType, MilvusClient

from tests.catalog_helpers import describe_norm, hits, outcome, rows_by_id, same
from tests.conftest import node_clients
from tests.helpers import make_collection, make_rows

DIM = 8


@pytest.fixture(scope="module")
def dbs(dev_cluster, direct_node):  # type: ignore[no-untyped-def]
    """A (proxy, node) pair of clients on database ``cat_db`` (created through each)."""
    admin_p, admin_d = dev_cluster.client(), MilvusClient(uri=f"http://{direct_node.address}")
    for c in (admin_p, admin_d):
        if "cat_db" not in c.list_databases():
            c.create_database("cat_db", properties={"database.max.collections": "20"})
    p = dev_cluster.client(uri=f"{dev_cluster.proxy_uri}/cat_db")  # the db in the URI, as users write it
    d = MilvusClient(uri=f"http://{direct_node.address}/cat_db")
    yield p, d
    for c in (p, d, admin_p, admin_d):
        c.close()


def test_databases_same(dev_cluster, proxy_client, direct_client, dbs) -> None:  # type: ignore[no-untyped-def]
    p, d = dbs
    assert "cat_db" in proxy_client.list_databases()
    same(proxy_client, direct_client, lambda c: c.describe_database("cat_db"))
    same(proxy_client, direct_client, lambda c: c.alter_database_properties("cat_db", {"k": "v"}))
    same(proxy_client, direct_client, lambda c: c.describe_database("cat_db"))
    same(proxy_client, direct_client, lambda c: c.drop_database_properties("cat_db", ["k"]))
    same(proxy_client, direct_client, lambda c: c.describe_database("default"))
    # collections are per database: same name in default and in cat_db, different data
    for c in (p, d):
        make_collection(c, "per_db", DIM)
        c.insert("per_db", make_rows(30, DIM, seed=1))
    for c in (proxy_client, direct_client):
        make_collection(c, "per_db", DIM)
        c.insert("per_db", make_rows(5, DIM, seed=2, start=1000))
    same(p, d, lambda c: c.query("per_db", filter="id >= 0", output_fields=["count(*)"]))
    same(proxy_client, direct_client, lambda c: c.query("per_db", filter="id >= 0", output_fields=["count(*)"]))
    q = make_rows(2, DIM, seed=9)
    same(p, d, lambda c: c.search("per_db", [r["vector"] for r in q], limit=4, output_fields=["color"]), hits)
    assert "per_db" in p.list_collections()
    # use_database switches the client's db (pymilvus sends the dbname header)
    for c in (proxy_client, direct_client):
        c.use_database("cat_db")
    try:
        same(proxy_client, direct_client, lambda c: sorted(c.list_collections()))
        same(proxy_client, direct_client, lambda c: c.get(collection_name="per_db", ids=[1, 2], output_fields=["color"]),
             rows_by_id)
    finally:
        for c in (proxy_client, direct_client):
            c.use_database("default")
    # the node saw the collection in its own database, not in default
    for name, nc in node_clients(dev_cluster).items():
        nc.use_database("cat_db")
        assert "per_db" in nc.list_collections(), name
        nc.close()
    for c in (proxy_client, direct_client):
        c.drop_collection("per_db")


def test_database_errors_same(proxy_client, direct_client, dbs) -> None:  # type: ignore[no-untyped-def]
    same(proxy_client, direct_client, lambda c: c.create_database("cat_db"))  # exists
    same(proxy_client, direct_client, lambda c: c.describe_database("no_such_db"))
    same(proxy_client, direct_client, lambda c: c.drop_database("no_such_db"))
    same(proxy_client, direct_client, lambda c: c.drop_database("default"))
    same(proxy_client, direct_client, lambda c: c.use_database("no_such_db"))
    p, d = dbs
    for c in (p, d):
        make_collection(c, "keeps_db", DIM)
    same(proxy_client, direct_client, lambda c: c.drop_database("cat_db"))  # not empty
    for c in (p, d):
        c.drop_collection("keeps_db")


def test_create_and_drop_database_round_trip(proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    same(proxy_client, direct_client, lambda c: c.create_database("tmp_db"))
    assert "tmp_db" in proxy_client.list_databases()
    same(proxy_client, direct_client, lambda c: c.drop_database("tmp_db"))
    assert "tmp_db" not in proxy_client.list_databases()


@pytest.fixture(scope="module")
def parts(proxy_client, direct_client):  # type: ignore[no-untyped-def]
    """``cat_parts`` with partitions p1 (rows 0..99), p2 (rows 100..149), empty p3, and _default
    (rows 150..199)."""
    rows = make_rows(200, DIM, seed=7)
    for c in (proxy_client, direct_client):
        make_collection(c, "cat_parts", DIM)
        for p in ("p1", "p2", "p3"):
            c.create_partition("cat_parts", p)
        c.insert("cat_parts", rows[:100], partition_name="p1")
        c.insert("cat_parts", rows[100:150], partition_name="p2")
        c.insert("cat_parts", rows[150:])
    return rows


def test_partitions_same(proxy_client, direct_client, parts) -> None:  # type: ignore[no-untyped-def]
    same(proxy_client, direct_client, lambda c: c.list_partitions("cat_parts"))
    same(proxy_client, direct_client, lambda c: c.has_partition("cat_parts", "p2"))
    same(proxy_client, direct_client, lambda c: c.has_partition("cat_parts", "nope"))
    for p in ("p1", "p2", "p3", "_default"):
        same(proxy_client, direct_client, lambda c: c.get_partition_stats("cat_parts", p))
    q = [parts[3]["vector"], parts[120]["vector"]]
    same(proxy_client, direct_client,
         lambda c: c.search("cat_parts", q, limit=5, partition_names=["p2"], output_fields=["color"]), hits)
    same(proxy_client, direct_client,  # an empty partition
         lambda c: c.search("cat_parts", q, limit=5, partition_names=["p3"]), hits)
    same(proxy_client, direct_client,
         lambda c: c.query("cat_parts", filter="price < 30", partition_names=["p1", "_default"],
                           output_fields=["color"]), rows_by_id)
    same(proxy_client, direct_client, lambda c: c.create_partition("cat_parts", "p1"))  # exists
    same(proxy_client, direct_client, lambda c: c.drop_partition("cat_parts", "_default"))
    same(proxy_client, direct_client, lambda c: c.drop_partition("cat_parts", "nope"))
    same(proxy_client, direct_client, lambda c: c.get_partition_stats("cat_parts", "nope"))
    same(proxy_client, direct_client, lambda c: c.create_partition("no_such_coll", "p1"))
    # milvus-lite has no partition-level load: the proxy passes its answer through
    same(proxy_client, direct_client, lambda c: c.load_partitions("cat_parts", ["p1"]))


def test_partition_ids_are_the_proxys_own(dev_cluster, proxy_client, parts) -> None:  # type: ignore[no-untyped-def]
    from pymilvus.grpc_gen import milvus_pb2

    stub = proxy_client._get_connection()._stub
    a = stub.ShowPartitions(milvus_pb2.ShowPartitionsRequest(collection_name="cat_parts"))
    b = stub.ShowPartitions(milvus_pb2.ShowPartitionsRequest(collection_name="cat_parts"))
    assert list(a.partitionIDs) == list(b.partitionIDs)
    assert len(set(a.partitionIDs)) == len(a.partition_names) == 4 and all(i > 0 for i in a.partitionIDs)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.lists(st.sampled_from(["p1", "p2", "p3", "_default"]), min_size=1, max_size=3, unique=True),
       limit=st.integers(1, 30), qi=st.integers(0, 199), price=st.integers(0, 100))
def test_partition_choices_same(proxy_client, direct_client, parts, chosen, limit, qi, price) -> None:  # type: ignore[no-untyped-def]
    q = [parts[qi]["vector"]]
    same(proxy_client, direct_client,
         lambda c: c.search("cat_parts", q, limit=limit, partition_names=chosen, filter=f"price < {price}"), hits)
    same(proxy_client, direct_client,
         lambda c: c.query("cat_parts", filter=f"price < {price}", partition_names=chosen,
                           output_fields=["count(*)"]))


def test_partition_key_collection_same(proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    rows = [{"id": i, "tenant": f"t{i % 5}", "vector": rng.standard_normal(DIM).tolist()} for i in range(120)]
    for c in (proxy_client, direct_client):
        if c.has_collection("cat_pkey"):
            c.drop_collection("cat_pkey")
        s = c.create_schema(auto_id=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("tenant", DataType.VARCHAR, max_length=16, is_partition_key=True)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
        ip = c.prepare_index_params()
        ip.add_index("vector", metric_type="L2", index_type="FLAT")
        c.create_collection("cat_pkey", schema=s, index_params=ip, num_partitions=8, consistency_level="Strong")
        c.insert("cat_pkey", rows)
    same(proxy_client, direct_client, lambda c: c.list_partitions("cat_pkey"))
    same(proxy_client, direct_client, lambda c: c.create_partition("cat_pkey", "manual"))
    for t in ("t1", "t3"):
        same(proxy_client, direct_client,
             lambda c: c.search("cat_pkey", [rows[7]["vector"]], limit=6, filter=f'tenant == "{t}"',
                                output_fields=["tenant"]), hits)
    same(proxy_client, direct_client,
         lambda c: c.query("cat_pkey", filter='tenant in ["t0", "t2"]', output_fields=["count(*)"]))
    same(proxy_client, direct_client, lambda c: describe_norm(c.describe_collection("cat_pkey")))


def test_aliases_same(proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    for c in (proxy_client, direct_client):
        for name, seed in (("cat_v1", 1), ("cat_v2", 2)):
            make_collection(c, name, DIM)
            c.insert(name, make_rows(40, DIM, seed=seed))
        for a in c.list_aliases().get("aliases", []):
            if a.startswith("cat_"):
                c.drop_alias(a)
    same(proxy_client, direct_client, lambda c: c.create_alias("cat_v1", "cat_live"))
    # Milvus names the database in DescribeAlias; milvus-lite leaves it out
    no_db = lambda d: {k: v for k, v in d.items() if k != "db_name"}  # noqa: E731
    same(proxy_client, direct_client, lambda c: c.describe_alias("cat_live"), no_db)
    same(proxy_client, direct_client, lambda c: c.list_aliases("cat_v1"), no_db)
    q = [make_rows(1, DIM, seed=3)[0]["vector"]]
    r1 = same(proxy_client, direct_client, lambda c: c.search("cat_live", q, limit=3), hits)
    same(proxy_client, direct_client, lambda c: c.alter_alias("cat_v2", "cat_live"))
    r2 = same(proxy_client, direct_client, lambda c: c.search("cat_live", q, limit=3), hits)
    assert hits(r1) != hits(r2)  # the alias really moved
    same(proxy_client, direct_client, lambda c: c.query("cat_live", filter="id < 5", output_fields=["color"]), rows_by_id)
    same(proxy_client, direct_client, lambda c: c.create_alias("cat_v1", "cat_live"))  # exists
    same(proxy_client, direct_client, lambda c: c.create_alias("cat_v1", "cat_v2"))  # a collection's name
    same(proxy_client, direct_client, lambda c: c.create_alias("no_such_coll", "cat_x"))
    same(proxy_client, direct_client, lambda c: c.describe_alias("cat_nope"))
    same(proxy_client, direct_client, lambda c: c.alter_alias("cat_v1", "cat_nope"))
    same(proxy_client, direct_client, lambda c: c.drop_alias("cat_live"))
    same(proxy_client, direct_client, lambda c: c.drop_alias("cat_live"))  # again: accepted
    same(proxy_client, direct_client, lambda c: c.describe_alias("cat_live"))


def test_alters_compaction_flush_same(proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    for c in (proxy_client, direct_client):
        make_collection(c, "cat_alter", DIM)
        c.insert("cat_alter", make_rows(50, DIM, seed=4))
        if c.has_collection("cat_renamed"):
            c.drop_collection("cat_renamed")
    same(proxy_client, direct_client,
         lambda c: c.alter_collection_properties("cat_alter", {"collection.ttl.seconds": 3600, "mmap.enabled": True}))
    same(proxy_client, direct_client, lambda c: describe_norm(c.describe_collection("cat_alter")))
    same(proxy_client, direct_client, lambda c: c.drop_collection_properties("cat_alter", ["mmap.enabled"]))
    same(proxy_client, direct_client, lambda c: describe_norm(c.describe_collection("cat_alter")))
    # milvus-lite does not implement these two: the node's answer comes through
    same(proxy_client, direct_client, lambda c: c.add_collection_field("cat_alter", "extra", DataType.INT64, nullable=True))
    same(proxy_client, direct_client, lambda c: c.alter_collection_field("cat_alter", "color", {"max_length": 32}))
    same(proxy_client, direct_client, lambda c: c.flush("cat_alter"))
    cid = proxy_client.compact("cat_alter")
    assert proxy_client.get_compaction_state(cid) == direct_client.get_compaction_state(direct_client.compact("cat_alter"))
    same(proxy_client, direct_client, lambda c: c.rename_collection("cat_alter", "cat_renamed"))
    same(proxy_client, direct_client, lambda c: c.query("cat_renamed", filter="id < 4", output_fields=["color"]), rows_by_id)
    same(proxy_client, direct_client, lambda c: c.has_collection("cat_alter"))
    same(proxy_client, direct_client, lambda c: c.rename_collection("no_such_coll", "cat_x"))


def test_rich_fields_same(proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    """Nullable and default-value fields, dynamic fields, ARRAY, JSON, analyzers, TEXT_MATCH."""
    rows = [
        {"id": 1, "text": "red running shoes", "tags": ["shoe", "red"], "meta": {"k": 1, "brand": "a"}, "v": [1, 0, 0, 0], "x": 5},
        {"id": 2, "text": "blue summer hat", "tags": ["hat"], "meta": None, "n": None, "v": [0, 1, 0, 0]},
        {"id": 3, "text": "red winter hat", "tags": [], "meta": {"k": 2}, "n": 3, "v": [0, 0, 1, 0], "x": 7},
        {"id": 4, "text": "green shoes", "tags": ["shoe"], "meta": {"k": 1}, "n": 9, "v": [0, 0, 0, 1]},
    ]
    for c in (proxy_client, direct_client):
        if c.has_collection("cat_rich"):
            c.drop_collection("cat_rich")
        s = c.create_schema(enable_dynamic_field=True)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("text", DataType.VARCHAR, max_length=200, enable_analyzer=True, enable_match=True)
        s.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=16)
        s.add_field("meta", DataType.JSON, nullable=True)
        s.add_field("n", DataType.INT64, nullable=True, default_value=7)
        s.add_field("v", DataType.FLOAT_VECTOR, dim=4)
        ip = c.prepare_index_params()
        ip.add_index("v", metric_type="COSINE", index_type="FLAT")
        c.create_collection("cat_rich", schema=s, index_params=ip, consistency_level="Strong")
        c.insert("cat_rich", rows)
    for flt in ("TEXT_MATCH(text, 'red')", 'ARRAY_CONTAINS(tags, "shoe") and meta is null',
                'meta["k"] == 1 and n == 7', "x > 5", 'json_contains(tags, "hat") or n is null',
                "array_length(tags) >= 1 and TEXT_MATCH(text, 'hat shoes')"):
        same(proxy_client, direct_client,
             lambda c: c.query("cat_rich", filter=flt, output_fields=["n", "meta", "tags", "x"]), rows_by_id)
    same(proxy_client, direct_client,
         lambda c: c.search("cat_rich", [[1, 0.1, 0, 0]], limit=3, filter="TEXT_MATCH(text, 'red')",
                            output_fields=["text", "n"]), hits)
    same(proxy_client, direct_client, lambda c: describe_norm(c.describe_collection("cat_rich")))


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda c: c.create_collection("bad name; drop", dimension=8), "collection name can only contain"),
        (lambda c: c.create_collection("cat_huge", dimension=1_000_000), "invalid dimension: 1000000"),
        (lambda c: c.create_collection("cat_tiny", dimension=1), "invalid dimension: 1."),
        (lambda c: c.create_database("bad db"), "database name can only contain"),
        (lambda c: c.create_alias("cat_parts", "bad alias"), "collection alias can only contain"),
    ],
)
def test_requests_milvus_refuses_are_refused_before_any_node(dev_cluster, proxy_client, parts, make, fragment) -> None:  # type: ignore[no-untyped-def]
    """milvus-lite accepts these; Milvus refuses them, and so does the proxy, with Milvus's
    message and code, before any node sees them."""
    kind, detail = outcome(lambda: make(proxy_client))
    assert kind == "err" and fragment in detail[1] and detail[0] in (1100, 802), detail
    for name, nc in node_clients(dev_cluster).items():
        assert not {"bad name; drop", "cat_huge", "cat_tiny"} & set(nc.list_collections()), name
        assert "bad db" not in nc.list_databases(), name
        nc.close()
