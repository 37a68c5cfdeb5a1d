"""The migrator's claims on the keys it copies, in a real Redis (valkey): a client write of a key
the migrator is copying waits for the copy, and the migrator never copies a key a client touched
(issue 11: an upsert racing the migrator's copy could lose to the older copy)."""

from __future__ import annotations

import asyncio

from shardproxy.metastore import MetaStore
from shardproxy.moves import MoveStore


def test_a_write_waits_for_the_copy_of_a_claimed_key_and_touched_keys_are_never_claimed(redis_url: str) -> None:
    async def go() -> None:
        store = MetaStore(redis_url, prefix="t-claims")
        moves = MoveStore(store)
        try:
            assert await moves.touch("c", [4], "w") == []  # nobody copies 4: the write goes ahead
            # the migrator claims what no client touched
            assert await moves.claim("c", "tok", [1, 2, 3, 4]) == ["1", "2", "3"]
            # a client writing 2 while it is being copied learns it must wait ...
            assert await moves.touch("c", [2, 5], "w") == ["2"]
            assert not await moves.wait_released("c", ["2"], timeout_s=0.2)
            # ... until the migrator's upsert landed and it released its claims
            waiter = asyncio.ensure_future(moves.wait_released("c", ["2"], timeout_s=10))
            await asyncio.sleep(0.1)
            assert not waiter.done()
            await moves.release_claims("c", "tok", [1, 2, 3])
            assert await waiter
            # a retried batch does not claim 2 again (the client's write is newer), nor 5
            assert await moves.claim("c", "tok", [1, 2, 5]) == ["1"]
            # another migrator's release (stale token) does not drop a claim
            await moves.release_claims("c", "other", [1])
            assert await moves.touch("c", [1], "d") == ["1"]  # a delete is told too (it need not wait)
        finally:
            await store.close()

    asyncio.run(go())
