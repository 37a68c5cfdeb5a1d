"""The proxy's live view of the cluster: registry, ring, node clients, collection records.

Everything here is rebuilt from Redis; a proxy holds only caches. A watcher follows the
``{prefix}:events`` channel and checks the ring epoch every ``ring_check_interval_s``, so a
change made through any proxy (or the CLI) reaches every proxy within about a second. A health
loop re-syncs nodes that come back (milvus-lite forgets the load state across restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any


from shardproxy.config import ProxySettings
from shardproxy.probing import ProbeHistory, probe_deadline, round_is_verdict
from shardproxy.errors import CollectionNotFound, FailedPrecondition, ProxyError, Unavailable
from shardproxy.metastore import (
    SEARCH_STATES,
    CollectionRecord,
    MetaStore,
    NodeRecord,
    NodeState,
)
from shardproxy import metrics
from shardproxy.catchup import HintedHandoff
from shardproxy.hedging import HedgeBudget
from shardproxy.hints import HintStore
from shardproxy.latency import LatencyTracker
from shardproxy.moves import MoveStore
from shardproxy.catalog import DEFAULT_DB, collection_key
from shardproxy.nodepool import CatalogState, NodeClient, NodePool
from shardproxy.placement import Placement
from shardproxy.resolve import CatalogCache
from shardproxy.ring import Ring

log = logging.getLogger(__name__)

DOWN_AFTER_FAILURES = 2  # consecutive failed probes before a node is marked down in Redis


class Cluster(HintedHandoff):
    def __init__(self, settings: ProxySettings, store: MetaStore | None = None) -> None:
        self.settings = settings
        self.store = store or MetaStore(settings.redis_url)
        self.pool = NodePool(settings.node_timeout_s, settings.node_write_concurrency)
        self.nodes: list[NodeRecord] = []
        self.ring: Ring = Ring([])  # the target ring: owners of new writes (same as current without a move)
        self.current_ring: Ring = Ring([])  # owners before the running move, if any
        self.moving = False
        self.layout: Placement = Placement.steady(self.ring)  # both rings and the move flag, R = 1
        self.moves = MoveStore(self.store)
        self.epoch = -1
        self._collections: dict[str, CollectionRecord] = {}  # by collection key (db/name)
        self.catalog = CatalogCache(self.store.catalog)  # databases and aliases
        self._tasks: list[asyncio.Task[Any]] = []
        self._refresh_lock = asyncio.Lock()
        self._id_blocks: dict[str, tuple[int, int]] = {}
        self._id_lock = asyncio.Lock()
        self._health: dict[str, bool] = {}  # False = circuit open: not called until it answers a probe
        self._fails: dict[str, int] = {}
        self._recovering: dict[str, asyncio.Task[Any]] = {}
        self._repair_warned: dict[str, str] = {}
        self._probes = ProbeHistory()  # answered probe durations: the adaptive probe deadline
        self._hinted: set[str] = set()  # live nodes with pending hints (their copies may be on stand-ins)
        self.hints = HintStore(self.store.r, self.store.prefix, settings.hint_max_keys, settings.hint_max_age_s)
        self.hedge_budget = HedgeBudget(
            ratio=settings.hedge_budget_ratio, burst=settings.hedge_budget_burst, tokens=settings.hedge_budget_burst
        )

    # -- lifecycle
    async def start(self) -> None:
        await self.refresh(force=True)
        self._tasks.append(asyncio.create_task(self._watch_events(), name="events"))
        self._tasks.append(asyncio.create_task(self._watch_epoch(), name="epoch"))
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))

    async def close(self) -> None:
        for t in [*self._tasks, *self._recovering.values()]:
            t.cancel()
        for t in [*self._tasks, *self._recovering.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.pool.close()
        await self.store.close()

    async def refresh(self, force: bool = False) -> None:
        """Reload the registry and ring from Redis if the epoch moved (or when forced)."""
        async with self._refresh_lock:
            epoch = await self.store.epoch()
            if not force and epoch == self.epoch:
                return
            nodes = await self.store.nodes()
            self.nodes = nodes
            self.layout = Placement.from_nodes(nodes, self.settings.vnodes)
            self.ring = self.layout.target
            self.current_ring = self.layout.current
            self.moving = self.layout.moving
            self.pool.update(n for n in nodes if n.state != NodeState.SPARE)
            self._collections.clear()
            self.catalog.clear()
            if self.epoch != epoch:
                log.info(
                    "ring epoch %s: %d node(s) %s", epoch, len(nodes),
                    ", ".join(f"{n.id}={n.state.value}" for n in nodes) or "-",
                )
            self.epoch = epoch
        # nodes known not to answer are left to the health loop (a hung node would stall us)
        await self.sync_nodes([c for c in self.pool.clients.values()
                               if not c.synced and self._health.get(c.id, True)])

    async def sync_nodes(self, clients: Iterable[NodeClient]) -> None:
        clients = list(clients)
        if not clients:
            return
        records = await self.store.collections()
        catalog = await CatalogState.load(self.store)
        for client in clients:
            try:
                done = await client.sync(records, catalog)
                if done:
                    log.info("node %s brought to the recorded state: %s", client.id, "; ".join(done))
            except ProxyError as exc:
                client.synced = False
                if self._health.get(client.id, True):
                    log.warning("node %s is not reachable yet: %s", client.id, exc.message)
                self._health[client.id] = False

    async def _watch_events(self) -> None:
        while True:
            try:
                pubsub = self.store.r.pubsub()
                await pubsub.subscribe(self.store.events_channel)
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    data = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                    kind, _, arg = data.partition(" ")
                    if kind == "ring":
                        await self.refresh()
                    elif kind == "collection":
                        self._collections.pop(arg, None)
                    elif kind in ("alias", "database"):
                        self.catalog.invalidate(kind, arg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep watching through Redis hiccups
                log.warning("event watcher: %s; retrying", exc)
                await asyncio.sleep(1.0)

    async def _watch_epoch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ring_check_interval_s)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("ring check failed: %s", exc)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            try:
                await self.check_health()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("health check failed: %s", exc)

    async def check_health(self) -> dict[str, bool]:
        """Probe every node (a cheap RPC with a short deadline: a hung node accepts connections
        but answers nothing). A node failing ``DOWN_AFTER_FAILURES`` probes in a row has its
        circuit opened and is marked ``down`` in Redis (by whichever proxy notices first; every
        proxy then skips it). A failed client call opens the circuit at once. A node that answers again is recovered in the
        background: re-synced (milvus-lite forgets the load state), its hints replayed (hinted
        handoff), and only then marked ``active`` and its circuit closed. The circuit is only
        ever half-opened by these probes, never by a client request."""
        clients = list(self.pool.clients.values())
        s = self.settings
        timeout = probe_deadline(self._probes.samples, s.health_probe_timeout_s,
                                 max(s.health_probe_timeout_s, s.health_probe_timeout_max_s))
        loop = asyncio.get_running_loop()

        async def probe(c: NodeClient) -> tuple[bool, float]:
            t0 = loop.time()
            ok = await c.healthy(timeout)
            return ok, loop.time() - t0

        start = loop.time()
        results = await asyncio.gather(*(probe(c) for c in clients))
        elapsed = loop.time() - start
        verdict = round_is_verdict(elapsed, timeout)
        if not verdict:
            log.info("health round took %.1f s for a %.1f s deadline: the proxy was starved; failures not counted",
                     elapsed, timeout)
        for c, (ok, took) in zip(clients, results):
            was = self._health.get(c.id)
            if ok:
                self._probes.add(took)
                self._fails[c.id] = 0
                task = self._recovering.get(c.id)
                if task is None or task.done():
                    self._recovering[c.id] = asyncio.create_task(self._recover(c, was), name=f"recover-{c.id}")
            else:
                if not verdict and was is not False:
                    continue  # a starved proxy's timeouts say nothing about the node
                self._fails[c.id] = self._fails.get(c.id, 0) + 1
                if self._fails[c.id] < DOWN_AFTER_FAILURES and was is not False:
                    continue  # one slow probe on a busy machine is not a verdict
                if was is not False:
                    log.warning("node %s (%s) stopped answering", c.id, c.address)
                c.synced = False
                self._health[c.id] = False
                if c.record.state == NodeState.ACTIVE:
                    await self._set_state(c.id, NodeState.DOWN, expect=NodeState.ACTIVE)
        return {c.id: self._health.get(c.id, False) for c in clients}

    async def _recover(self, c: NodeClient, was: bool | None) -> None:
        try:
            if not c.synced or was is False:
                c.synced = False
                if was is False:
                    log.info("node %s answers again; re-syncing its collections", c.id)
                await self.sync_nodes([c])
            if c.synced:
                await self.catch_up(c)
        except Exception as exc:  # noqa: BLE001 - try again at the next probe
            log.warning("recovery of node %s failed: %s", c.id, exc)

    async def _set_state(self, node_id: str, state: NodeState, expect: NodeState) -> None:
        rec = await self.store.node(node_id)
        if rec.state != expect:
            return
        rec.state = state
        epoch = await self.store.put_node(rec, bump_epoch=True)
        log.warning("node %s marked %s (ring epoch %d)", node_id, state.value, epoch)
        await self.refresh()

    def answers(self, node_id: str) -> bool:
        """Reachable for a replay's reads: live, or marked down but answering health probes (it is
        catching up itself; :func:`shardproxy.handoff.plan_sources` decides which of its copies count)."""
        if self.is_live(node_id):
            return True
        c = self.pool.clients.get(node_id)
        return c is not None and c.record.state != NodeState.SPARE and self._fails.get(node_id) == 0  # its last probe answered

    def is_live(self, node_id: str) -> bool:
        """Worth calling: not marked down in Redis and its circuit is closed."""
        c = self.pool.clients.get(node_id)
        if c is None or c.record.state in (NodeState.DOWN, NodeState.SPARE):
            return False
        return self._health.get(node_id, True) is not False

    def mark_failed(self, node_id: str) -> None:
        """Open the circuit after a failed call; the health loop closes it when the node answers."""
        self._health[node_id] = False

    def placement(self, rec: CollectionRecord) -> Placement:
        """Where the keys of ``rec`` live now (its R over the current and target rings)."""
        return self.layout.with_replicas(rec.replicas)

    def client(self, node_id: str) -> NodeClient:
        return self.pool.clients[node_id]

    @property
    def latency(self) -> LatencyTracker:
        """Moving per-node, per-method call latencies (hedge thresholds)."""
        return self.pool.latency

    @property
    def replication_factor(self) -> int:
        """Default R of new collections (each collection records its own), for the metrics."""
        return int(getattr(self.settings, "default_replicas", 1))

    # -- views
    def ring_clients(self) -> list[NodeClient]:
        ids = set(self.ring.node_ids)
        return [c for nid, c in sorted(self.pool.clients.items()) if nid in ids]

    def search_clients(self) -> list[NodeClient]:
        ids = {n.id for n in self.nodes if n.state in SEARCH_STATES}
        return [c for nid, c in sorted(self.pool.clients.items()) if nid in ids]

    def all_clients(self) -> list[NodeClient]:
        return [c for _, c in sorted(self.pool.clients.items())]

    def require_nodes(self) -> None:
        if not self.ring:
            raise FailedPrecondition("no Milvus node is registered; add one with `shardproxy node add ADDR`")

    async def collection(self, name: str, db: str = DEFAULT_DB) -> CollectionRecord:
        """The record of collection ``name`` in database ``db`` (cached until a notice)."""
        key = collection_key(db, name)
        rec = self._collections.get(key)
        if rec is None:
            rec = await self.store.collection(key)
            if rec is None:
                raise CollectionNotFound(name)
            self._collections[key] = rec
        return rec

    def forget(self, key: str) -> None:
        """Drop the cached record of a collection key (``db/name``; the bare name in default)."""
        self._collections.pop(key, None)

    async def reserve_ids(self, name: str, count: int) -> list[int]:
        """``count`` auto ids, unique across proxies (blocks reserved from a Redis counter)."""
        out: list[int] = []
        async with self._id_lock:
            while len(out) < count:
                nxt, end = self._id_blocks.get(name, (1, 0))
                if nxt > end:
                    size = max(self.settings.id_block_size, count - len(out))
                    first = await self.store.reserve_ids(name, size)
                    nxt, end = first, first + size - 1
                take = min(count - len(out), end - nxt + 1)
                out.extend(range(nxt, nxt + take))
                self._id_blocks[name] = (nxt + take, end)
        return out

    def drop_id_block(self, name: str) -> None:
        self._id_blocks.pop(name, None)
