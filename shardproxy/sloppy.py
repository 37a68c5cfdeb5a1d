"""Replicated writes (R > 1), sloppy quorum: the executor half of :mod:`shardproxy.placement`'s
``plan_write``, mixed into :class:`shardproxy.scatter.Scatter`.

Each row goes to its live replicas and, for a replica that is down, fails or hangs, to a stand-in
with a durable hint written first; a row is acknowledged once ``write_ack`` copies landed. After
the copies landed the hints are written again and the pending hints of the keys written directly
are touched, so a catch-up replay that read its sources before the copies landed replays the key
once more (:mod:`shardproxy.hints`). Copies of failed insert rows are deleted again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pymilvus.grpc_gen import milvus_pb2

from shardproxy import metrics
from shardproxy.acks import acks_needed, copies, outcome
from shardproxy.errors import ProxyError, Unavailable
from shardproxy.metastore import CollectionRecord
from shardproxy.nodequery import pk_expr
from shardproxy.placement import plan_write

if TYPE_CHECKING:
    from shardproxy.scatter import NodeSet

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often a replicated write re-checks circuits and its hedge threshold

Key = int | str


@dataclass
class WriteOutcome:
    """Rows of a replicated write: acknowledged, failed, and failed rows that did land on fewer
    copies and could not be undone (upserts)."""

    ok_rows: list[int]
    failed_rows: list[int]
    landed_rows: list[int]
    needed: int
    reasons: list[str] = field(default_factory=list)
    first_error: BaseException | None = None


class SloppyWrites:
    nodes: NodeSet

    async def write_rows(self, rec: CollectionRecord, method: str, build: Callable[[np.ndarray], Any],
                         pks: Sequence[Key]) -> WriteOutcome:
        """R > 1: write ``len(pks)`` rows (``build(rows)`` makes one node's request). Each row goes
        to its live replicas and, for each replica that is down, fails, or has not answered
        within ``write_hedge_s``, to a stand-in (:func:`shardproxy.placement.plan_write`), with a
        durable hint written first. A row is acknowledged once ``write_ack`` copies are durable,
        stand-ins counted. Copies of failed insert rows that landed are deleted again."""
        ring = self.nodes.placement(rec).target
        num_rows = len(pks)
        needed = acks_needed(rec.write_ack, rec.replicas, len(ring))
        hedge_s = self.nodes.settings.write_hedge_s
        unavailable = {n for n in ring.node_ids if not self.nodes.is_live(n)}
        taken: dict[int, set[str]] = {}  # row -> nodes sent it in this write
        served: dict[int, set[str]] = {}  # row -> replicas whose copy is placed (acked or pending)
        serving: dict[tuple[int, str], str] = {}  # (row, node) -> the replica that copy stands for
        acked: dict[str, list[np.ndarray]] = {}
        missed: dict[str, set[int]] = {}  # replica -> rows it may lack (hinted)
        hinted: dict[tuple[str, int], str] = {}  # (replica, row) -> its latest stand-in ("" for none)
        tasks: dict[asyncio.Future[Any], tuple[str, np.ndarray, float]] = {}
        given_up: set[asyncio.Future[Any]] = set()
        reasons: list[str] = []
        first_error: BaseException | None = None

        async def place(rows: Sequence[int] | None) -> None:
            plan = plan_write(ring, pks, rec.replicas, unavailable, rows=rows, taken=taken, served=served)
            sends = {n: list(r) for n, r in plan.sends.items()}
            for node, rows_ in sends.items():
                for i in rows_:
                    serving[(i, node)] = node
            for (replica, standin), rows_ in plan.hints.items():
                for i in rows_:
                    serving[(i, standin)] = replica
                    hinted[(replica, i)] = standin
                missed.setdefault(replica, set()).update(rows_)
                if await self.nodes.add_hints(replica, rec.key, [pks[i] for i in rows_], standin, in_flight=True):
                    metrics.STANDIN_ROWS.labels(node=replica).inc(len(rows_))
                else:  # past the hint bounds: no stand-in copy without its hint
                    drop = set(rows_)
                    sends[standin] = [i for i in sends[standin] if i not in drop]
            for replica, rows_ in plan.unplaced.items():
                missed.setdefault(replica, set()).update(rows_)
                # a stand-in given up on may still get its copy: the hint keeps naming it, so the
                # replay deletes that copy there (with no stand-in left, nothing else would)
                by_prev: dict[str, list[int]] = {}
                for i in rows_:
                    prev = hinted.setdefault((replica, i), "")
                    by_prev.setdefault(prev, []).append(i)
                for prev, rows_p in by_prev.items():
                    await self.nodes.add_hints(replica, rec.key, [pks[i] for i in rows_p], prev, in_flight=True)
            for node, rows_ in sends.items():
                if rows_:
                    arr = np.asarray(rows_, dtype=np.int64)
                    for i in rows_:
                        taken.setdefault(i, set()).add(node)
                        served.setdefault(i, set()).add(serving[(i, node)])
                    fut = asyncio.ensure_future(self.nodes.client(node).write(method, rec.key, build(arr)))
                    tasks[fut] = (node, arr, time.monotonic())

        async def replace(node: str, rows: np.ndarray) -> None:
            """``node`` will not (soon) acknowledge ``rows``: place other copies for them."""
            unavailable.add(node)
            for i in rows.tolist():
                served.get(i, set()).discard(serving.get((i, node), node))
            await place(rows.tolist())

        def settled() -> bool:
            have = copies(num_rows, [r for parts in acked.values() for r in parts])
            pending = copies(num_rows, [r for _, r, _ in tasks.values()])
            return bool(np.all((have >= needed) | (pending == 0)))

        await place(None)
        try:
            while tasks and not settled():
                now = time.monotonic()
                waits = [t0 + hedge_s - now for f, (_, _, t0) in tasks.items() if f not in given_up]
                done, _ = await asyncio.wait(list(tasks), timeout=max(0.0, min([POLL_S, *waits])),
                                             return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    node, rows, _ = tasks.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        acked.setdefault(node, []).append(rows)
                        metrics.ROWS_ROUTED.labels(node=node).inc(len(rows))
                        continue
                    reasons.append(f"node {node} refused {len(rows)} row(s): "
                                   + (exc.message if isinstance(exc, ProxyError) else repr(exc)))
                    first_error = first_error or exc
                    if isinstance(exc, Unavailable) and fut not in given_up:
                        self.nodes.mark_failed(node)
                        await replace(node, rows)
                now = time.monotonic()
                for fut, (node, rows, t0) in list(tasks.items()):
                    if fut not in given_up and (not self.nodes.is_live(node) or now - t0 >= hedge_s):
                        given_up.add(fut)
                        reasons.append(f"node {node} did not answer within {hedge_s:g} s")
                        await replace(node, rows)
        finally:
            for fut in tasks:
                fut.cancel()  # the write may still land there: that replica is hinted (see replace)
        await self._after_write(rec, pks, hinted, acked, serving)
        ok, failed, landed = outcome(copies(num_rows, [r for parts in acked.values() for r in parts]), needed)
        if landed and method == "Insert":
            landed = await self._undo(rec, pks, landed, acked, missed, hinted)
        return WriteOutcome(ok, failed, landed, needed, reasons, first_error)

    async def _after_write(self, rec: CollectionRecord, pks: Sequence[Key], hinted: Mapping[tuple[str, int], str],
                           acked: Mapping[str, list[np.ndarray]], serving: Mapping[tuple[int, str], str]) -> None:
        """Hints are written before the copies are sent (a stand-in copy never exists without
        its hint), marked in flight: a replay running meanwhile would read its sources before
        the copies land, find nothing and delete the key on the replica and the stand-in (with
        the copies landing there: acknowledged rows lost). Replays skip in-flight hints; write
        them again, done, now that the copies landed (a replay that read an older value of the
        hint fails its compare-and-delete). Replicas written directly get their pending hints of
        these keys touched too."""
        groups: dict[tuple[str, str], list[Key]] = {}
        for (replica, i), standin in hinted.items():
            groups.setdefault((replica, standin), []).append(pks[i])
        for (replica, standin), keys in groups.items():
            await self.nodes.add_hints(replica, rec.key, keys, standin, again=True)
        direct: dict[str, list[Key]] = {}
        for node, parts in acked.items():
            rows = [i for i in np.concatenate(parts).tolist() if serving.get((i, node), node) == node]
            if rows:
                direct[node] = [pks[i] for i in rows]
        await self.nodes.touch_hints(rec.key, direct)

    async def _undo(self, rec: CollectionRecord, pks: Sequence[Key], rows: list[int],
                    acked: dict[str, list[np.ndarray]], missed: dict[str, set[int]],
                    hinted: Mapping[tuple[str, int], str]) -> list[int]:
        """Delete the copies of failed insert rows where they landed; the rows that could not be
        undone are returned. Replicas that may still apply the insert late are hinted (handoff
        finds no copy on a live replica and deletes it there too)."""
        want = set(rows)
        left: set[int] = set()
        for node, parts in acked.items():
            mine = sorted(want & set(np.concatenate(parts).tolist()))
            if not mine:
                continue
            try:
                await self.nodes.client(node).write("Delete", rec.key, milvus_pb2.DeleteRequest(
                    db_name=rec.db, collection_name=rec.name, expr=pk_expr(rec.pk_name, [pks[i] for i in mine], rec.pk_is_str)))
            except ProxyError as exc:
                log.warning("could not undo %d failed insert row(s) on %s: %s", len(mine), node, exc.message)
                left.update(mine)
        for replica, rows_ in missed.items():
            by_standin: dict[str, list[Key]] = {}
            for i in sorted(want & rows_):  # the stand-in named, if any, may get a late copy too
                by_standin.setdefault(hinted.get((replica, i), ""), []).append(pks[i])
            for standin, keys in by_standin.items():
                await self.nodes.add_hints(replica, rec.key, keys, standin)
        return sorted(left)
