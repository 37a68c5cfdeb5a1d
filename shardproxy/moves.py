"""Redis state of a ring change (a *move*): the move record, per-(collection, source) cursors,
the migrator lease with its fencing token, and the keys touched by clients during the move.

=====================================  ======  ================================================
key                                    type    content
=====================================  ======  ================================================
``{p}:move``                           hash    ``id``, ``kind`` (add/drain), ``node``, ``state``
                                               (running/done), ``target_epoch`` (the fencing
                                               token), ``started_at``, ``finished_at``,
                                               ``rows_to_move`` (-1 until counted),
                                               ``rows_moved``, ``migrator_pid``,
                                               ``migrator_host``
``{p}:move:cursor``                    hash    ``{collection}|{source}`` -> JSON ``{last,
                                               scanned, moved, done}``
``{p}:move:lease``                     string  ``{target_epoch}:{uuid}`` of the one migrator
                                               allowed to run, ``SET NX PX``, renewed
``{p}:move:touched:{collection}``      hash    pk -> ``w`` (written) / ``d`` (deleted) by a
                                               proxy during the move (see migrator.py)
``{p}:move:copying:{collection}``      hash    pk -> token of the migrator copying it now
                                               (claimed only while untouched; a write of a
                                               claimed key waits for the release)
=====================================  ======  ================================================

Starting a move (node record + epoch bump + fresh move record) and finishing it (node record
+ epoch bump + ``state=done``) are single Lua scripts, so they are atomic. Every cursor write
and the finish check the lease token first (fencing): a migrator that lost its lease, e.g.
one that was paused and replaced, can no longer advance anything.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from shardproxy.errors import FailedPrecondition
from shardproxy.metastore import MetaStore, NodeRecord

TOUCHED_TTL_S = 7 * 24 * 3600
CLAIM_TTL_S = 120  # claims of a migrator that died are forgotten after this
CLAIM_WAIT_S = 10.0  # a write waits at most this long for the migrator's copy of its keys

# client side: mark the keys, return those a migrator is copying right now
_TOUCH = """
local claimed = {}
for i = 3, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then claimed[#claimed + 1] = ARGV[i] end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return claimed
"""

# migrator side: claim the keys no client touched; return the claimed ones
_CLAIM = """
local claimed = {}
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
    claimed[#claimed + 1] = ARGV[i]
  end
end
if #claimed > 0 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2])) end
return claimed
"""

_RELEASE_CLAIMS = """
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
"""

_START = """
local st = redis.call('HGET', KEYS[3], 'state')
if st == 'running' then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local e = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[3], 'state', 'running', 'kind', ARGV[3], 'node', ARGV[1],
           'target_epoch', e + 1, 'started_at', ARGV[4], 'rows_moved', 0, 'rows_to_move', -1,
           'id', ARGV[5])
return e
"""

# Abort: revoke the running migrator's lease (its fenced writes fail from now on), put the node
# in the inverse state (joining <-> draining), bump the epoch and open the reverse move.
_ABORT = """
local st = redis.call('HGET', KEYS[3], 'state')
if st ~= 'running' then return -1 end
local moved = redis.call('HGET', KEYS[3], 'rows_moved') or '0'
local kind = redis.call('HGET', KEYS[3], 'kind') or ''
redis.call('DEL', KEYS[5], KEYS[4], KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local e = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], 'state', 'running', 'kind', ARGV[3], 'node', ARGV[1],
           'target_epoch', e + 1, 'started_at', ARGV[4], 'rows_moved', 0, 'rows_to_move', -1,
           'id', ARGV[5], 'aborted_kind', kind, 'aborted_rows_moved', moved)
