"""Hinted handoff records in Redis, bounded.

A hint says "replica N missed a write of key K; its copy (if any) went to stand-in S". One hash
per (node, collection): ``{prefix}:hints:N:C`` field K -> ``S|ms`` (S empty when no stand-in took
a copy: a delete, or a write whose stand-in was not needed). A meta hash per node,
``{prefix}:hintmeta:N``, holds ``first_ms`` (when its oldest pending hint was written) and
``overflow`` (why hints stopped being recorded) and ``repair`` (a rebuild is due or running,
:meth:`HintStore.begin_rebuild` / :meth:`HintStore.mark_repaired`).

Bounds (``hint_max_keys`` per node and collection, ``hint_max_age_s``): past them hints stop being
recorded for that node, and the node must be rebuilt (its key ranges copied from the other
replicas, :mod:`shardproxy.rebuild`) before it serves reads again; :meth:`needs_repair` says so.

Replay removes a hint only if it still holds the value that was replayed (a compare-and-delete
in Lua), so a write hinted again during the replay is never forgotten. Every write of a hint
changes its value (a nonce), and writers write hints again *after* their copies landed (and
touch the pending hints of keys they wrote directly, :meth:`HintStore.touch`): a replay that
read its sources before such a write landed is therefore always replayed once more.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import secrets
import time

from redis.asyncio import Redis

_ADD = """
if redis.call('HEXISTS', KEYS[2], 'overflow') == 1 then return 0 end
local max = tonumber(ARGV[1])
local n = redis.call('HLEN', KEYS[1])
local new = (#ARGV - 2) / 2
if n + new > max then
  redis.call('HSET', KEYS[2], 'overflow', 'more than ' .. ARGV[1] .. ' pending hints')
  return 0
end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSETNX', KEYS[2], 'first_ms', ARGV[2])
return 1
"""

_REMOVE_IF = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i]); removed = removed + 1
  end
end
return removed
"""


_TOUCH = """
local DIRECT = 'd'
local at = 1
local touched = 0
for j = 1, #KEYS do
  local n = tonumber(ARGV[at + 1])
  if redis.call('HLEN', KEYS[j]) > 0 then
    for i = at + 2, at + 1 + n do
      local old = redis.call('HGET', KEYS[j], ARGV[i])
      if old then
        local mark = ''
        if string.sub(old, -2) == '|p' then mark = '|p' end
        redis.call('HSET', KEYS[j], ARGV[i], string.match(old, '^[^|]*') .. '|' .. ARGV[1] .. '|' .. DIRECT .. mark)
        touched = touched + 1
      end
    end
  end
  at = at + 1 + n
end
return touched
"""


_BEGIN = """
local why = redis.call('HGET', KEYS[1], 'repair') or redis.call('HGET', KEYS[1], 'overflow') or ARGV[1]
redis.call('HSET', KEYS[1], 'repair', why)
redis.call('HDEL', KEYS[1], 'overflow', 'first_ms')
return 1
"""

_FINISH = """
if redis.call('HEXISTS', KEYS[1], 'overflow') == 1 then return 0 end
redis.call('HDEL', KEYS[1], 'repair')
return 1
"""


UNDO = "!undo"  # the stand-in field of an undo record: an R = 1 insert reported as failed that may
# have landed on the node (it hung, or did not answer in time): replayed as a delete on the node
# before it serves reads or writes again


DIRECT = "d"  # field of a hint touched by a direct write of its key to its node: the node received a
# newer write than the one it missed, so its copy is current and the stand-in's is not
IN_FLIGHT = "p"  # last field of a hint written before its write's copies were sent
IN_FLIGHT_MAX_S = 120.0  # an in-flight hint older than this is replayed anyway (its writer died)


@dataclass(frozen=True)
class Hint:
    pk: int | str
    standin: str  # "" when no stand-in holds a copy
    raw: tuple[bytes, bytes]  # the stored (field, value), for the compare-and-delete
    ms: int = 0  # when it was written
    in_flight: bool = False  # its write may still be landing: not replayable yet
    direct: bool = False  # a direct write of the key reached the node after the write it missed

    def ready(self, now_ms: int, max_s: float = IN_FLIGHT_MAX_S) -> bool:
        """Replayable now: its write is done (or its writer gave no news for ``max_s``). Pure."""
        return not self.in_flight or now_ms - self.ms > max_s * 1000


def encode(standin: str, now_ms: int, nonce: str = "", in_flight: bool = False) -> str:
    """A hint's value: the stand-in, the time and a nonce, so that every write of a hint (even two
    in the same millisecond) changes its value and a replay's compare-and-delete sees it; ``p``
    last while the write's copies may still be landing (a replay must not judge the key yet: it
    would find no copy, delete it on the replica and the stand-in, and the landing copies with it)."""
    return f"{standin}|{now_ms}|{nonce or secrets.token_hex(4)}" + (f"|{IN_FLIGHT}" if in_flight else "")


def decode(pk_raw: bytes, value: bytes, pk_is_str: bool) -> Hint:
    parts = value.decode().split("|")
    ms = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    pk: int | str = pk_raw.decode() if pk_is_str else int(pk_raw)
    return Hint(pk=pk, standin=parts[0], raw=(pk_raw, value), ms=ms, in_flight=parts[-1] == IN_FLIGHT,
                direct=DIRECT in parts[3:])


def over_age(first_ms: int | None, now_ms: int, max_age_s: float) -> bool:
    """True when the oldest pending hint is older than the bound. Pure."""
    return first_ms is not None and now_ms - first_ms > max_age_s * 1000


class HintStore:
    def __init__(self, r: Redis, prefix: str, max_keys: int, max_age_s: float) -> None:
        self.r = r
        self.prefix = prefix
        self.max_keys = max_keys
        self.max_age_s = max_age_s
        self._add = r.register_script(_ADD)
        self._remove_if = r.register_script(_REMOVE_IF)
        self._touch = r.register_script(_TOUCH)
        self._begin = r.register_script(_BEGIN)
        self._finish = r.register_script(_FINISH)

    def key(self, node: str, collection: str) -> str:
        return f"{self.prefix}:hints:{node}:{collection}"

    def meta_key(self, node: str) -> str:
        return f"{self.prefix}:hintmeta:{node}"

    async def add(self, node: str, collection: str, pks: Iterable[int | str], standin: str = "",
                  now_ms: int | None = None, in_flight: bool = False) -> bool:
        """Record hints (before the stand-in gets the data: ``in_flight``, written again without
        it once the write is done). False when the node's hints are past their bounds: nothing
        was recorded and the node needs a repair."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        args: list[str] = [str(self.max_keys), str(now_ms)]
        value = encode(standin, now_ms, in_flight=in_flight)
        for pk in pks:
            args += [str(pk), value]
        if len(args) == 2:
            return True
        ok = await self._add(keys=[self.key(node, collection), self.meta_key(node)], args=args)
        return bool(ok)

    async def touch(self, collection: str, by_node: dict[str, list[int | str]], now_ms: int | None = None) -> int:
        """After a write or delete reached these nodes directly: rewrite the value of every
        pending hint of those keys on those nodes (keeping its stand-in), so a replay that read
        its source before this write landed fails its compare-and-delete and replays the key
        again from the now current copies (it could otherwise put an older copy, or a deleted
        row, back on the node after this write). One round trip; returns how many were touched."""
        by_node = {n: list(p) for n, p in by_node.items() if p}
        if not by_node:
            return 0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        args: list[str] = [f"{now_ms}|{secrets.token_hex(4)}"]
        for pks in by_node.values():
            args += [str(len(pks)), *map(str, pks)]
        return int(await self._touch(keys=[self.key(n, collection) for n in by_node], args=args))

    async def batch(self, node: str, collection: str, pk_is_str: bool, count: int = 1000) -> list[Hint]:
        _, items = await self.r.hscan(self.key(node, collection), 0, count=count)
        return [decode(k, v, pk_is_str) for k, v in list(items.items())[:count]]

    async def all(self, node: str, collection: str, pk_is_str: bool) -> list[Hint]:
        """Every pending hint of the node (for verify: which copies handoff accounts for)."""
        items = await self.r.hgetall(self.key(node, collection))
        return [decode(k, v, pk_is_str) for k, v in items.items()]

    async def remove(self, node: str, collection: str, hints: Sequence[Hint]) -> int:
        if not hints:
            return 0
        args: list[bytes] = []
        for h in hints:
            args += [h.raw[0], h.raw[1]]
        return int(await self._remove_if(keys=[self.key(node, collection)], args=args))

    async def stuck(self, node: str, collections: Iterable[str], before_ms: int) -> int:
        """How many of the node's hints written before ``before_ms`` are still pending and
        replayable (not a write still landing): a replay pass that started then could not settle
        them (a source is out). Hints written since are new writes, not stuck ones."""
        now_ms = int(time.time() * 1000)
        n = 0
        for name in collections:
            for h in await self.all(node, name, True):  # the key itself is not needed
                n += h.ms < before_ms and h.ready(now_ms)
        return n

    async def holding(self, node: str, collection: str, pks: Sequence[int | str], pk_is_str: bool) -> dict[int | str, Hint]:
        """The node's own pending hints among ``pks``, by key."""
        if not pks:
            return {}
        values = await self.r.hmget(self.key(node, collection), [str(pk) for pk in pks])
        return {pk: decode(str(pk).encode(), v, pk_is_str) for pk, v in zip(pks, values) if v is not None}

    async def pending(self, node: str, collections: Iterable[str]) -> int:
        total = 0
        for name in collections:
            total += int(await self.r.hlen(self.key(node, name)))
        return total

    async def needs_repair(self, node: str, now_ms: int | None = None) -> str:
        """Why the node cannot be brought back by its hints alone ("" when it can)."""
        meta = await self.r.hgetall(self.meta_key(node))
        if b"repair" in meta:  # a rebuild began and has not finished (the proxy doing it died)
            return meta[b"repair"].decode()
        if b"overflow" in meta:
            return meta[b"overflow"].decode()
        first = int(meta[b"first_ms"]) if b"first_ms" in meta else None
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if over_age(first, now_ms, self.max_age_s):
            return f"its oldest hint is older than {self.max_age_s:g} s"
        return ""

    async def clear_if_empty(self, node: str, collections: Iterable[str]) -> bool:
        """Forget the node's hint age once every hint was replayed (the overflow flag stays)."""
        if await self.pending(node, collections):
            return False
        await self.r.hdel(self.meta_key(node), "first_ms")
        return True

    async def begin_rebuild(self, node: str, why: str) -> None:
        """Before a rebuild of the node's key ranges scans its peers: hints are recorded again
        from now on (so writes racing the rebuild are replayed after it), while ``repair`` keeps
        the node marked as needing a repair until :meth:`mark_repaired` (a proxy dying mid-way
        leaves it so, and the next one rebuilds again)."""
        await self._begin(keys=[self.meta_key(node)], args=[why])

    async def mark_repaired(self, node: str) -> bool:
        """After a rebuild of the node's key ranges: its pending hints (older ones and those of
        writes during the rebuild) can bring it up to date again. False, and still marked, when
        its hints overflowed again during the rebuild (rebuild once more)."""
        return bool(await self._finish(keys=[self.meta_key(node)]))
