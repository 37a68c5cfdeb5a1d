"""Congruence: the same pymilvus calls against the proxy (3 nodes) and against one plain
milvus-lite node holding the same data give the same answers."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.helpers import make_collection, make_rows

DIM = 12
N = 1500


@pytest.fixture(scope="module", params=["L2", "IP", "COSINE"])
def pair(request: pytest.FixtureRequest, proxy_client: MilvusClient, direct_client: MilvusClient):  # type: ignore[no-untyped-def]
    metric = request.param
    name = f"cong_{metric.lower()}"
    rows = make_rows(N, DIM, seed=21)
    for c in (proxy_client, direct_client):
        make_collection(c, name, DIM, metric=metric, index="FLAT")
        c.insert(name, rows)
        c.flush(name)  # real Milvus counts rows in get_collection_stats once segments are flushed
    return name, rows, metric


def both(pair, proxy_client, direct_client, fn):  # type: ignore[no-untyped-def]
    name = pair[0]
    return fn(proxy_client, name), fn(direct_client, name)


def norm_hits(res):  # type: ignore[no-untyped-def]
    return [[(h["id"], round(float(h["distance"]), 4), tuple(sorted(h["entity"].items()))) for h in q] for q in res]


def test_search_same(pair, proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    qs = np.random.default_rng(3).standard_normal((4, DIM)).astype(np.float32).tolist()
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.search(n, qs, limit=8, output_fields=["color", "price"]))
    assert norm_hits(a) == norm_hits(b)


def test_filtered_search_with_offset_same(pair, proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    qs = np.random.default_rng(4).standard_normal((2, DIM)).astype(np.float32).tolist()
    a, b = both(pair, proxy_client, direct_client,
                lambda c, n: c.search(n, qs, limit=5, offset=3, filter='color in ["red", "blue"] and price >= 10',
                                      output_fields=["color"]))
    assert norm_hits(a) == norm_hits(b)


def test_query_same(pair, proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    a, b = both(pair, proxy_client, direct_client,
                lambda c, n: c.query(n, filter="price < 5 and id < 1000", output_fields=["id", "color", "price"]))
    key = lambda r: r["id"]  # noqa: E731
    assert sorted(a, key=key) == sorted(b, key=key)


def test_count_and_stats_same(pair, proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.query(n, filter="", output_fields=["count(*)"]))
    assert a[0]["count(*)"] == b[0]["count(*)"] == N
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.query(n, filter='color == "green"', output_fields=["count(*)"]))
    assert a[0]["count(*)"] == b[0]["count(*)"]
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.get_collection_stats(n))
    assert a == b


def test_get_same(pair, proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    ids = [5, 77, 1499, 123456]
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.get(n, ids=ids, output_fields=["color", "vector"]))
    key = lambda r: r["id"]  # noqa: E731
    assert len(a) == 3
    for ra, rb in zip(sorted(a, key=key), sorted(b, key=key)):
        assert ra["id"] == rb["id"] and ra["color"] == rb["color"]
        np.testing.assert_allclose(ra["vector"], rb["vector"])


def test_describe_and_indexes_same(pair, proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.describe_collection(n))
    # field ids are assigned by the server (milvus-lite: 0, Milvus: 100+), so compare the rest
    strip = lambda fs: [{k: v for k, v in f.items() if k != "field_id"} for f in fs]  # noqa: E731
    assert strip(a["fields"]) == strip(b["fields"])
    assert (a["auto_id"], a["enable_dynamic_field"]) == (b["auto_id"], b["enable_dynamic_field"])
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.list_indexes(n))
    assert a == b
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.describe_index(n, "vector"))
    assert {k: a[k] for k in ("index_type", "metric_type", "field_name")} == {k: b[k] for k in ("index_type", "metric_type", "field_name")}
    a, b = both(pair, proxy_client, direct_client, lambda c, n: str(c.get_load_state(n)["state"]))
    assert a == b == "Loaded"


def test_mutations_same(pair, proxy_client, direct_client) -> None:  # type: ignore[no-untyped-def]
    name = pair[0]
    upd = make_rows(5, DIM, seed=77, start=100)
    for r in upd:
        r["color"] = "white"
    for c in (proxy_client, direct_client):
        c.upsert(name, upd)
        c.delete(name, filter="price > 95")
        c.delete(name, ids=[200, 201])
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.query(n, filter="id >= 0", output_fields=["id", "color"]))
    key = lambda r: r["id"]  # noqa: E731
    assert sorted(a, key=key) == sorted(b, key=key)
    qs = [upd[2]["vector"]]
    a, b = both(pair, proxy_client, direct_client, lambda c, n: c.search(n, qs, limit=3, output_fields=["color"]))
    assert norm_hits(a) == norm_hits(b)
    if pair[2] != "IP":  # under IP a vector need not be its own nearest neighbour
        assert a[0][0]["id"] == 102 and a[0][0]["entity"]["color"] == "white"