return e
"""

_CURSOR = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if tonumber(ARGV[4]) ~= 0 then redis.call('HINCRBY', KEYS[3], 'rows_moved', ARGV[4]) end
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local e = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[4], 'state', 'done', 'finished_at', ARGV[4])
redis.call('DEL', KEYS[1])
return e
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Cursor:
    last: int | str | None = None
    scanned: int = 0
    moved: int = 0
    done: bool = False

    def to_json(self) -> str:
        return json.dumps({"last": self.last, "scanned": self.scanned, "moved": self.moved, "done": self.done})

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Cursor":
        d = json.loads(raw)
        return cls(last=d.get("last"), scanned=int(d.get("scanned", 0)), moved=int(d.get("moved", 0)),
                   done=bool(d.get("done")))


@dataclass
class MoveState:
    id: str = ""
    kind: str = ""
    node: str = ""
    state: str = ""
    target_epoch: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    rows_to_move: int = -1
    rows_moved: int = 0
    migrator_pid: int = 0
    migrator_host: str = ""
    lease_holder: str = ""
    aborted_kind: str = ""  # set on the reverse move `rebalance abort` opened: the kind it undoes
    aborted_rows_moved: int = 0  # rows the aborted move had moved (this move carries them back)
    cursors: dict[tuple[str, str], Cursor] = field(default_factory=dict)

    @property
    def reverse_kind(self) -> str:
        """Kind of the move that undoes this one: an add is undone by an ``abort-add`` (a drain
        of the node), a drain by an ``abort-drain`` (a join); undoing an abort is the original."""
        return self.kind[len("abort-"):] if self.kind.startswith("abort-") else f"abort-{self.kind}"

    @property
    def running(self) -> bool:
        return self.state == "running"

    def rate(self, now: float | None = None) -> float:
        end = self.finished_at or (now or time.time())
        elapsed = max(1e-6, end - self.started_at) if self.started_at else 0.0
        return self.rows_moved / elapsed if elapsed else 0.0

    def eta_s(self) -> float:
        if self.rows_to_move < 0 or not self.running:
            return 0.0
        rate = self.rate()
        left = max(0, self.rows_to_move - self.rows_moved)
        return left / rate if rate > 0 else -1.0


class MoveStore:
    def __init__(self, store: MetaStore) -> None:
        self.store = store
        self.r = store.r
        self._start = self.r.register_script(_START)
        self._cursor = self.r.register_script(_CURSOR)
        self._renew = self.r.register_script(_RENEW)
        self._finish = self.r.register_script(_FINISH)
        self._release = self.r.register_script(_RELEASE)
        self._abort = self.r.register_script(_ABORT)

    # keys
    @property
    def move_key(self) -> str:
        return self.store.k("move")

    @property
    def cursor_key(self) -> str:
        return self.store.k("move", "cursor")

    @property
    def lease_key(self) -> str:
        return self.store.k("move", "lease")

    def touched_key(self, collection: str) -> str:
        return self.store.k("move", "touched", collection)

    def copying_key(self, collection: str) -> str:
        return self.store.k("move", "copying", collection)

    # -- the move record
    async def start(self, node: NodeRecord, kind: str) -> tuple[int, int]:
        """Put ``node`` in its moving state (joining/draining), bump the epoch and open a fresh
        move record, atomically. Returns (new epoch, target epoch)."""
        res = await self._start(
            keys=[self.store.k("nodes"), self.store.k("ring", "epoch"), self.move_key, self.cursor_key, self.lease_key],
            args=[node.id, node.to_json(), kind, str(time.time()), uuid.uuid4().hex],
        )
        epoch = int(res)
        if epoch < 0:
            raise FailedPrecondition("a rebalance is already running; wait for it (`shardproxy rebalance status`)")
        for name in await self.store.collection_names():
            await self.r.delete(self.touched_key(name), self.copying_key(name))
        await self.store.publish(f"ring {epoch}")
        return epoch, epoch + 1

    async def abort(self, node: NodeRecord, kind: str) -> tuple[int, int]:
        """Replace the running move by its reverse, atomically: ``node`` (already in its inverse
        state) and a fresh move record of ``kind``; the running migrator's lease is revoked.
        Returns (new epoch, target epoch)."""
        res = await self._abort(
            keys=[self.store.k("nodes"), self.store.k("ring", "epoch"), self.move_key, self.cursor_key, self.lease_key],
            args=[node.id, node.to_json(), kind, str(time.time()), uuid.uuid4().hex],
        )
        epoch = int(res)
        if epoch < 0:
            raise FailedPrecondition("no rebalance is running; nothing to abort")
        # Keys clients wrote during the aborted move are on its target owners: the reverse move
        # must carry them back too, so the old marks go.
        for name in await self.store.collection_names():
            await self.r.delete(self.touched_key(name), self.copying_key(name))
        await self.store.publish(f"ring {epoch}")
        return epoch, epoch + 1

    async def state(self) -> MoveState:
        raw = {k.decode(): v.decode() for k, v in (await self.r.hgetall(self.move_key)).items()}
        if not raw:
            return MoveState()
        ms = MoveState(
            id=raw.get("id", ""), kind=raw.get("kind", ""), node=raw.get("node", ""), state=raw.get("state", ""),
            target_epoch=int(raw.get("target_epoch", 0)), started_at=float(raw.get("started_at", 0) or 0),
            finished_at=float(raw.get("finished_at", 0) or 0), rows_to_move=int(raw.get("rows_to_move", -1)),
            rows_moved=int(raw.get("rows_moved", 0)), migrator_pid=int(raw.get("migrator_pid", 0) or 0),
            migrator_host=raw.get("migrator_host", ""), aborted_kind=raw.get("aborted_kind", ""),
            aborted_rows_moved=int(raw.get("aborted_rows_moved", 0) or 0),
        )
        lease = await self.r.get(self.lease_key)
        ms.lease_holder = lease.decode() if lease else ""
        for k, v in (await self.r.hgetall(self.cursor_key)).items():
            coll, _, src = k.decode().partition("|")
            ms.cursors[(coll, src)] = Cursor.from_json(v)
        return ms

    async def set_fields(self, **fields: Any) -> None:
        await self.r.hset(self.move_key, mapping={k: str(v) for k, v in fields.items()})

    # -- lease (fencing token = target epoch)
    async def acquire(self, target_epoch: int, ttl_ms: int) -> str | None:
        token = f"{target_epoch}:{uuid.uuid4().hex}"
        ok = await self.r.set(self.lease_key, token, nx=True, px=ttl_ms)
        return token if ok else None

    async def renew(self, token: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[self.lease_key], args=[token, ttl_ms]))

    async def release(self, token: str) -> None:
        await self._release(keys=[self.lease_key], args=[token])

    async def write_cursor(self, token: str, collection: str, source: str, cursor: Cursor, moved_delta: int) -> bool:
        return bool(await self._cursor(
            keys=[self.lease_key, self.cursor_key, self.move_key],
            args=[token, f"{collection}|{source}", cursor.to_json(), moved_delta],
        ))

    async def finish(self, token: str, node: NodeRecord) -> int:
        """Final node state + epoch bump + move done, atomically; -1 if the lease was lost."""
        res = await self._finish(
            keys=[self.lease_key, self.store.k("nodes"), self.store.k("ring", "epoch"), self.move_key],
            args=[token, node.id, node.to_json(), str(time.time())],
        )
        epoch = int(res)
        if epoch >= 0:
            for name in await self.store.collection_names():
                await self.r.delete(self.touched_key(name), self.copying_key(name))
            await self.store.publish(f"ring {epoch}")
        return epoch

    # -- keys touched by clients during a move
    async def touch(self, collection: str, pks: list[int | str], mark: str) -> list[str]:
        """Mark ``pks`` written (``w``) or deleted (``d``) before the write runs; returns the keys
        (as strings) a migrator is copying right now (its upsert could land after the write)."""
        if not pks:
            return []
        got = await self.r.eval(_TOUCH, 2, self.touched_key(collection), self.copying_key(collection),
                                mark, str(TOUCHED_TTL_S), *[str(pk) for pk in pks])
        return [g.decode() if isinstance(g, bytes) else str(g) for g in got or []]

    async def wait_released(self, collection: str, keys: list[str], timeout_s: float = CLAIM_WAIT_S) -> bool:
        """Wait until no migrator is copying ``keys`` (claims released); False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while keys:
            vals = await self.r.hmget(self.copying_key(collection), keys)
            keys = [k for k, v in zip(keys, vals) if v is not None]
            if not keys:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def claim(self, collection: str, token: str, pks: list[int | str]) -> list[str]:
        """Migrator: claim the keys no client touched since the move began (returned, as strings)."""
        if not pks:
            return []
        got = await self.r.eval(_CLAIM, 2, self.touched_key(collection), self.copying_key(collection),
                                token, str(CLAIM_TTL_S), *[str(pk) for pk in pks])
        return [g.decode() if isinstance(g, bytes) else str(g) for g in got or []]

    async def release_claims(self, collection: str, token: str, pks: list[int | str]) -> None:
        if pks:
            await self.r.eval(_RELEASE_CLAIMS, 1, self.copying_key(collection), token, *[str(pk) for pk in pks])

    async def touched(self, collection: str, pks: list[int | str]) -> list[str | None]:
        if not pks:
            return []
        vals = await self.r.hmget(self.touched_key(collection), [str(pk) for pk in pks])
        return [v.decode() if v is not None else None for v in vals]
