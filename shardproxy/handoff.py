"""Hinted handoff: bring a replica that answers again up to date from the hints recorded while
it could not take writes, then remove the stand-ins' copies.

For each hinted key the newest acknowledged copy is on a live replica of the key, or else on the
stand-in named in the hint (a write acknowledged through a stand-in always went to every live
replica too, so a replica's copy wins over a stand-in's). The key is upserted to the returning
node with that copy, or deleted there when no source holds it (it was deleted meanwhile). Then
the stand-in's copy is deleted (unless the stand-in is itself a replica of the key), and only
then the hint is removed, compare-and-delete, so a write hinted again meanwhile is replayed at
the next round. A key whose sources cannot be read now keeps its hint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from shardproxy import fielddata, merge, metrics
from shardproxy.hints import UNDO, Hint, HintStore
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.ring import Ring
from shardproxy.nodequery import fetch_rows_by_partition, pk_expr
from shardproxy.placement import replica_lists

log = logging.getLogger(__name__)

BATCH = 1000


def plan_sources(
    hints: list[Hint], replica_sets: list[list[str]], target: str, live: Callable[[str], bool],
    answers: Callable[[str], bool] | None = None, hinted_on: dict[str, dict[Any, Hint]] | None = None,
) -> tuple[list[list[str]], list[int]]:
    """Per hint, the nodes to read the key from (the first that holds it wins), and the hints
    that cannot be replayed now. Pure.

    ``live``: active replicas; ``answers``: nodes that can be read (live, or marked down but
    answering probes while they catch up themselves); ``hinted_on``: node -> key -> that node's
    own pending hint of the key. A replica is current for a key unless it holds a hint of the key
    that no direct write superseded (``Hint.direct``); the stand-in named by such a hint holds
    the newest copy. Sources, in order: the current live replicas; the stand-in named in this
    hint and those named in the other replicas' (not superseded) hints; the current replicas that
    are down but answer; the live replicas that missed the key's last write. A hint is blocked
    while its stand-in does not answer, or while no source is known and some other replica does
    not answer (it may hold the only copy). With every other replica answering but behind on the
    key too, and no stand-in named, every replica missed the key's last write and no copy was
    placed anywhere: the key was deleted, and the (empty) sources say so."""
    answers = answers or live
    hinted_on = hinted_on or {}
    sources: list[list[str]] = []
    blocked: list[int] = []
    for i, (h, reps) in enumerate(zip(hints, replica_sets)):
        others = [n for n in reps if n != target]
        theirs = {n: hinted_on.get(n, {}).get(h.pk) for n in others}
        behind = {n for n, t in theirs.items() if t is not None and not t.direct}
        named = [h.standin] + [t.standin for n, t in theirs.items() if n in behind and t is not None]
        order = ([n for n in others if live(n) and n not in behind]
                 + [n for n in dict.fromkeys(named) if n and n != target and answers(n)]
                 + [n for n in others if not live(n) and answers(n) and n not in behind]
                 + [n for n in others if live(n) and n in behind])
        src = list(dict.fromkeys(order))
        standin_ok = not h.standin or h.standin == target or answers(h.standin)
        if not standin_ok or (not src and not all(answers(n) for n in others)):
            blocked.append(i)
        sources.append(src)
    return sources, blocked


def choose(sources: list[list[str]], found: dict[str, set[Any]], pks: list[Any]) -> dict[int, str]:
    """Hint index -> the node whose copy is replayed (first source holding the key). Pure."""
    out: dict[int, str] = {}
    for i, (pk, src) in enumerate(zip(pks, sources)):
        node = next((n for n in src if pk in found.get(n, ())), None)
        if node is not None:
            out[i] = node
    return out


async def _fetch(client: NodeClient, rec: CollectionRecord,
                 pks: list[Any]) -> list[tuple[str, list[schema_pb2.FieldData]]]:
    """The node's rows of ``pks`` grouped by partition (a copy handed back keeps its partition)."""
    return await fetch_rows_by_partition(client, rec, pks) if pks else []


