"""Repair: fix what a verify scan found, node by node.

* ``missing`` on owner N: read the row from the finding's source (a replica holding the chosen
  version) and upsert it on N;
* ``differs`` on N: the same (N converges to the chosen version, see
  :func:`shardproxy.verify.choose_version`);
* ``stray`` on S: once every reachable target owner of the key holds it (checked after the
  copies, by asking the owners), delete it on S; a stray no owner has is first copied (verify
  reports it ``missing`` on the owners too, with the stray as source).

Rows are read from the source at repair time (not from the scan), so a row a client deleted
or changed since the scan is copied as it is now, or not at all. :func:`plan` is pure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from pymilvus.grpc_gen import milvus_pb2

from shardproxy import fielddata, metrics
from shardproxy.metastore import CollectionRecord, MetaStore
from shardproxy.nodequery import copy_rows, fetch_rows, pk_expr
from shardproxy.placement import Placement
from shardproxy.verify import CollectionReport, Finding, Key, replica_sets
from shardproxy.verifyscan import ScanOptions, Scanner

log = logging.getLogger(__name__)


@dataclass
class RepairPlan:
    copies: dict[tuple[str, str], list[Key]] = field(default_factory=dict)  # (source, target) -> pks
    strays: dict[str, list[Key]] = field(default_factory=dict)  # node -> pks to delete once owned
    reconverge: int = 0  # of the copies, how many fix a differing replica
    skipped: list[Finding] = field(default_factory=list)  # nothing to copy from (e.g. duplicates)

    @property
    def empty(self) -> bool:
        return not self.copies and not self.strays

    def to_dict(self) -> dict[str, object]:
        return {"copies": sum(len(v) for v in self.copies.values()), "reconverge": self.reconverge,
                "strays": sum(len(v) for v in self.strays.values()), "skipped": len(self.skipped)}


def plan(findings: Iterable[Finding], node: str = "") -> RepairPlan:
    """What to do for a report's findings (only those touching ``node`` when given)."""
    out = RepairPlan()
    seen: set[tuple[str, Key]] = set()
    for f in findings:
        if node and node not in (f.node, f.source):
            continue
        if f.kind in ("missing", "differs") and f.source and f.source != f.node:
            if (f.node, f.pk) in seen:
                continue
            seen.add((f.node, f.pk))
            out.copies.setdefault((f.source, f.node), []).append(f.pk)
            out.reconverge += f.kind == "differs"
        elif f.kind == "stray":
            out.strays.setdefault(f.node, []).append(f.pk)
        else:
            out.skipped.append(f)
    return out


@dataclass
class RepairResult:
    collection: str
    plan: dict[str, object]
    copied: int = 0
    reconverged: int = 0
    strays_deleted: int = 0
    strays_kept: int = 0  # an owner did not hold the key yet

    def to_dict(self) -> dict[str, object]:
        return {"collection": self.collection, "plan": self.plan, "copied": self.copied,
                "reconverged": self.reconverged, "strays_deleted": self.strays_deleted,
                "strays_kept": self.strays_kept}


class Repairer:
    def __init__(self, store: MetaStore, options: ScanOptions | None = None) -> None:
        self.scanner = Scanner(store, options)
        self.store = store
        self.batch = (options or ScanOptions()).batch

    async def close(self) -> None:
        await self.scanner.close()

    async def repair(self, rec: CollectionRecord, report: CollectionReport, node: str = "",
                     dry_run: bool = False) -> RepairResult:
        p = plan(report.findings, node)
        res = RepairResult(rec.name, p.to_dict())
        if dry_run or p.empty:
            return res
        placement, nodes = await self.scanner.placement(rec)
        by_id = {n.id: n for n in nodes}
        differs = {(f.node, f.pk) for f in report.findings if f.kind == "differs"}
        for (src, dst), pks in p.copies.items():
            if src not in by_id or dst not in by_id:
                continue
            for i in range(0, len(pks), self.batch):
                chunk = pks[i : i + self.batch]
                n = await self._copy(rec, src, dst, chunk, by_id)
                fixed = sum((dst, pk) in differs for pk in chunk)
                res.copied += n - min(n, fixed)
                res.reconverged += min(n, fixed)
        metrics.REPAIR_ROWS.labels(action="copied").inc(res.copied)
        metrics.REPAIR_ROWS.labels(action="reconverged").inc(res.reconverged)
        for stray_node, pks in p.strays.items():
            if stray_node not in by_id:
                continue
            for i in range(0, len(pks), self.batch):
                chunk = pks[i : i + self.batch]
                owned = await self._owned(rec, placement, chunk, by_id)
                if owned:
                    await self.scanner.client(by_id[stray_node]).write(
                        "Delete", rec.name, milvus_pb2.DeleteRequest(
                            collection_name=rec.name, expr=pk_expr(rec.pk_name, owned, rec.pk_is_str)))
                res.strays_deleted += len(owned)
                res.strays_kept += len(chunk) - len(owned)
        metrics.REPAIR_ROWS.labels(action="stray_deleted").inc(res.strays_deleted)
        log.info("repair %s: %s", rec.name, res.to_dict())
        return res

    async def _copy(self, rec: CollectionRecord, src: str, dst: str, pks: list[Key], by_id: dict) -> int:  # type: ignore[type-arg]
        return await copy_rows(self.scanner.client(by_id[src]), self.scanner.client(by_id[dst]), rec, pks)

    async def _owned(self, rec: CollectionRecord, placement: Placement, pks: list[Key], by_id: dict) -> list[Key]:  # type: ignore[type-arg]
        """Keys of ``pks`` that every target owner (that answers) holds now."""
        sets = replica_sets(placement, pks)
        holding: dict[str, set[Key]] = {}
        for owner in {n for tgt, _ in sets for n in tgt}:
            if owner not in by_id:
                continue
            fields = await fetch_rows(self.scanner.client(by_id[owner]), rec, pks)
            holding[owner] = set(fielddata.pk_column_values(fields, rec.pk_name))
        return [pk for pk, (tgt, _) in zip(pks, sets) if tgt and all(pk in holding.get(n, set()) for n in tgt)]


async def verify_and_repair(redis_url: str, prefix: str, collections: list[str] | None, node: str, dry_run: bool,
                            options: ScanOptions) -> list[tuple[CollectionReport, RepairResult]]:
    """One repair pass: verify each collection, fix what it found."""
    store = MetaStore(redis_url, prefix)
    rep = Repairer(store, options)
    try:
        out = []
        for report in await rep.scanner.run(collections, only_node=node):
            rec = await store.collection(report.collection)
            assert rec is not None
            out.append((report, await rep.repair(rec, report, node=node, dry_run=dry_run)))
        return out
    finally:
        await rep.close()
        await store.close()
