"""The pipeline's metric helpers (embed/metrics.py): bounded stage labels, stage timing, and the
queue gauges read from a real Redis-protocol server (valkey)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from prometheus_client import REGISTRY

from embed import metrics as em
from devkit import procs


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    server = procs.start_redis(tmp_path_factory.mktemp("valkey") / "data", persist=False)
    client = redis.Redis(host=server.host, port=server.port)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def test_stage_labels_are_bounded() -> None:
    with pytest.raises(ValueError, match="unknown pipeline stage"):
        em.observe_stage("https://example.com/cat.jpg", 1, 0.1)
    with pytest.raises(ValueError):
        em.dead_letter("resize")


def test_stage_timer_counts_items_and_failures() -> None:
    ok0 = sample("embed_items_total", stage="detect", outcome="ok")
    err0 = sample("embed_items_total", stage="detect", outcome="error")
    n0 = sample("embed_batch_size_count", stage="detect")
    with em.stage_timer("detect", 10) as t:
        t.failed(3)
    with pytest.raises(RuntimeError), em.stage_timer("detect", 4):
        raise RuntimeError("model crashed")
    assert sample("embed_items_total", stage="detect", outcome="ok") - ok0 == 7
    assert sample("embed_items_total", stage="detect", outcome="error") - err0 == 3 + 4
    assert sample("embed_batch_size_count", stage="detect") - n0 == 2
    assert sample("embed_batch_size_sum", stage="detect") >= 14


def test_queue_gauges_from_redis(valkey: redis.Redis) -> None:
    stream, group = "ops:test:jobs", "ops-workers"
    assert em.update_queue_gauges(valkey, stream, group)["length"] == 0  # no stream yet: empty queue
    for i in range(10):
        valkey.xadd(stream, {"url": f"file:///img/{i}.jpg"})
    valkey.xgroup_create(stream, group, id="0")
    got = em.update_queue_gauges(valkey, stream, group)
    assert got["length"] == 10 and got["pending"] == 0 and got["lag"] == 10
    read = valkey.xreadgroup(group, "worker-1", {stream: ">"}, count=4)
    ids = [mid for mid, _ in read[0][1]]
    valkey.xack(stream, group, ids[0])
    got = em.update_queue_gauges(valkey, stream, group)
    assert got == {"length": 10, "pending": 3, "lag": 6, "oldest_pending_age_seconds": got["oldest_pending_age_seconds"]}
    assert 0 <= got["oldest_pending_age_seconds"] < 600
    assert sample("embed_queue_length") == 10
    assert sample("embed_queue_pending") == 3
    assert sample("embed_queue_lag") == 6


def test_model_info_is_shared() -> None:
    em.set_model_info("efficientnet-lite0-256-0123456789ab", "efficientnet-lite0", 256, "saliency")
    assert sample("shopbyimage_model_info", model_id="efficientnet-lite0-256-0123456789ab",
                  embedder="efficientnet-lite0", dim="256", detector="saliency") == 1.0