async def replay_batch(
    hints_store: HintStore, target: NodeClient, rec: CollectionRecord, rings: list[Ring],
    clients: dict[str, NodeClient], is_live: Callable[[str], bool], answers: Callable[[str], bool] | None = None,
) -> int:
    """Replay up to :data:`BATCH` hints of ``target``; returns how many were settled (0: none left
    or none replayable now)."""
    hints = await hints_store.batch(target.id, rec.key, rec.pk_is_str, BATCH)
    if not hints:
        return 0
    now_ms = int(time.time() * 1000)
    hints = [h for h in hints if h.ready(now_ms)]  # a write still landing: judge the key later
    if not hints:
        return 0
    undo = [h for h in hints if h.standin == UNDO]
    if undo:  # inserts reported as failed that may have landed here late: delete them first
        await target.write("Delete", rec.key, milvus_pb2.DeleteRequest(
            db_name=rec.db, collection_name=rec.name, expr=pk_expr(rec.pk_name, [h.pk for h in undo], rec.pk_is_str)))
        await hints_store.remove(target.id, rec.key, undo)
        log.info("node %s: undid %d insert row(s) of %s reported as failed", target.id, len(undo), rec.key)
        hints = [h for h in hints if h.standin != UNDO]
        if not hints:
            return len(undo)
    pks = [h.pk for h in hints]
    per_ring = [replica_lists(r, pks, rec.replicas) for r in rings if r]
    replica_sets = [list(dict.fromkeys(n for lists in per_ring for n in lists[i])) for i in range(len(pks))]
    others = {n for reps in replica_sets for n in reps if n != target.id}
    suspect = {n for n in others if await hints_store.needs_repair(n)}  # its hints are incomplete

    def readable(n: str) -> bool:
        return is_live(n) or (n not in suspect and answers is not None and answers(n))

    hinted_on = {n: await hints_store.holding(n, rec.key, pks, rec.pk_is_str) for n in others if readable(n)}
    sources, blocked = plan_sources(hints, replica_sets, target.id, is_live, readable, hinted_on)
    stuck = set(blocked)
    ready = [i for i in range(len(hints)) if i not in stuck]
    if not ready:
        return 0
    per_node: dict[str, list[Any]] = {}
    for i in ready:
        for n in sources[i]:
            per_node.setdefault(n, []).append(pks[i])
    fetched: dict[str, list[tuple[str, list[schema_pb2.FieldData]]]] = {}
    found: dict[str, set[Any]] = {}
    for n, keys in per_node.items():
        fetched[n] = await _fetch(clients[n], rec, keys)
        found[n] = set()
        for _, fields in fetched[n]:
            found[n].update(fielddata.pk_column_values(fields, rec.pk_name))
    chosen = choose([sources[i] for i in ready], found, [pks[i] for i in ready])
    # a node that is not a replica of a key (a stand-in that missed a delete) only gets the delete
    chosen = {j: n for j, n in chosen.items() if target.id in replica_sets[ready[j]]}
    by_node: dict[str, set[Any]] = {}
    for j, node in chosen.items():
        by_node.setdefault(node, set()).add(pks[ready[j]])
    pieces: dict[str, list[list[schema_pb2.FieldData]]] = {}  # by partition: rows keep their partition
    for node, keys in by_node.items():
        for partition, fields in fetched[node]:
            rows = [k for k, v in enumerate(fielddata.pk_column_values(fields, rec.pk_name)) if v in keys]
            if rows:
                pieces.setdefault(partition, []).append(fielddata.take_all(fields, rows))
    upserted = 0
    for partition, parts in pieces.items():
        rows_fd = merge.merge_query_rows(parts, rec.pk_name, 0, None)
        n_rows = fielddata.num_rows(next(fd for fd in rows_fd if fd.field_name == rec.pk_name))
        if not n_rows:
            continue
        req = milvus_pb2.UpsertRequest(db_name=rec.db, collection_name=rec.name, partition_name=partition,
                                       num_rows=n_rows)
        req.fields_data.extend(rows_fd)
        await target.write("Upsert", rec.key, req)
        upserted += n_rows
    gone = [pks[ready[j]] for j in range(len(ready)) if j not in chosen]
    if gone:
        await target.write("Delete", rec.key, milvus_pb2.DeleteRequest(
            db_name=rec.db, collection_name=rec.name, expr=pk_expr(rec.pk_name, gone, rec.pk_is_str)))
    # the stand-ins hand their copies back: delete them there (a stand-in that is a replica keeps it)
    strays: dict[str, list[Any]] = {}
    for i in ready:
        s = hints[i].standin
        if s and s != target.id and s not in replica_sets[i]:
            strays.setdefault(s, []).append(pks[i])
    for s, keys in strays.items():
        await clients[s].write("Delete", rec.key, milvus_pb2.DeleteRequest(
            db_name=rec.db, collection_name=rec.name, expr=pk_expr(rec.pk_name, keys, rec.pk_is_str)))
    removed = await hints_store.remove(target.id, rec.key, [hints[i] for i in ready])
    metrics.HINTS_REPLAYED.labels(node=target.id).inc(len(ready))
    log.info("node %s: replayed %d hinted key(s) of %s (%d upserted, %d deleted, %d stand-in copies removed; %d re-hinted meanwhile)",
             target.id, len(ready), rec.key, upserted, len(gone), sum(len(v) for v in strays.values()),
             len(ready) - removed)
    return len(ready)
