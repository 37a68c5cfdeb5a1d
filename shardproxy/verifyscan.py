"""The online verify scan: reads every node's rows of a collection in primary-key order
(``pk > last``, ``iterator=True``, full rows, ``batch`` at a time), digests each row and feeds
windows of keys that every node has passed to :func:`shardproxy.verify.compare_window`.

Memory stays bounded by one batch per node; the pace is capped at ``max_rows_per_s``; a
``progress(rows_read, rows_estimated)`` callback drives the CLI's progress bar. It reads the
node states from Redis once per collection, so it can run during a move (a key may then sit on
its current or target replicas)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from shardproxy import fielddata, metrics
from shardproxy.errors import ProxyError
from shardproxy.metastore import CollectionRecord, MetaStore, NodeRecord, NodeState
from shardproxy.nodepool import NodeClient
from shardproxy.nodequery import after_expr, kvs
from shardproxy.placement import DATA_STATES, Placement
from shardproxy.hints import HintStore
from shardproxy.verify import KINDS, CollectionReport, Entry, Key, compare_window, horizon, split_window

Progress = Callable[[int, int], None]


@dataclass
class ScanOptions:
    batch: int = 1000
    max_rows_per_s: float = 0.0  # 0 = unthrottled
    node_timeout_s: float = 60.0
    vnodes: int = 160


def row_digests(fields: list[schema_pb2.FieldData], pk_name: str) -> list[Entry]:
    """``(pk, digest)`` per returned row, sorted by pk; the digest covers every field's value
    (deterministic protobuf bytes of that row's slice, fields in name order)."""
    cols = sorted(fields, key=lambda fd: (fd.field_name, fd.is_dynamic))
    pk_col = fielddata.pk_column(cols, pk_name)
    if pk_col is None:
        return []
    pks = fielddata.column_values(pk_col)
    out: list[Entry] = []
    for i, pk in enumerate(pks):
        h = hashlib.blake2b(digest_size=12)
        for fd in cols:
            h.update(fd.field_name.encode())
            h.update(fielddata.take(fd, [i]).SerializeToString(deterministic=True))
        out.append((pk, h.hexdigest()))
    out.sort(key=lambda e: e[0])
    return out


async def read_rows(client: NodeClient, rec: CollectionRecord, last: Key | None, batch: int,
                    expr: str = "") -> list[schema_pb2.FieldData]:
    """The next ``batch`` full rows after ``last`` in pk order (ANDed with ``expr``)."""
    e = after_expr(rec.pk_name, last, rec.pk_is_str)
    if expr.strip():
        e = f"({expr}) and {e}"
    req = milvus_pb2.QueryRequest(
        db_name=rec.db, collection_name=rec.name, expr=e, output_fields=["*"],
        query_params=kvs(limit=str(batch), iterator="True", reduce_stop_for_best="True"),
        consistency_level=common_pb2.ConsistencyLevel.Strong,
    )
    resp = await client.call("Query", req)
    return list(resp.fields_data)


class Pacer:
    """Sleep so that rows handled stay at or below ``rows_per_s`` (0 = unthrottled); shared by the
    verify scan and the node rebuild (:mod:`shardproxy.rebuild`)."""

    def __init__(self, rows_per_s: float) -> None:
        self.rate = rows_per_s
        self.done = 0
        self.t0 = time.monotonic()

    async def __call__(self, rows: int) -> None:
        self.done += rows
        if self.rate > 0:
            pause = self.done / self.rate - (time.monotonic() - self.t0)
            if pause > 0:
                await asyncio.sleep(pause)


async def node_rows(client: NodeClient, name: str) -> int:
    try:
        resp = await client.call("GetCollectionStatistics",
                                 milvus_pb2.GetCollectionStatisticsRequest(collection_name=name), timeout=10)
    except ProxyError:
        return 0
    return int({kv.key: kv.value for kv in resp.stats}.get("row_count", 0))


class Scanner:
    """Verify scans over the nodes registered in one Redis."""

    def __init__(self, store: MetaStore, options: ScanOptions | None = None) -> None:
        self.store = store
        self.opt = options or ScanOptions()
        self.clients: dict[str, NodeClient] = {}

    def client(self, node: NodeRecord) -> NodeClient:
        c = self.clients.get(node.id)
        if c is None or c.address != node.address:
            c = self.clients[node.id] = NodeClient(node, self.opt.node_timeout_s, 1)
        return c

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)
        self.clients.clear()

    async def placement(self, rec: CollectionRecord) -> tuple[Placement, list[NodeRecord]]:
        nodes = await self.store.nodes()
        p = Placement.from_nodes(nodes, self.opt.vnodes, replicas=rec.replicas)
        # Nodes that may hold data, plus drained ones (strays left behind would be there).
        scanned = [n for n in nodes if n.state in DATA_STATES or n.state == NodeState.DRAINED]
        return p, scanned

    async def collection(self, rec: CollectionRecord, progress: Progress | None = None,
                         only_node: str = "") -> CollectionReport:
        placement, nodes = await self.placement(rec)
        report = CollectionReport(rec.name, moving=placement.moving)
        hints = await self.pending_hints(rec, [n.id for n in nodes])
        clients = {n.id: self.client(n) for n in nodes}
        estimate = sum(await asyncio.gather(*(node_rows(c, rec.name) for c in clients.values())))
        bufs: dict[str, list[Entry]] = {n: [] for n in clients}
        lasts: dict[str, Key | None] = {n: None for n in clients}
        done: set[str] = set()
        optional = {n.id for n in nodes if n.state == NodeState.DRAINED}
        read = 0
        pace = Pacer(self.opt.max_rows_per_s)
        while True:
            need = [n for n in clients if n not in done and not bufs[n]]
            got = await asyncio.gather(*(self._fetch(clients[n], rec, lasts[n]) for n in need),
                                       return_exceptions=True)
            for n, res in zip(need, got):
                if isinstance(res, BaseException):
                    if not isinstance(res, ProxyError):
                        raise res
                    done.add(n)
                    if n not in optional:  # a drained node without the collection holds nothing
                        report.unreachable.append(n)
                    continue
                bufs[n].extend(res)
                read += len(res)
                if res:
                    lasts[n] = res[-1][0]
                if len(res) < self.opt.batch:
                    done.add(n)
            upto = horizon(lasts, done)
            windows: dict[str, list[Entry]] = {}
            for n in clients:
                windows[n], bufs[n] = split_window(bufs[n], upto)
            compare_window(report, windows, placement, report.unreachable, hints)
            if progress is not None:
                progress(read, max(estimate, read))
            metrics.VERIFY_ROWS_SCANNED.inc(sum(len(w) for w in windows.values()))
            await pace(read - pace.done)
            if len(done) == len(clients) and not any(bufs.values()):
                break
        if only_node:
            report.findings = [f for f in report.findings if only_node in (f.node, f.source)]
        return report

    async def pending_hints(self, rec: CollectionRecord, nodes: list[str]) -> dict[Key, dict[str, str]]:
        """pk -> {replica: stand-in} of every pending hint (read when the scan starts: a copy a
        write places on a stand-in later in the scan may still show as a stray)."""
        store = HintStore(self.store.r, self.store.prefix, 0, 0)
        out: dict[Key, dict[str, str]] = {}
        for n in nodes:
            for h in await store.all(n, rec.key, rec.pk_is_str):
                out.setdefault(h.pk, {})[n] = h.standin
        return out

    async def _fetch(self, client: NodeClient, rec: CollectionRecord, last: Key | None) -> list[Entry]:
        fields = await read_rows(client, rec, last, self.opt.batch)
        return row_digests(fields, rec.pk_name)

    async def run(self, collections: list[str] | None = None, progress: Callable[[str, int, int], None] | None = None,
                  only_node: str = "") -> list[CollectionReport]:
        records = await self.store.collections()
        if collections:
            known = {r.name for r in records}
            for c in collections:
                if c not in known:
                    raise KeyError(f"collection {c!r} not found (known: {', '.join(sorted(known)) or 'none'})")
            records = [r for r in records if r.name in collections]
        out = []
        for rec in records:
            cb = (lambda a, b, name=rec.name: progress(name, a, b)) if progress else None
            rep = await self.collection(rec, cb, only_node=only_node)
            out.append(rep)
        for kind in KINDS:
            metrics.VERIFY_FINDINGS.labels(kind=kind).set(sum(r.counts()[kind] for r in out))
        metrics.VERIFY_UNREACHABLE.set(len({n for r in out for n in r.unreachable}))
        return out
