"""Background duties a proxy takes on under Redis leases (so one proxy of the cluster does each):

* **migrator watchdog**: a move is running, no migrator holds the move lease (it died: kill -9,
  OOM, host restart) and none was started recently: start one (``rebalance resume`` by hand is no
  longer needed). Lease ``{p}:watchdog:lease``.
* **anti-entropy repair**: every ``repair_interval_s`` (0 = off), when no move runs and no node is
  down, one verify + repair pass over every collection at ``repair_rows_per_s`` (see
  :mod:`shardproxy.repair`). Lease ``{p}:repair:lease``, renewed while the pass runs. Findings
  and progress are the ``shardproxy_verify_*`` / ``shardproxy_repair_*`` metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from shardproxy import metrics
from shardproxy.metastore import MetaStore, NodeState
from shardproxy.moves import MoveStore
from shardproxy.repair import Repairer
from shardproxy.verifyscan import ScanOptions

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """``SET NX PX`` lease with a token; renew/release only while we hold it."""

    def __init__(self, store: MetaStore, name: str, ttl_s: float) -> None:
        self.r = store.r
        self.key = store.k(name, "lease")
        self.ttl_ms = int(ttl_s * 1000)
        self.token = ""
        self._renew = self.r.register_script(_RENEW)
        self._release = self.r.register_script(_RELEASE)

    async def acquire(self) -> bool:
        token = uuid.uuid4().hex
        if await self.r.set(self.key, token, nx=True, px=self.ttl_ms):
            self.token = token
            return True
        return False

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    async def release(self) -> None:
        if self.token:
            await self._release(keys=[self.key], args=[self.token])
            self.token = ""


class Background:
    def __init__(self, store: MetaStore, spawn_migrator: Callable[[], int], *, interval_s: float = 2.0,
                 repair_interval_s: float = 0.0, repair_rows_per_s: float = 1000.0, vnodes: int = 160,
                 watchdog: bool = True, respawn_after_s: float = 20.0) -> None:
        self.store = store
        self.moves = MoveStore(store)
        self.spawn_migrator = spawn_migrator
        self.interval_s = interval_s
        self.repair_interval_s = repair_interval_s
        self.repair_rows_per_s = repair_rows_per_s
        self.vnodes = vnodes
        self.watchdog = watchdog
        self.respawn_after_s = respawn_after_s
        self._last_spawn = 0.0
        self._last_repair = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="shardproxy-background")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                if self.watchdog:
                    await self.check_migrator()
                if self.repair_interval_s > 0 and time.monotonic() - self._last_repair >= self.repair_interval_s:
                    self._last_repair = time.monotonic()
                    await self.repair_pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis or node hiccup: next round
                log.exception("background duty failed")

    async def check_migrator(self) -> int:
        """Start a migrator when a move runs without one. Returns the pid started (0: none)."""
        ms = await self.moves.state()
        if not ms.running or ms.lease_holder:
            return 0
        now = time.time()
        # give the migrator the proxy started a moment to take the lease
        if now - ms.started_at < 5.0 or time.monotonic() - self._last_spawn < self.respawn_after_s:
            return 0
        lease = Lease(self.store, "watchdog", self.respawn_after_s)
        if not await lease.acquire():
            return 0  # another proxy does it
        self._last_spawn = time.monotonic()
        pid = self.spawn_migrator()
        log.warning("move %s %s had no migrator; started one (pid %d)", ms.kind, ms.node, pid)
        return pid

    async def repair_pass(self) -> str:
        """One verify + repair pass if no move runs, no node is down and we get the lease.
        Returns ``clean`` / ``repaired`` / ``skipped`` / ``busy``."""
        nodes = await self.store.nodes()
        if any(n.state in (NodeState.JOINING, NodeState.DRAINING, NodeState.DOWN) for n in nodes):
            return "skipped"
        lease = Lease(self.store, "repair", 60.0)
        if not await lease.acquire():
            return "busy"
        keeper = asyncio.create_task(self._keep(lease))
        rep = Repairer(self.store, ScanOptions(max_rows_per_s=self.repair_rows_per_s, vnodes=self.vnodes))
        result = "error"
        try:
            fixed = 0
            for report in await rep.scanner.run():
                rec = await self.store.collection(report.collection)
                if rec is None or report.clean:
                    continue
                res = await rep.repair(rec, report)
                fixed += res.copied + res.reconverged + res.strays_deleted
            result = "repaired" if fixed else "clean"
            return result
        finally:
            metrics.REPAIR_PASSES.labels(result=result).inc()
            metrics.REPAIR_LAST_PASS.set(time.time())
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await rep.close()
            await lease.release()

    @staticmethod
    async def _keep(lease: Lease) -> None:
        while True:
            await asyncio.sleep(lease.ttl_ms / 3000)
            if not await lease.renew():
                log.warning("lost the repair lease")
                return
