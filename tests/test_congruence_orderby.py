"""order_by on query and search through the proxy (3 nodes) against the exact answer computed from
one plain milvus-lite node's data (milvus-lite ignores order_by, so the node's own answer is not
the reference; its rows and distance ranking are). The reference sorts independently of
shardproxy/orderby.py: nulls first, one stable sort per key from the last key to the first;
query ties by primary key, search ties keep the distance order (equal distances by primary key)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

DIM = 8
N = 300
NAME = "orderby_cong"
BIG = "orderby_big"
CAP = 200  # SHARDPROXY_ORDER_BY_MAX_ROWS of the test cluster (tests/conftest.py)


def _schema() -> object:
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    s.add_field("price", DataType.DOUBLE)
    s.add_field("brand", DataType.VARCHAR, max_length=16)
    s.add_field("rank", DataType.INT32, nullable=True)
    s.add_field("ok", DataType.BOOL)
    s.add_field("product", DataType.INT64)
    return s


def _rows(n: int = N, seed: int = 5) -> list[dict]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v[n - 20:] = v[:20]  # equal distances
    out = []
    for i in range(n):
        r = {"id": i, "v": v[i].tolist(), "price": float(i % 17), "brand": f"b{(i * 7) % 6}",
             "rank": None if i % 5 == 0 else int((i * 13) % 11), "ok": i % 3 == 0, "product": i % 25}
        if i % 4:
            r["age"] = (i * 11) % 9  # a dynamic key, missing on every fourth row
        out.append(r)
    return out


@pytest.fixture(scope="module")
def clients(proxy_client: MilvusClient, direct_client: MilvusClient):  # type: ignore[no-untyped-def]
    for c in (proxy_client, direct_client):
        if c.has_collection(NAME):
            c.drop_collection(NAME)
        idx = c.prepare_index_params()
        idx.add_index("v", index_type="FLAT", metric_type="L2")
        c.create_collection(NAME, schema=_schema(), index_params=idx, consistency_level="Strong")
        c.insert(NAME, _rows())
        c.flush(NAME)
    return proxy_client, direct_client


def _q(seed: int, nq: int = 1) -> list[list[float]]:
    return np.random.default_rng(seed).standard_normal((nq, DIM)).astype(np.float32).tolist()


# ---------------------------------------------------------------- the reference
def _ref_sort(items: list, keys: list[tuple[str, bool]], value) -> list:  # type: ignore[no-untyped-def]
    order = list(items)
    for name, asc in reversed(keys):
        nulls = [x for x in order if value(x, name) is None]
        rest = sorted((x for x in order if value(x, name) is not None), key=lambda x: value(x, name), reverse=not asc)
        order = nulls + rest
    return order


def _spec(keys: list[tuple[str, bool]]) -> list[dict]:
    return [{"field": f, "order": "asc" if a else "desc"} for f, a in keys]


def _row_value(row: dict, name: str):  # type: ignore[no-untyped-def]
    return row.get(name)


def _hit_value(hit: dict, name: str):  # type: ignore[no-untyped-def]
    return hit["entity"].get(name)


KEYS = st.lists(st.tuples(st.sampled_from(["price", "brand", "rank", "age", "ok", "product"]), st.booleans()),
                min_size=1, max_size=3, unique_by=lambda t: t[0])
FILTERS = st.sampled_from(["", "price > 3", "brand in ['b1', 'b2']", "id < 40", "price > 1000"])


# ---------------------------------------------------------------- query
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(keys=KEYS, flt=FILTERS, limit=st.integers(1, 30), offset=st.integers(0, 20))
def test_query_order_by_exact(clients, keys, flt, limit, offset) -> None:  # type: ignore[no-untyped-def]
    proxy, direct = clients
    out = ["price", "brand"]
    got = proxy.query(NAME, filter=flt or "id >= 0", output_fields=out, limit=limit, offset=offset,
                      order_by_fields=_spec(keys))
    every = direct.query(NAME, filter=flt or "id >= 0", output_fields=["*"], limit=N)
    want = _ref_sort(sorted(every, key=lambda r: r["id"]), keys, _row_value)[offset:offset + limit]
    assert [r["id"] for r in got] == [r["id"] for r in want]
    assert [(r["price"], r["brand"]) for r in got] == [(r["price"], r["brand"]) for r in want]
    assert all(set(r) == {"id", "price", "brand"} for r in got)  # order keys not asked for are not returned


def test_query_order_by_json_path_and_pk_ties(clients) -> None:  # type: ignore[no-untyped-def]
    proxy, direct = clients
    got = proxy.query(NAME, filter="id < 60", output_fields=["age"], limit=15, order_by_fields='age:desc,ok')
    every = direct.query(NAME, filter="id < 60", output_fields=["*"], limit=N)
    want = _ref_sort(sorted(every, key=lambda r: r["id"]), [("age", False), ("ok", True)], _row_value)[:15]
    assert [r["id"] for r in got] == [r["id"] for r in want]
    assert [r.get("age") for r in got] == [r.get("age") for r in want]
    # missing key (every 4th id): nulls first; then ok=false before true; then ties by primary key
    assert [r["id"] for r in got[:5]] == [4, 8, 16, 20, 28]


def test_query_order_by_refusals(clients) -> None:  # type: ignore[no-untyped-def]
    proxy, _ = clients
    for kwargs, msg in (
        (dict(filter="id < 10", order_by_fields=[{"field": "price"}]), "ORDER BY requires explicit limit"),
        (dict(filter="id < 10", limit=3, order_by_fields="v"), "unsortable type FloatVector"),
        (dict(filter="id < 10", limit=3, order_by_fields="price:sideways"), "invalid order direction"),
    ):
        with pytest.raises(MilvusException, match=msg):
            proxy.query(NAME, **kwargs)


def test_query_order_by_bounded_per_node(proxy_client: MilvusClient, clients) -> None:  # type: ignore[no-untyped-def]
    """A query whose filter matches more than order_by_max_rows rows on one node is refused, clearly."""
    if proxy_client.has_collection(BIG):
        proxy_client.drop_collection(BIG)
    idx = proxy_client.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    proxy_client.create_collection(BIG, schema=_schema(), index_params=idx, consistency_level="Strong")
    proxy_client.insert(BIG, _rows(4 * CAP, seed=9))
    with pytest.raises(MilvusException, match="order_by_max_rows"):
        proxy_client.query(BIG, filter="id >= 0", limit=5, order_by_fields="price")
    got = proxy_client.query(BIG, filter="id < 150", limit=5, order_by_fields="price:desc")  # narrowed: fine
    assert [r["id"] for r in got] == [16, 33, 50, 67, 84]
    proxy_client.drop_collection(BIG)


# ---------------------------------------------------------------- search
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(keys=KEYS, flt=FILTERS, limit=st.integers(1, 15), offset=st.integers(0, 10), nq=st.integers(1, 2),
       seed=st.integers(0, 1000))
def test_search_order_by_exact(clients, keys, flt, limit, offset, nq, seed) -> None:  # type: ignore[no-untyped-def]
    proxy, direct = clients
    q = _q(seed, nq)
    got = proxy.search(NAME, q, limit=limit, offset=offset, filter=flt, output_fields=["brand"],
                       order_by_fields=_spec(keys))
    names = sorted({k for k, _ in keys} | {"brand"})
    # the window is the offset+limit nearest rows, ties in distance by primary key (the proxy's rule).
    # Which of two rows at the same distance makes one node's cut is unspecified (milvus-lite takes
    # np.argpartition's pick; rows 280.. repeat rows 0..19), so the reference asks the node for more
    # and cuts itself (seed 42, limit 14, offset 10 found 12 vs its copy 292 at the cut)
    wide = direct.search(NAME, q, limit=offset + limit + 20, filter=flt, output_fields=names)
    for g, w in zip(got, wide):
        window = sorted(w, key=lambda h: (h["distance"], h["id"]))[:offset + limit]
        want = _ref_sort(window, keys, _hit_value)[offset:offset + limit]
        assert [(h["id"], round(h["distance"], 4)) for h in g] == [(h["id"], round(h["distance"], 4)) for h in want]
        assert [h["entity"] for h in g] == [{"brand": h["entity"]["brand"]} for h in want]


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(["price", "brand", "rank"]), asc=st.booleans(), limit=st.integers(1, 6),
       offset=st.integers(0, 3), size=st.integers(1, 3), seed=st.integers(0, 1000))
def test_grouped_search_order_by_sorts_groups(clients, key, asc, limit, offset, size, seed) -> None:  # type: ignore[no-untyped-def]
    proxy, direct = clients
    q = _q(seed)
    got = proxy.search(NAME, q, limit=limit, offset=offset, group_by_field="product", group_size=size,
                       output_fields=["product"], order_by_fields=_spec([(key, asc)]))
    hits = direct.search(NAME, q, limit=N, output_fields=["product", key])[0]
    groups: dict = {}
    for h in hits:  # the exact groups: every row ranked, the first `size` hits of each product
        kept = groups.setdefault(h["entity"]["product"], [])
        if len(kept) < size:
            kept.append(h)
    first = list(groups.values())[:offset + limit]
    ordered = _ref_sort(first, [(key, asc)], lambda g, name: g[0]["entity"].get(name))[offset:offset + limit]
    want = [(h["id"], round(h["distance"], 4)) for g in ordered for h in g]
    assert [(h["id"], round(h["distance"], 4)) for h in got[0]] == want


def test_search_order_by_refusals(clients) -> None:  # type: ignore[no-untyped-def]
    proxy, _ = clients
    dec = Function(name="d", input_field_names=["price"], function_type=FunctionType.RERANK,
                   params={"reranker": "decay", "function": "gauss", "origin": 5, "scale": 3})
    with pytest.raises(MilvusException, match="order_by and function_score cannot be used together"):
        proxy.search(NAME, _q(1), limit=3, ranker=dec, order_by_fields="price")
    with pytest.raises(MilvusException, match="unsortable type FloatVector"):
        proxy.search(NAME, _q(1), limit=3, order_by_fields=[{"field": "v"}])
    with pytest.raises(MilvusException, match="order_by is not supported when using search iterator"):
        proxy.search(NAME, _q(1), limit=3, order_by_fields="price", iterator="True")


def test_search_order_by_without_output_fields(clients) -> None:  # type: ignore[no-untyped-def]
    """No output fields: the same fields a node returns for such a search, ordered by the keys."""
    proxy, direct = clients
    q = _q(21)
    got = proxy.search(NAME, q, limit=7, order_by_fields="brand:desc,rank")
    window = direct.search(NAME, q, limit=7, output_fields=["brand", "rank"])[0]
    want = _ref_sort(list(window), [("brand", False), ("rank", True)], _hit_value)
    assert [h["id"] for h in got[0]] == [h["id"] for h in want]
    plain = {h["id"]: h["entity"] for h in direct.search(NAME, q, limit=7)[0]}
    assert [h["entity"] for h in got[0]] == [plain[h["id"]] for h in got[0]]
