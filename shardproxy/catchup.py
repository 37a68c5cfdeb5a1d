"""Hinted handoff on the proxy side: recording hints for writes that missed a replica, and the
catch-up of a node that answers again (replay, rebuild when its hints are past their bounds,
switch back to ``active``). Mixed into :class:`shardproxy.cluster.Cluster`; the pure parts are
in :mod:`shardproxy.handoff` (which copy wins) and :mod:`shardproxy.hints` (the Redis records).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from shardproxy import handoff, metrics, rebuild
from shardproxy.metastore import NodeState
from shardproxy.nodepool import NodeClient
from shardproxy.placement import replica_lists

if TYPE_CHECKING:
    from shardproxy.config import ProxySettings
    from shardproxy.hints import HintStore
    from shardproxy.metastore import MetaStore
    from shardproxy.nodepool import NodePool
    from shardproxy.ring import Ring

log = logging.getLogger("shardproxy.cluster")


class HintedHandoff:
    """Needs the cluster's settings, store, pool, ring, hint store and health maps."""

    settings: ProxySettings
    store: MetaStore
    pool: NodePool
    ring: Ring
    current_ring: Ring
    moving: bool
    hints: HintStore
    _health: dict[str, bool]
    _hinted: set[str]
    _repair_warned: dict[str, str]

    def is_live(self, node_id: str) -> bool: ...
    def answers(self, node_id: str) -> bool: ...
    async def _set_state(self, node_id: str, state: NodeState, expect: NodeState) -> None: ...

    async def add_hints(self, node_id: str, collection: str, pks: Iterable[int | str], standin: str = "",
                        again: bool = False, in_flight: bool = False) -> bool:
        """Record that ``node_id`` missed writes of ``pks`` (a copy went to ``standin``, if any);
        ``again``: the same hints rewritten after the write landed (not counted twice);
        ``in_flight``: written before the write's copies were sent (not replayable yet).
        False when the node's hints are past their bounds (nothing recorded: it needs a repair)."""
        pks = list(pks)
        if not pks:
            return True
        try:
            ok = await self.hints.add(node_id, collection, pks, standin, in_flight=in_flight)
        except (RedisError, OSError) as exc:
            if not again:
                raise
            # the write landed and its first hints are durable; only the race guard is lost
            log.warning("could not write %d hint(s) of %s again: %s", len(pks), node_id, exc)
            return False
        self._hinted.add(node_id)
        if ok and not again:
            metrics.HINTS_WRITTEN.labels(node=node_id).inc(len(pks))
        else:
            metrics.HINTS_REFUSED.labels(node=node_id).inc(len(pks))
        return ok

    async def touch_hints(self, collection: str, by_node: dict[str, list[int | str]]) -> None:
        """A write reached these nodes directly: pending hints of its keys there are replayed
        again (see :meth:`shardproxy.hints.HintStore.touch`). The write itself is done: Redis
        not answering does not fail it (a replay then cannot remove its hints either)."""
        try:
            await self.hints.touch(collection, by_node)
        except (RedisError, OSError) as exc:
            log.warning("could not touch pending hints of %s: %s", collection, exc)

    async def catch_up(self, client: NodeClient) -> None:
        """Replay the hints of a node that answers; mark it active when it was down and no hint
        older than the replay pass is left (hints written during the pass are replayed right after
        the switch; covering reads count it only as a spare meanwhile). A node whose hints overflowed or grew too old is rebuilt from the other
        replicas first (:meth:`_rebuild`; its hints alone cannot bring it up to date) and stays
        down (out of reads) until that and the replay are done."""
        rec_state = client.record.state
        names = await self.store.collection_keys()  # every database's
        pending = await self.hints.pending(client.id, names)
        if pending:
            self._hinted.add(client.id)
        if not pending and rec_state != NodeState.DOWN:
            self._hinted.discard(client.id)
            self._health[client.id] = True
            return
        why = await self.hints.needs_repair(client.id)
        if why and rec_state == NodeState.ACTIVE:  # out of reads first; the next probe rebuilds it
            log.warning("node %s needs a repair before it serves reads (%s)", client.id, why)
            await self._set_state(client.id, NodeState.DOWN, expect=NodeState.ACTIVE)
            return
        if not why and rec_state == NodeState.ACTIVE:
            # another proxy switched it to active with hints still pending: it takes writes again,
            # and covering reads count it only as a spare until its hints are replayed
            self._health[client.id] = True
        lock = self.store.k("catchup", client.id)
        token = f"{self.settings.proxy_id or self.settings.address}:{id(self)}"
        if not await self.store.r.set(lock, token, nx=True, px=120_000):
            return  # another proxy is on it
        keeper = asyncio.create_task(rebuild.hold(self.store.r, lock, token, 120_000)) if why else None
        try:
            if why and not await self._rebuild(client, why):
                return  # not now (a peer is out, a move runs) or overflowed again: next probe
            started_ms = int(time.time() * 1000)
            await self._replay_all(client)
            if await self.hints.stuck(client.id, names, started_ms):
                return  # some hints cannot be replayed yet (a stand-in is unreachable): stay out of reads
            # what is left was hinted while this pass ran (writes go on while the node is down: waiting
            # for none would never end under load); it is replayed right after the switch below
            if rec_state == NodeState.DOWN:
                await self._set_state(client.id, NodeState.ACTIVE, expect=NodeState.DOWN)
                await self._replay_all(client)  # writes hinted while every proxy learnt the switch
            if await self.hints.clear_if_empty(client.id, names):
                self._hinted.discard(client.id)
            self._health[client.id] = True
        finally:
            if keeper is not None:
                keeper.cancel()
            if (await self.store.r.get(lock) or b"").decode() == token:
                await self.store.r.delete(lock)

    async def _rebuild(self, client: NodeClient, why: str) -> bool:
        """Rebuild a node whose hints overflowed or grew too old from the other replicas, under
        the catch-up lock, once every peer answers and no move runs (:func:`rebuild.rebuild_node`).
        True when done; the caller then replays the hints written meanwhile and marks it active."""
        others = [n for n in self.ring.node_ids if n != client.id]
        blocked = "a move runs" if self.moving else ", ".join(f"{n} is out" for n in others if not self.is_live(n))
        if blocked:
            if self._repair_warned.get(client.id) != blocked:
                log.warning("node %s needs a repair (%s); it stays down while %s", client.id, why, blocked)
                self._repair_warned[client.id] = blocked
            return False
        log.warning("node %s needs a repair (%s): rebuilding its key ranges from %s", client.id, why, ", ".join(others))
        self._repair_warned.pop(client.id, None)
        return await rebuild.rebuild_node(
            client, {n: self.pool.clients[n] for n in others}, await self.store.collections(), self.hints, why,
            lambda keys, r: replica_lists(self.ring, keys, r), lambda: self._replay_all(client),
            self.settings.repair_rows_per_s)

    async def _replay_all(self, client: NodeClient) -> None:
        rings = [self.ring] + ([self.current_ring] if self.moving else [])  # where the keys' replicas are
        for rec in await self.store.collections():
            if rec.replicas <= 1 and not await self.hints.pending(client.id, [rec.key]):
                continue
            for _ in range(1 + (await self.hints.pending(client.id, [rec.key])) // handoff.BATCH + 2):
                if not await handoff.replay_batch(self.hints, client, rec, rings, self.pool.clients, self.is_live,
                                                        self.answers):
                    break

    def has_hints(self, node_id: str) -> bool:
        """The node has pending hints (as of this proxy's last probe or its own hint): some of its
        copies may still be on stand-ins, so covering reads do not rely on it alone."""
        return node_id in self._hinted
