"""Hint records in a real Redis (valkey): every write of a hint changes its value, and a write that
reached a node directly touches that node's pending hints of its keys, so a replay that read its
sources before the write landed never removes the hint (the ordering handoff.py relies on)."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from shardproxy.hints import HintStore


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


def test_in_flight_hints_are_not_replayed_until_their_write_is_done(redis_url: str) -> None:
    # the R = 2 kill-node catch-up test lost acknowledged rows: a replay judged a key whose write
    # was still landing, found no copy and deleted it on the replica and the stand-in
    from shardproxy.hints import decode, encode

    assert decode(b"7", encode("n2", 1000, "ab", in_flight=True).encode(), False).in_flight
    h = decode(b"7", encode("n2", 1000, "ab").encode(), False)
    assert (h.pk, h.standin, h.ms, h.in_flight) == (7, "n2", 1000, False) and h.ready(1000)
    assert not decode(b"7", b"n2|1000|ab|p", False).ready(2000)
    assert decode(b"7", b"n2|1000|ab|p", False).ready(1000 + 121_000)  # its writer died: replay anyway
    assert decode(b"7", b"n2|1000", False).standin == "n2"  # hints written before the nonce

    async def go() -> None:
        r = Redis.from_url(redis_url)
        store = HintStore(r, "t-flight", max_keys=100, max_age_s=3600)
        try:
            assert await store.add("n1", "c", [1], "n2", in_flight=True)
            assert await store.touch("c", {"n1": [1]}) == 1  # a touch keeps it in flight
            (h,) = await store.batch("n1", "c", False)
            assert h.in_flight and h.standin == "n2" and not h.ready(int(time.time() * 1000))
            from types import SimpleNamespace

            from shardproxy import handoff

            class Target:
                id = "n1"
                writes: list[str] = []

                async def write(self, method: str, collection: str, request) -> None:  # type: ignore[no-untyped-def]
                    self.writes.append(method)

            rec = SimpleNamespace(key="c", name="c", db="default", pk_name="id", pk_is_str=False, replicas=2)
            target = Target()
            assert await handoff.replay_batch(store, target, rec, [], {}, lambda n: True) == 0  # type: ignore[arg-type]
            assert target.writes == [] and await store.pending("n1", ["c"]) == 1  # nothing judged yet
            assert await store.add("n1", "c", [1], "n2")  # the write is done
            (h,) = await store.batch("n1", "c", False)
            assert not h.in_flight and h.ready(int(time.time() * 1000))
        finally:
            await r.aclose()

    asyncio.run(go())


def test_a_rebuild_records_hints_again_and_stays_marked_until_it_finishes(redis_url: str) -> None:
    async def go() -> None:
        r = Redis.from_url(redis_url)
        store = HintStore(r, "t-rebuild", max_keys=2, max_age_s=3600)
        try:
            assert await store.add("n1", "c", [1, 2], "n2")
            assert not await store.add("n1", "c", [3], "n2")  # past the bound: refused, overflowed
            why = await store.needs_repair("n1")
            assert "more than 2" in why
            await store.begin_rebuild("n1", "ignored: the overflow reason is kept")
            assert await store.needs_repair("n1") == why  # still needs it until the rebuild finishes
            await r.hdel(store.key("n1", "c"), "1", "2")  # the pending hints were replayed
            assert await store.add("n1", "c", [4], "n2")  # hints are recorded again meanwhile
            assert await store.mark_repaired("n1")
            assert await store.needs_repair("n1") == ""
            assert await store.pending("n1", ["c"]) == 1  # the hint written meanwhile is replayed next
            # overflowing again during a rebuild: not repaired, rebuilt once more
            await store.begin_rebuild("n1", "its oldest hint is older than 3600 s")
            assert await store.needs_repair("n1") == "its oldest hint is older than 3600 s"
            assert not await store.add("n1", "c", [5, 6], "n2")
            assert not await store.mark_repaired("n1")
            assert await store.needs_repair("n1")
        finally:
            await r.aclose()

    asyncio.run(go())


def test_touch_marks_direct_and_stuck_counts_only_hints_older_than_the_pass(redis_url: str) -> None:
    """A touched hint says its node received a direct write after the one it missed (replays then
    trust that node's copy of the key); ``stuck`` counts only hints older than a replay pass, so a
    node under steady writes can be switched back to active (hints written meanwhile are new
    writes, replayed right after)."""
    async def go() -> None:
        r = Redis.from_url(redis_url)
        store = HintStore(r, "t-stuck", max_keys=100, max_age_s=3600)
        try:
            now = int(time.time() * 1000)
            assert await store.add("n1", "c", [1, 2], "n2", now_ms=now - 60_000)
            assert await store.add("n1", "c", [3], "n2", now_ms=now - 60_000, in_flight=True)
            assert await store.touch("c", {"n1": [2]}) == 1
            held = await store.holding("n1", "c", [1, 2, 3, 4], False)
            assert set(held) == {1, 2, 3}
            assert not held[1].direct and held[2].direct and held[2].standin == "n2"
            assert held[3].in_flight and not held[3].direct
            # hint 2 was touched just now: not older than a pass starting a second ago; hint 3's
            # write is still landing (in flight): only hint 1 is stuck
            assert await store.stuck("n1", ["c"], now - 1000) == 1
            assert await store.stuck("n1", ["c"], now - 120_000) == 0
        finally:
            await r.aclose()

    asyncio.run(go())
