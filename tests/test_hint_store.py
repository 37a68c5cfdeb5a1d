"""Hint records in a real Redis (valkey): every write of a hint changes its value, and a write that
reached a node directly touches that node's pending hints of its keys, so a replay that read its
sources before the write landed never removes the hint (the ordering handoff.py relies on)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from devkit import procs
from shardproxy.hints import HintStore


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = procs.start_redis(tmp_path_factory.mktemp("valkey-hints") / "data", persist=False)
    try:
        yield f"redis://{server.address}/0"
    finally:
        server.stop()


def test_rewritten_and_touched_hints_survive_a_replay_that_read_them_before(redis_url: str) -> None:
    async def go() -> None:
        r = Redis.from_url(redis_url)
        store = HintStore(r, "t-touch", max_keys=100, max_age_s=3600)
        try:
            assert await store.add("n1", "c", [1, 2, 3], "n2", now_ms=1000)
            read = {h.pk: h for h in await store.batch("n1", "c", False)}  # a replay reads the hints
            assert {h.standin for h in read.values()} == {"n2"}
            # the same hint written again in the same millisecond (after the copy landed): new value
            assert await store.add("n1", "c", [1], "n2", now_ms=1000)
            # a direct write of keys 2 and 9 on n1 touches the pending hint of 2 (9 has none)
            assert await store.touch("c", {"n1": [2, 9], "n0": [3]}) == 1
            # the replay's compare-and-delete removes only the hint nobody wrote meanwhile
            assert await store.remove("n1", "c", list(read.values())) == 1
            left = {h.pk: h for h in await store.batch("n1", "c", False)}
            assert set(left) == {1, 2} and {h.standin for h in left.values()} == {"n2"}  # stand-in kept
            assert await store.touch("c", {"n3": [1]}) == 0  # a node with no hints: nothing written
            assert await r.hlen(store.key("n3", "c")) == 0
        finally:
            await r.aclose()

    asyncio.run(go())


def test_undo_records_are_replayed_as_a_delete_on_the_node_before_anything_else(redis_url: str) -> None:
    # issue 16 (R = 1): inserts reported as failed that may have landed late on the node
    from types import SimpleNamespace

    from shardproxy import handoff
    from shardproxy.hints import UNDO

    class Target:
        id = "n1"

        def __init__(self) -> None:
            self.writes: list[tuple[str, str]] = []

        async def write(self, method: str, collection: str, request) -> None:  # type: ignore[no-untyped-def]
            self.writes.append((method, request.expr))

    async def go() -> None:
        r = Redis.from_url(redis_url)
        store = HintStore(r, "t-undo", max_keys=100, max_age_s=3600)
        rec = SimpleNamespace(key="c", name="c", db="default", pk_name="id", pk_is_str=False, replicas=1)
        target = Target()
        try:
            assert await store.add("n1", "c", [5, 7], UNDO)
            assert await handoff.replay_batch(store, target, rec, [], {}, lambda n: True) == 2  # type: ignore[arg-type]
            assert target.writes == [("Delete", "id in [5,7]")]
            assert await store.pending("n1", ["c"]) == 0
        finally:
            await r.aclose()

    asyncio.run(go())
