"""Catalog parsing, deterministic keys, product grouping and the queue against a real Valkey."""

from __future__ import annotations

import pytest
from pymilvus import DataType

from embed.catalog import CatalogError, read_catalog
from embed.queue import JobQueue
from embed.store import Hit, group_by_product, image_key


def test_read_catalog_types_and_paths(tmp_path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "cat.csv").write_text(
        "product_id,image_path,color,price,stock\np1,img/a.png,red,9.5,3\np2,img/b.png,blue,10,\n")
    cat = read_catalog(tmp_path / "cat.csv")
    assert [i.product_id for i in cat.items] == ["p1", "p2"]
    assert cat.items[0].image_path == (tmp_path / "img" / "a.png").resolve()
    assert cat.attribute_types == {"color": DataType.VARCHAR, "price": DataType.DOUBLE, "stock": DataType.INT64}
    assert cat.items[1].attributes == {"color": "blue", "price": 10.0, "stock": 0}


def test_read_catalog_rejects_bad_header(tmp_path) -> None:
    (tmp_path / "c.csv").write_text("id,path\n1,a.png\n")
    with pytest.raises(CatalogError, match="product_id and image_path"):
        read_catalog(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("product_id,image_path,vector\n1,a.png,x\n")
    with pytest.raises(CatalogError, match="reserved"):
        read_catalog(tmp_path / "d.csv")


def test_image_key_deterministic_and_63_bit() -> None:
    k = image_key("p1", "ab" * 32, 0)
    assert k == image_key("p1", "ab" * 32, 0)
    assert 0 <= k < 2**63
    assert len({k, image_key("p2", "ab" * 32, 0), image_key("p1", "cd" * 32, 0), image_key("p1", "ab" * 32, 1)}) == 4


def test_group_by_product_keeps_best_image() -> None:
    hits = [Hit(1, "a", 0.9), Hit(2, "b", 0.8), Hit(3, "a", 0.95), Hit(4, "c", 0.5), Hit(5, "b", 0.7)]
    g = group_by_product(hits, 2)
    assert [(h.product_id, h.image_id) for h in g] == [("a", 3), ("b", 2)]


def test_queue_reclaim_and_dead_letter(redis_url: str, tmp_path) -> None:
    from embed.catalog import CatalogItem

    q = JobQueue(redis_url, stream="t:reclaim", group="g")
    items = [CatalogItem(f"p{i}", tmp_path / f"{i}.png", {"n": i}) for i in range(5)]
    iid, n = q.enqueue("coll", "model", items)
    assert n == 5
    got = q.read("crashed", count=3, block_ms=100, claim_idle_ms=60_000)
    assert [j.product_id for j in got] == ["p0", "p1", "p2"] and got[0].attributes == {"n": 0}
    # "crashed" never acks; another consumer reclaims its jobs once they are idle long enough
    other = q.read("other", count=10, block_ms=100, claim_idle_ms=0)
    assert sorted(j.product_id for j in other) == ["p0", "p1", "p2", "p3", "p4"]
    assert {j.deliveries for j in other if j.product_id in ("p0", "p1", "p2")} == {2}
    q.ack([j for j in other if j.product_id != "p4"])
    q.dead_letter(next(j for j in other if j.product_id == "p4"), "corrupt: bad bytes", "other")
    p = q.progress(iid)
    assert (p["total"], p["done"], p["dead"]) == (5, 4, 1)
    dl = q.dead_letters(iid)
    assert len(dl) == 1 and dl[0]["reason"] == "corrupt: bad bytes" and dl[0]["product_id"] == "p4"
    st = q.stats()
    assert st["pending"] == 0 and st["dead_letters"] == 1
