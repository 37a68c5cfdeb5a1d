"""The import queue on Redis Streams: jobs, a consumer group, reclaim, dead letters, progress."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from embed.catalog import CatalogItem


@dataclass(frozen=True)
class Job:
    msg_id: str
    import_id: str
    seq: int
    collection: str
    model_id: str
    product_id: str
    image_path: str
    attributes: dict[str, str | int | float]
    deliveries: int = 1

    @classmethod
    def from_fields(cls, msg_id: str, f: dict[str, str], deliveries: int = 1) -> Job:
        return cls(msg_id, f["import_id"], int(f["seq"]), f["collection"], f["model_id"], f["product_id"],
                   f["image_path"], json.loads(f.get("attributes") or "{}"), deliveries)


class JobQueue:
    """Jobs stream + consumer group + dead-letter stream + per-import progress sets."""

    def __init__(self, url: str, stream: str = "embed:jobs", group: str = "embed-workers") -> None:
        # redis-py 8 defaults to a 5 s socket timeout: on a starved machine a 1 s blocking XREADGROUP can
        # miss it. A generous timeout here; the worker also survives a timeout and reads again.
        self.r = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=10, socket_timeout=60,
                                      retry_on_timeout=True)
        self.stream, self.group = stream, group
        self.dead = f"{stream}:dead"

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    # --- producer -------------------------------------------------------------------------
    def enqueue(self, collection: str, model_id: str, items: Iterable[CatalogItem], import_id: str | None = None) -> tuple[str, int]:
        """Add one job per catalog row; returns (import id, number of jobs)."""
        self.ensure_group()
        import_id = import_id or uuid.uuid4().hex[:12]
        n = 0
        pipe = self.r.pipeline(transaction=False)
        for n, it in enumerate(items, start=1):
            pipe.xadd(self.stream, {
                "import_id": import_id, "seq": str(n), "collection": collection, "model_id": model_id,
                "product_id": it.product_id, "image_path": str(it.image_path),
                "attributes": json.dumps(it.attributes),
            })
            if n % 500 == 0:
                pipe.execute()
        pipe.hset(self._key(import_id), mapping={"total": n, "collection": collection, "started": time.time()})
        pipe.sadd("embed:imports", import_id)
        pipe.execute()
        return import_id, n

    # --- consumer -------------------------------------------------------------------------
    def read(self, consumer: str, count: int, block_ms: int, claim_idle_ms: int) -> list[Job]:
        """Reclaimed jobs of crashed consumers first (XAUTOCLAIM), then new ones (XREADGROUP)."""
        jobs: list[Job] = []
        _, claimed, *_ = self.r.xautoclaim(self.stream, self.group, consumer, min_idle_time=claim_idle_ms,
                                          start_id="0-0", count=count)
        if claimed:
            ids = [mid for mid, f in claimed if f]
            counts = self._deliveries(ids)
            jobs += [Job.from_fields(mid, f, counts.get(mid, 1)) for mid, f in claimed if f]
        if len(jobs) < count:
            res = self.r.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count - len(jobs),
                                    block=None if jobs else block_ms)
            for _, msgs in res or []:
                jobs += [Job.from_fields(mid, f) for mid, f in msgs if f]
        return jobs

    def _deliveries(self, ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for mid in ids:
            p = self.r.xpending_range(self.stream, self.group, min=mid, max=mid, count=1)
            if p:
                out[mid] = int(p[0]["times_delivered"])
        return out

    def ack(self, jobs: list[Job]) -> None:
        """Acknowledge after the vector store has accepted the rows; record progress."""
        if not jobs:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.xack(self.stream, self.group, *[j.msg_id for j in jobs])
        now = time.time()
        for j in jobs:
            pipe.sadd(self._key(j.import_id) + ":done", j.seq)
            pipe.hset(self._key(j.import_id), "last", now)
        pipe.incrby("embed:stats:processed", len(jobs))
        pipe.execute()

    def dead_letter(self, job: Job, reason: str, consumer: str) -> None:
        """Move a job to the dead-letter stream with its reason, and acknowledge it."""
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.dead, {"import_id": job.import_id, "seq": str(job.seq), "collection": job.collection,
                              "product_id": job.product_id, "image_path": job.image_path, "reason": reason,
                              "consumer": consumer, "msg_id": job.msg_id})
        pipe.xack(self.stream, self.group, job.msg_id)
        pipe.sadd(self._key(job.import_id) + ":dead", job.seq)
        pipe.execute()

    # --- progress -------------------------------------------------------------------------
    @staticmethod
    def _key(import_id: str) -> str:
        return f"embed:import:{import_id}"

    def progress(self, import_id: str) -> dict[str, float]:
        h = self.r.hgetall(self._key(import_id))
        done = self.r.scard(self._key(import_id) + ":done")
        dead = self.r.scard(self._key(import_id) + ":dead")
        started, last = float(h.get("started", 0)), float(h.get("last", 0))
        rate = done / (last - started) if last > started else 0.0
        return {"total": int(h.get("total", 0)), "done": done, "dead": dead, "started": started,
                "images_per_s": rate}

    def dead_letters(self, import_id: str | None = None, limit: int = 1000) -> list[dict[str, str]]:
        rows = [f for _, f in self.r.xrange(self.dead, count=limit)]
        return [f for f in rows if import_id is None or f.get("import_id") == import_id]

    def stats(self) -> dict[str, object]:
        """Queue length, pending, consumers, lag, dead letters, imports."""
        out: dict[str, object] = {"stream": self.stream, "length": 0, "pending": 0, "lag": 0, "consumers": 0,
                                  "dead_letters": self.r.xlen(self.dead) if self.r.exists(self.dead) else 0,
                                  "processed_total": int(self.r.get("embed:stats:processed") or 0)}
        if self.r.exists(self.stream):
            out["length"] = self.r.xlen(self.stream)
            for g in self.r.xinfo_groups(self.stream):
                if g["name"] == self.group:
                    out["pending"], out["consumers"] = g["pending"], g["consumers"]
                    out["lag"] = g.get("lag") or 0
        imports = []
        for iid in sorted(self.r.smembers("embed:imports")):
            p = self.progress(iid)
            h = self.r.hgetall(self._key(iid))
            imports.append({"import_id": iid, "collection": h.get("collection", ""), **p})
        out["imports"] = sorted(imports, key=lambda d: d["started"])[-10:]
        return out
