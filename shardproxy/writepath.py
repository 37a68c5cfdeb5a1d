"""Replicated writes with a sloppy quorum (R > 1): send every row to its live replicas, and to a
stand-in for each replica that is down, fails, or has not answered within ``write_hedge_s``;
record a durable hint before a stand-in gets a copy; acknowledge a row once ``write_ack`` copies
are durable (stand-ins counted). The placement is :mod:`shardproxy.sloppy` (pure); this module
is the I/O around it.

A row that cannot get enough copies fails and ``err_index`` names it. For an insert, copies that
did land for a failed row are deleted again (and the replicas that may still apply the write
late are hinted, so handoff deletes it there too): a write reported as failed leaves no row a
later read returns. An upsert cannot be undone; the reply names the rows that landed on fewer
copies, and retrying the upsert is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from shardproxy import fielddata, metrics
from shardproxy.errors import ProxyError, Unavailable
from shardproxy.sloppy import acks_needed, outcome, plan_write, tally

log = logging.getLogger(__name__)

POLL_S = 0.1


@dataclass
class WriteOutcome:
    ok_rows: list[int]
    failed_rows: list[int]
    landed_rows: list[int]  # failed rows a copy of which could not be undone (upserts)
    needed: int
    reasons: list[str] = field(default_factory=list)
    first_error: BaseException | None = None


async def replicated_write(
    cluster: Any, rec: Any, method: str, build: Callable[[np.ndarray], Any], pks: Sequence[int | str],
) -> WriteOutcome:
    """Write ``len(pks)`` rows; ``build(rows)`` makes the node request for some of them."""
    from shardproxy.migrator import pk_expr

    ring = cluster.ring
    num_rows = len(pks)
    needed = acks_needed(rec.write_ack, rec.replicas, len(ring))
    clients = cluster.pool.clients
    unavailable = {n for n in ring.node_ids if not cluster.is_live(n)}
    taken: dict[int, set[str]] = {}  # row -> nodes sent it in this write
    served: dict[int, set[str]] = {}  # row -> replicas whose copy is placed (acked or pending)
    serving: dict[tuple[int, str], str] = {}  # (row, node) -> the replica that node's copy stands for
    acked: list[np.ndarray] = []
    acked_by: dict[str, list[np.ndarray]] = {}
    reasons: list[str] = []
    first_error: BaseException | None = None
    tasks: dict[asyncio.Task[Any], tuple[str, np.ndarray]] = {}
    started: dict[asyncio.Task[Any], float] = {}
    slow_handled: set[asyncio.Task[Any]] = set()
    missed: dict[str, set[int]] = {}  # replica -> rows it may lack (hinted)

    async def place(rows: Sequence[int] | None) -> None:
        plan = plan_write(ring, pks, rec.replicas, unavailable, rows=rows, taken=taken, served=served)
        sends = {n: list(r) for n, r in plan.sends.items()}
        for node, rows_ in sends.items():
            for i in rows_:
                serving[(i, node)] = node
        for (replica, standin), rows_ in plan.hints.items():
            for i in rows_:
                serving[(i, standin)] = replica
            ok = await cluster.add_hints(replica, rec.name, [pks[i] for i in rows_], standin)
            missed.setdefault(replica, set()).update(rows_)
            if ok:
                metrics.STANDIN_ROWS.labels(node=replica).inc(len(rows_))
            else:  # past the hint bounds: no stand-in copy without its hint
                drop = set(rows_)
                sends[standin] = [i for i in sends[standin] if i not in drop]
        for replica, rows_ in plan.unplaced.items():
            await cluster.add_hints(replica, rec.name, [pks[i] for i in rows_], "")
            missed.setdefault(replica, set()).update(rows_)
        for node, rows_ in sends.items():
            if not rows_:
                continue
            arr = np.asarray(rows_, dtype=np.int64)
            for i in rows_:
                taken.setdefault(i, set()).add(node)
                served.setdefault(i, set()).add(serving[(i, node)])
            task = asyncio.ensure_future(clients[node].write(method, rec.name, build(arr)))
            tasks[task] = (node, arr)
            started[task] = time.monotonic()

    def settled() -> bool:
        counts = tally(num_rows, acked)
        pending = tally(num_rows, [rows for rows in (r for _, r in tasks.values())])
        return bool(np.all((counts >= needed) | (pending == 0)))

    async def replace(node: str, rows: np.ndarray) -> None:
        """``node`` will not (or not soon) acknowledge ``rows``: find other copies for them."""
        unavailable.add(node)
        for i in rows.tolist():
            served.get(i, set()).discard(serving.get((i, node), node))
        await place([int(i) for i in rows])

    await place(None)
    try:
        while tasks and not settled():
            now = time.monotonic()
            waits = [started[t] + cluster.settings.write_hedge_s - now for t in tasks if t not in slow_handled]
            done, _ = await asyncio.wait(list(tasks), timeout=max(0.0, min([POLL_S, *waits])),
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                node, rows = tasks.pop(task)
                exc = task.exception()
                if exc is None:
                    acked.append(rows)
                    acked_by.setdefault(node, []).append(rows)
                    metrics.ROWS_ROUTED.labels(node=node).inc(len(rows))
                    continue
                msg = exc.message if isinstance(exc, ProxyError) else repr(exc)
                reasons.append(f"node {node} refused {len(rows)} row(s): {msg}")
                first_error = first_error or exc
                if isinstance(exc, Unavailable):
                    cluster.mark_failed(node)
                    await replace(node, rows)
            now = time.monotonic()
            for task, (node, rows) in list(tasks.items()):
                if task in slow_handled:
                    continue
                if not cluster.is_live(node) or now - started[task] >= cluster.settings.write_hedge_s:
                    slow_handled.add(task)
                    reasons.append(f"node {node} did not answer within {cluster.settings.write_hedge_s:g} s")
                    await replace(node, rows)
    finally:
        for task, (node, rows) in tasks.items():
            task.cancel()  # the write may still land there: the node is hinted (see replace)
    counts = tally(num_rows, acked)
    ok, failed, landed = outcome(counts, needed)
    if landed and method == "Insert":
        landed = await _undo(cluster, rec, pks, landed, acked_by, missed, pk_expr)
    return WriteOutcome(ok, failed, landed, needed, reasons, first_error)


async def _undo(cluster: Any, rec: Any, pks: Sequence[int | str], rows: list[int],
                acked_by: dict[str, list[np.ndarray]], missed: dict[str, set[int]], pk_expr: Any) -> list[int]:
    """Delete the copies of failed insert rows where they landed; returns the rows that could
    not be undone. Replicas that may still apply the insert late are hinted (handoff then finds
    no copy on a live replica and deletes it there)."""
    want = set(rows)
    left: set[int] = set()
    for node, parts in acked_by.items():
        mine = sorted(want & set(np.concatenate(parts).tolist()))
        if not mine:
            continue
        try:
            await cluster.pool.clients[node].write("Delete", rec.name, milvus_pb2.DeleteRequest(
                collection_name=rec.name, expr=pk_expr(rec.pk_name, [pks[i] for i in mine], rec.pk_is_str)))
        except ProxyError as exc:
            log.warning("could not undo %d failed insert row(s) on %s: %s", len(mine), node, exc.message)
            left.update(mine)
    for replica, rows_ in missed.items():
        late = sorted(want & rows_)
        if late:
            await cluster.add_hints(replica, rec.name, [pks[i] for i in late], "")
    return sorted(left)


def request_builder(request: Any, fields: Sequence[schema_pb2.FieldData], method: str) -> Callable[[np.ndarray], Any]:
    def build(rows: np.ndarray) -> Any:
        sub = type(request)()
        sub.collection_name = request.collection_name
        sub.partition_name = request.partition_name
        sub.num_rows = len(rows)
        sub.fields_data.extend(fielddata.take_all(fields, rows))
        if method == "Upsert":
            sub.partial_update = request.partial_update
        return sub

    return build
