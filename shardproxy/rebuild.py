"""Rebuild a returning node's key ranges from the other replicas (a node whose hints overflowed
or grew older than ``hint_max_age_s``: its hints alone cannot bring it up to date).

The returning node is the stale side. For every key of which it is a replica (R > 1):

* a key that another replica (a *peer*) holds and the node lacks, or holds with different
  content (a digest per row, :func:`shardproxy.verifyscan.row_digests`), is copied to it from
  the first peer that holds it (read at copy time, upserted into the same partition);
* a key the node holds and no peer holds is deleted on it: it was deleted while the node was
  down (the tombstone hint was refused past the bound), or it is a stray. This includes a
  ``write_ack=one`` row that only the node had when it went down: it cannot be told from a
  delete the node missed, and a returning node never resurrects deleted rows.

Keys the node holds that it is not a replica of (stand-in copies for another node's hints) are
left alone. Writes during the rebuild are hinted again (the caller clears the overflow before
the scan, :meth:`shardproxy.hints.HintStore.begin_rebuild`) and the normal replay that follows
the rebuild makes them win; a key whose only other copy is on a stand-in (``write_ack=one``
with the peer also failing) is deleted here and restored by that replay from the stand-in.

:func:`plan` is pure; :func:`rebuild_collection` does the I/O at ``rows_per_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field

from pymilvus.grpc_gen import milvus_pb2
from redis.asyncio import Redis

from shardproxy import metrics
from shardproxy.hints import HintStore
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.nodequery import copy_rows, pk_expr
from shardproxy.verify import Key
from shardproxy.verifyscan import Pacer, read_rows, row_digests

log = logging.getLogger(__name__)


@dataclass
class RebuildPlan:
    copies: dict[str, list[Key]] = field(default_factory=dict)  # source peer -> keys to copy to the node
    reconverge: int = 0  # of the copies, keys the node held with different content
    deletes: list[Key] = field(default_factory=list)  # keys no peer holds: deleted on the node

    @property
    def empty(self) -> bool:
        return not self.copies and not self.deletes


def plan(node: str, mine: Mapping[Key, str], peers: Mapping[str, Mapping[Key, str]],
         replicas_of: Callable[[Sequence[Key]], list[list[str]]], skip: Set[Key] = frozenset()) -> RebuildPlan:
    """What to copy to and delete on ``node`` given ``pk -> digest`` of the node (``mine``) and
    of each scanned peer. ``replicas_of(keys)`` gives each key's replicas. Only keys ``node`` is
    a replica of are touched, and none in ``skip`` (keys whose hints were replayed just before:
    the replay put the newest copy there, possibly one only a stand-in held); every other replica
    of such a key must be in ``peers`` (the caller scans them all). Pure."""
    keys = sorted(set(mine).union(*(set(m) for m in peers.values())))  # one pk type per collection
    out = RebuildPlan()
    for pk, reps in zip(keys, replicas_of(keys)):
        if node not in reps or pk in skip:
            continue
        holders = [p for p in reps if p != node and pk in peers.get(p, {})]
        if not holders:
            if pk in mine:
                out.deletes.append(pk)
            continue
        have = mine.get(pk)
        if have is not None and any(peers[p][pk] == have for p in holders):
            continue
        out.copies.setdefault(holders[0], []).append(pk)
        out.reconverge += have is not None
    return out


_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"


async def hold(r: Redis, key: str, token: str, ttl_ms: int) -> None:
    """Keep renewing the lock ``key`` while we hold it (``token``): a rebuild can outlast its TTL."""
    while True:
        await asyncio.sleep(ttl_ms / 3000)
        if not await r.eval(_RENEW, 1, key, token, str(ttl_ms)):
            log.warning("lost the lock %s", key)
            return


async def digests(client: NodeClient, rec: CollectionRecord, batch: int, pace: Pacer) -> dict[Key, str]:
    """``pk -> row digest`` of every row of ``rec`` on one node, in pk order, ``batch`` at a time."""
    out: dict[Key, str] = {}
    last: Key | None = None
    while True:
        entries = row_digests(await read_rows(client, rec, last, batch), rec.pk_name)
        out.update(entries)
        await pace(len(entries))
        if len(entries) < batch:
            return out
        last = entries[-1][0]


async def rebuild_collection(node: NodeClient, peers: Mapping[str, NodeClient], rec: CollectionRecord,
                             replicas_of: Callable[[Sequence[Key]], list[list[str]]], pace: Pacer,
                             skip: Set[Key] = frozenset(), batch: int = 1000) -> RebuildPlan:
    """Scan the node and its peers, then copy and delete on the node as :func:`plan` says."""
    mine = await digests(node, rec, batch, pace)
    theirs = {pid: await digests(c, rec, batch, pace) for pid, c in peers.items()}
    p = plan(node.id, mine, theirs, replicas_of, skip)
    for src, keys in p.copies.items():
        for i in range(0, len(keys), batch):
            chunk = keys[i : i + batch]
            # keys deleted since the scan are skipped: that delete was hinted, the replay settles it
            await pace(await copy_rows(peers[src], node, rec, chunk))
    for i in range(0, len(p.deletes), batch):
        chunk = p.deletes[i : i + batch]
        await node.write("Delete", rec.key, milvus_pb2.DeleteRequest(
            db_name=rec.db, collection_name=rec.name, expr=pk_expr(rec.pk_name, chunk, rec.pk_is_str)))
        await pace(len(chunk))
    copied = sum(len(v) for v in p.copies.values())
    metrics.REPAIR_ROWS.labels(action="copied").inc(copied - p.reconverge)
    metrics.REPAIR_ROWS.labels(action="reconverged").inc(p.reconverge)
    metrics.REPAIR_ROWS.labels(action="deleted").inc(len(p.deletes))
    log.info("node %s: rebuilt %s from %s: %d row(s) copied (%d differed), %d deleted", node.id, rec.key,
             ", ".join(sorted(peers)) or "-", copied, p.reconverge, len(p.deletes))
    return p


async def rebuild_node(node: NodeClient, peers: Mapping[str, NodeClient], records: Sequence[CollectionRecord],
                       hints: HintStore, why: str, replicas_of: Callable[[Sequence[Key], int], list[list[str]]],
                       replay: Callable[[], Awaitable[None]], rows_per_s: float) -> bool:
    """The whole rebuild of one node (the caller holds its catch-up lock, keeps it out of reads
    and checked that every peer answers and no move runs): hints are recorded again
    (:meth:`HintStore.begin_rebuild`), the pending ones replayed (``replay``; that frees the
    hint bound, and the rebuild skips their keys), then every R > 1 collection rebuilt at
    ``rows_per_s``. True once :meth:`HintStore.mark_repaired` held (False: the hints overflowed
    again meanwhile; rebuild once more)."""
    await hints.begin_rebuild(node.id, why)
    skip = {r.key: {h.pk for h in await hints.all(node.id, r.key, r.pk_is_str)} for r in records}
    await replay()
    pace = Pacer(rows_per_s)
    result = "error"
    try:
        for rec in records:
            if rec.replicas > 1:  # R = 1: the node holds the only copy, nothing to rebuild from
                await rebuild_collection(node, peers, rec, lambda keys, r=rec.replicas: replicas_of(keys, r), pace,
                                         skip[rec.key])
        ok = await hints.mark_repaired(node.id)
        result = "rebuilt" if ok else "overflowed"
        log.warning("node %s: key ranges rebuilt%s", node.id, "" if ok else "; its hints overflowed again meanwhile")
        return ok
    finally:
        metrics.REPAIR_PASSES.labels(result=result).inc()
        metrics.REPAIR_LAST_PASS.set(time.time())
