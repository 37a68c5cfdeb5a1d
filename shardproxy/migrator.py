"""The migrator: carries the keys whose owner changes from their old node to their new one.

Runs as its own process (``shardproxy rebalance run``; the proxy that accepted ``node add`` /
``node drain`` starts one). It can be killed with -9 at any moment and started again: it
resumes from the cursors in Redis. Exactly one runs at a time: it holds the Redis lease
``{p}:move:lease`` (``SET NX PX``, renewed), whose token starts with the target epoch; every
cursor write and the final epoch bump check the token (fencing).

For each collection and each node of the current ring (the *source*), in primary-key order:

1. after a grace period (every proxy now writes to the target owners), scan the source's
   primary keys once (``pk > cursor``, ``iterator=True`` so milvus-lite returns them ordered by
   pk; keys only) and keep those whose owner on the target ring is another node: that sum over
   all sources is ``rows_to_move``;
2. take them ``batch`` at a time, in pk order;
3. drop keys a proxy wrote or deleted since the move began (the ``touched`` hash: the proxy's
   write at the new owner is newer than our copy) and claim the others (``copying``, one Lua
   script with the check): a proxy writing a claimed key waits until we release it after our
   upsert, so our older copy never lands after its write;
4. read the full rows (``output_fields=["*"]``) and upsert them on their new owner, through the
   node's write slot; after the acknowledgement, re-check ``touched``: a key deleted in the
   meantime is deleted on the new owner too (tombstones are written before the delete, so a
   delete can never be lost to a copy);
5. wait ``settle_s`` (a search that started before the upsert landed still finds the row on the
   source), then delete the moved keys on the source;
6. advance the cursor (fenced).

Each step is idempotent, so a crash anywhere repeats at most one batch. When every cursor is
done the node's final state (``active`` for a join, ``drained`` for a drain) and the epoch
bump are written in one Lua script.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymilvus.grpc_gen import milvus_pb2

from shardproxy import fielddata, metrics
from shardproxy.metastore import CollectionRecord, MetaStore, NodeRecord, NodeState
from shardproxy.moves import Cursor, MoveState, MoveStore
from shardproxy.nodepool import CatalogState, NodeClient
from shardproxy.nodequery import fetch_rows_by_partition, pk_expr, scan_pks
from shardproxy.placement import Placement
from shardproxy.ring import Ring

log = logging.getLogger(__name__)


SCAN_BATCH = 16384


class LeaseLost(Exception):
    pass


@dataclass
class MigratorOptions:
    batch: int = 1000  # rows carried per step
    lease_ttl_s: float = 10.0
    settle_s: float = 0.2
    grace_s: float = 2.5  # after the move starts: every proxy has seen it (ring check interval is 1 s)
    node_timeout_s: float = 60.0
    max_rows_per_s: float = 0.0  # 0 = unthrottled
    batch_attempts: int = 30  # a failed batch (a node down, a timeout) is retried this often, with backoff
    retry_backoff_s: float = 0.5  # first pause; doubles up to 10 s


class Migrator:
    def __init__(self, store: MetaStore, options: MigratorOptions | None = None, vnodes: int = 160) -> None:
        self.store = store
        self.moves = MoveStore(store)
        self.opt = options or MigratorOptions()
        self.vnodes = vnodes
        self.token = ""
        self.clients: dict[str, NodeClient] = {}
        self._lost = asyncio.Event()
        self._t0 = time.monotonic()
        self._moved_here = 0

    # -- lease
    async def _keep_lease(self) -> None:
        ttl = int(self.opt.lease_ttl_s * 1000)
        while True:
            await asyncio.sleep(self.opt.lease_ttl_s / 3)
            try:
                ok = await self.moves.renew(self.token, ttl)
            except Exception as exc:  # noqa: BLE001 - Redis hiccup: try again, the TTL covers us
                log.warning("lease renewal failed: %s", exc)
                continue
            if not ok:
                log.error("lost the migrator lease; stopping")
                self._lost.set()
                return

    def _check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost("lease lost")

    def client(self, node: NodeRecord) -> NodeClient:
        c = self.clients.get(node.id)
        if c is None:
            c = self.clients[node.id] = NodeClient(node, self.opt.node_timeout_s, 1)
        return c

    # -- main
    async def run(self, wait_lease_s: float = 0.0) -> int:
        """Carry out the running move. Returns the final epoch, or -1 when there is nothing to do."""
        ms = await self.moves.state()
        if not ms.running:
            log.info("no move is running")
            return -1
        deadline = time.monotonic() + wait_lease_s
        while True:
            token = await self.moves.acquire(ms.target_epoch, int(self.opt.lease_ttl_s * 1000))
            if token:
                break
            if time.monotonic() >= deadline:
                raise LeaseLost("another migrator holds the lease")
            await asyncio.sleep(0.5)
        self.token = token
        keeper = asyncio.create_task(self._keep_lease())
        try:
            await self.moves.set_fields(migrator_pid=os.getpid(), migrator_host=socket.gethostname())
            log.info("migrator %s: %s %s, target epoch %d", os.getpid(), ms.kind, ms.node, ms.target_epoch)
            return await self._run(ms)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            if not self._lost.is_set():
                await self.moves.release(self.token)
            for c in self.clients.values():
                await c.close()

    async def _run(self, ms: MoveState) -> int:
        nodes = await self.store.nodes()
        by_id = {n.id: n for n in nodes}
        placement = Placement.from_nodes(nodes, self.vnodes)
        current, target = placement.current, placement.target
        records = await self.store.collections()
        catalog = await CatalogState.load(self.store)
        # The new owners get every collection's DDL (schema, indexes, load) first.
        t0 = time.monotonic()
        for nid in target.node_ids:
            if by_id[nid].state != NodeState.DOWN:
                await self.client(by_id[nid]).sync(records, catalog)
        log.info("target nodes synced in %.1f s", time.monotonic() - t0)
        wait = ms.started_at + self.opt.grace_s - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        sources = [by_id[nid] for nid in current.node_ids]
        # One pk-only snapshot per (collection, source): keys whose owner changes can only be
        # there from before the move (since the grace period every write goes to the target).
        plan: dict[tuple[str, str], list[tuple[Any, str]]] = {}
        for rec in records:
            for src in sources:
                cur = ms.cursors.get((rec.key, src.id), Cursor())
                if cur.done:
                    continue
                t0 = time.monotonic()
                plan[(rec.key, src.id)] = await self._moving_keys(rec, src, current, target, cur.last)
                log.info("%s on %s: %d key(s) to move (scan took %.1f s)", rec.key, src.id,
                         len(plan[(rec.key, src.id)]), time.monotonic() - t0)
        if ms.rows_to_move < 0:
            total = sum(len(v) for v in plan.values())
            await self.moves.set_fields(rows_to_move=total)
            ms.rows_to_move = total
            log.info("%d row(s) to move", total)
        metrics.MIGRATION_ACTIVE.set(1)
        metrics.MIGRATION_ROWS_PLANNED.set(ms.rows_to_move)
        metrics.MIGRATION_ROWS_REMAINING.set(max(0, ms.rows_to_move - ms.rows_moved))
        for rec in records:
            for src in sources:
                key = (rec.key, src.id)
                if key in plan:
                    cur = ms.cursors.get(key, Cursor())
                    await self._move(rec, src, cur, plan[key], by_id)
        self._check()
        node = by_id[ms.node]
        # A joining node ends active, a draining one drained (an aborted add is a drain).
        final = NodeState.ACTIVE if node.state == NodeState.JOINING else NodeState.DRAINED
        done = NodeRecord(id=node.id, address=node.address, weight=node.weight, state=final)
        epoch = await self.moves.finish(self.token, done)
        if epoch < 0:
            raise LeaseLost("lease lost before the final epoch bump")
        metrics.MIGRATION_ROWS_REMAINING.set(0)
        metrics.MIGRATION_ACTIVE.set(0)
        log.info("move done: %s is %s, ring epoch %d", node.id, final.value, epoch)
        return epoch

    async def _moving_keys(self, rec: CollectionRecord, src: NodeRecord, current: Ring, target: Ring,
                           after: Any) -> list[tuple[Any, list[str]]]:
        """Keys on ``src`` after ``after`` that ``src`` must give away, ascending, with the nodes
        that must receive a copy. R = 1: keys whose target owner is another node. R > 1: keys
        whose target replica set no longer includes ``src``; they go to the replicas that are
        new in the target set (the others hold them already)."""
        client = self.client(src)
        last = after
        out: list[tuple[Any, list[str]]] = []
        while True:
            self._check()
            pks = await scan_pks(client, rec, last, SCAN_BATCH)
            if pks:
                if rec.replicas <= 1:
                    out.extend((pk, [o]) for pk, o in zip(pks, target.owners(pks)) if o != src.id)
                else:
                    tgt = target.replica_index(pks, rec.replicas)
                    cur = current.replica_index(pks, rec.replicas)
                    for i, pk in enumerate(pks):
                        t_ids = [target.node_ids[j] for j in tgt[i]]
                        if src.id in t_ids:
                            continue
                        c_ids = {current.node_ids[j] for j in cur[i]}
                        new = [n for n in t_ids if n not in c_ids] if src.id in c_ids else t_ids
                        out.append((pk, new or t_ids))
            if len(pks) < SCAN_BATCH:
                # The end, as of now. Keys written from here on were routed to their target
                # owners, so they never need moving; do not chase the writers' tail.
                return out
            last = pks[-1]

    async def _move(self, rec: CollectionRecord, src: NodeRecord, cur: Cursor, keys: list[tuple[Any, list[str]]],
                    by_id: dict[str, NodeRecord]) -> None:
        client = self.client(src)
        log.info("moving %d row(s) of %s from %s (cursor %s)", len(keys), rec.name, src.id, cur.last)
        for i in range(0, len(keys), self.opt.batch):
            self._check()
            t0 = time.monotonic()
            moving = keys[i : i + self.opt.batch]
            await self._carry_with_retries(rec, client, moving, by_id)
            cur.last = moving[-1][0]
            cur.scanned += len(moving)
            cur.moved += len(moving)
            if not await self.moves.write_cursor(self.token, rec.key, src.id, cur, len(moving)):
                raise LeaseLost("cursor write refused")
            self._moved_here += len(moving)
            for nid in {n for _, owners in moving for n in owners}:
                metrics.MIGRATION_ROWS_MOVED.labels(source=src.id, target=nid).inc(
                    sum(1 for _, owners in moving if nid in owners))
            metrics.MIGRATION_ROWS_REMAINING.dec(len(moving))
            metrics.MIGRATION_BATCH_SECONDS.observe(time.monotonic() - t0)
            if self.opt.max_rows_per_s > 0:
                pause = len(moving) / self.opt.max_rows_per_s - (time.monotonic() - t0)
                if pause > 0:
                    await asyncio.sleep(pause)
        cur.done = True
        if not await self.moves.write_cursor(self.token, rec.key, src.id, cur, 0):
            raise LeaseLost("cursor write refused")

    async def _carry_with_retries(self, rec: CollectionRecord, src: NodeClient, moving: list[tuple[Any, list[str]]],
                                  by_id: dict[str, NodeRecord]) -> None:
        """Carry one batch; a failure (a node down or slow) counts in shardproxy_migration_errors_total
        and the batch is tried again (carrying is idempotent: upserts, then deletes on the source)."""
        pause = self.opt.retry_backoff_s
        for attempt in range(1, self.opt.batch_attempts + 1):
            self._check()
            try:
                await self._carry(rec, src, moving, by_id)
                return
            except LeaseLost:
                raise
            except Exception as exc:  # noqa: BLE001 - counted, logged, retried; the last one propagates
                metrics.MIGRATION_ERRORS.inc()
                if attempt == self.opt.batch_attempts:
                    raise
                log.warning("batch of %d row(s) of %s failed (attempt %d/%d): %s; retrying in %.1f s",
                            len(moving), rec.name, attempt, self.opt.batch_attempts, exc, pause)
                await asyncio.sleep(pause)
                pause = min(10.0, 2 * pause)

    async def _carry(self, rec: CollectionRecord, src: NodeClient, moving: list[tuple[Any, list[str]]],
                     by_id: dict[str, NodeRecord]) -> None:
        pks = [pk for pk, _ in moving]
        # claim the keys no client touched (a write of a claimed key waits for our release, so
        # our copy can never land after it: an upsert racing the copy used to lose to it)
        claimed = set(await self.moves.claim(rec.key, self.token, pks))
        copy = [(pk, o) for pk, o in moving if str(pk) in claimed]
        try:
            await self._copy(rec, src, copy, by_id)
        finally:
            await self.moves.release_claims(rec.key, self.token, [pk for pk, _ in copy])
        if self.opt.settle_s > 0:
            await asyncio.sleep(self.opt.settle_s)
        await src.write(
            "Delete", rec.key,
            milvus_pb2.DeleteRequest(db_name=rec.db, collection_name=rec.name, expr=pk_expr(rec.pk_name, pks, rec.pk_is_str)),
        )

    async def _copy(self, rec: CollectionRecord, src: NodeClient, copy: list[tuple[Any, list[str]]],
                    by_id: dict[str, NodeRecord]) -> None:
        if copy:
            owners_of = dict(copy)
            # rows keep their partition on the new owner
            for partition, fields in await fetch_rows_by_partition(src, rec, [pk for pk, _ in copy]):
                pk_col = next(fd for fd in fields if fd.field_name == rec.pk_name and not fd.is_dynamic)
                groups: dict[str, list[int]] = {}
                for i, pk in enumerate(fielddata.column_values(pk_col)):
                    for nid in owners_of[pk]:
                        groups.setdefault(nid, []).append(i)

                async def send(nid: str, rows: list[int], fields: list = fields, partition: str = partition) -> None:
                    req = milvus_pb2.UpsertRequest(db_name=rec.db, collection_name=rec.name,
                                                   partition_name=partition, num_rows=len(rows))
                    req.fields_data.extend(fielddata.take_all(fields, rows))
                    await self.client(by_id[nid]).write("Upsert", rec.key, req)

                await asyncio.gather(*(send(n, r) for n, r in groups.items()))
            # Deleted by a client while we copied? Then delete the copy as well.
            after = await self.moves.touched(rec.key, [pk for pk, _ in copy])
            gone: dict[str, list[Any]] = {}
            for (pk, owners), m in zip(copy, after):
                if m == "d":
                    for nid in owners:
                        gone.setdefault(nid, []).append(pk)
            for nid, dpks in gone.items():
                await self.client(by_id[nid]).write(
                    "Delete", rec.key,
                    milvus_pb2.DeleteRequest(db_name=rec.db, collection_name=rec.name,
                                             expr=pk_expr(rec.pk_name, dpks, rec.pk_is_str)),
                )


async def run_migrator(redis_url: str, prefix: str, options: MigratorOptions, vnodes: int,
                       wait_lease_s: float = 0.0) -> int:
    store = MetaStore(redis_url, prefix)
    try:
        return await Migrator(store, options, vnodes).run(wait_lease_s=wait_lease_s)
    finally:
        await store.close()


def spawn(redis_url: str, prefix: str, log_path: str, vnodes: int, metrics_port: int = 0,
          max_rows_per_s: float = 0.0) -> int:  # noqa: D401
    """Start a detached migrator process (``shardproxy rebalance run``); returns its pid."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardproxy", "rebalance", "run", "--redis-url", redis_url, "--prefix", prefix,
         "--vnodes", str(vnodes), "--wait-lease", "15", "--metrics-port", str(metrics_port),
         "--max-rows-per-s", str(max_rows_per_s)],
        stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    logf.close()
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()  # no zombie after kill -9
    return proc.pid


