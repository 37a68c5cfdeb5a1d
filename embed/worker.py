"""Import worker: read jobs (consumer group), decode, detect, embed in batches, upsert, then ack.

Jobs of a crashed worker are reclaimed with XAUTOCLAIM after ``claim_idle_ms``; an unreadable image
goes to the dead-letter stream with its reason; a job that keeps failing for other reasons (e.g. the
vector store refusing it) is dead-lettered after ``max_deliveries`` attempts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
from PIL import Image

from embed.config import EmbedSettings
from embed.detector import NoDetector, detect_objects
from embed import metrics, prototypes
from embed.imageio import InvalidImage, decode_image
from embed.models import ModelPool
from embed.queue import Job, JobQueue
from embed.store import connect, image_key, upsert

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    images: int = 0
    vectors: int = 0
    dead: int = 0
    batches: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def _load(job: Job, settings: EmbedSettings) -> tuple[Image.Image, str]:
    p = Path(job.image_path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InvalidImage("missing", f"cannot read {p}: {e.strerror or e}") from e
    img = decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    return img, hashlib.sha256(data).hexdigest()


class Worker:
    def __init__(self, settings: EmbedSettings, milvus_uri: str, *, consumer: str | None = None,
                 claim_idle_ms: int = 30_000, max_deliveries: int = 5, catalog_objects: int | None = None) -> None:
        self.settings = settings
        self.queue = JobQueue(settings.redis_url, settings.stream, settings.group)
        self.client = connect(milvus_uri, settings.access())
        self.pool = ModelPool(settings)
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms, self.max_deliveries = claim_idle_ms, max_deliveries
        self.catalog_objects = catalog_objects or settings.catalog_objects
        self.stats = WorkerStats()
        self._stop = False
        self._stopped = threading.Event()

    def stop(self, *_: object) -> None:
        self._stop = True
        self._stopped.set()

    def _refresh_queue_gauges(self) -> None:
        """Queue gauges from Redis every ``queue_gauges_interval_s``, in a thread of their own: a long
        batch (minutes of embedding on a loaded machine) must not freeze the oldest-pending age."""
        while True:
            try:
                metrics.update_queue_gauges(self.queue.r, self.queue.stream, self.queue.group)
            except Exception as exc:  # noqa: BLE001 - metrics never stop the worker
                log.debug("queue gauges: %s", exc)
            if self._stopped.wait(max(0.1, self.settings.queue_gauges_interval_s)):
                return

    def process(self, jobs: list[Job]) -> None:
        """One batch: decode all, detect, embed together, upsert per collection, ack."""
        self.index(self.load(jobs))

    def load(self, jobs: list[Job]) -> list[tuple[Job, Image.Image, str]]:
        """Read and decode a batch; unreadable images go to the dead-letter stream (and are acked)."""
        ok: list[tuple[Job, Image.Image, str]] = []
        if not jobs:
            return ok
        redelivered = sum(1 for j in jobs if j.deliveries > 1)
        if redelivered:
            metrics.REDELIVERIES.inc(redelivered)
        with metrics.stage_timer("decode", len(jobs)) as timer:
            for job in jobs:
                try:
                    img, sha = _load(job, self.settings)
                    ok.append((job, img, sha))
                except InvalidImage as e:
                    log.warning("dead-letter %s (%s): %s", job.image_path, e.reason, e)
                    self.queue.dead_letter(job, f"{e.reason}: {e}", self.consumer)
                    self.stats.dead += 1
                    timer.failed()
                    metrics.dead_letter("decode")
        return ok

    def index(self, ok: list[tuple[Job, Image.Image, str]]) -> None:
        """Detect, embed together, upsert per collection, then ack (only after the store accepted)."""
        t0 = time.perf_counter()
        by_collection: dict[tuple[str, str], list[tuple[Job, Image.Image, str]]] = {}
        for item in ok:
            by_collection.setdefault((item[0].collection, item[0].model_id), []).append(item)
        for (collection, model_id), items in by_collection.items():
            jobs_here = [j for j, _, _ in items]
            stage = "embed"
            try:
                embedder = self.pool.for_model(model_id, collection)
                crops, meta = [], []
                if self.catalog_objects > 1:
                    stage = "detect"
                    with metrics.stage_timer("detect", len(items)):
                        for job, img, sha in items:
                            objs = detect_objects(self.pool.detector(embedder), img, self.catalog_objects, whole="first")
                            for k, o in enumerate(objs):
                                crops.append(o.crop(img))
                                meta.append((job, sha, k))
                else:
                    for job, img, sha in items:
                        for k, o in enumerate(detect_objects(_WHOLE, img, 1, whole="first")):
                            crops.append(o.crop(img))
                            meta.append((job, sha, k))
                stage = "embed"
                with metrics.stage_timer("embed", len(crops)):
                    vectors = self._vectors(embedder, crops, meta)
                rows = [
                    {"image_id": image_key(job.product_id, sha, k), "product_id": job.product_id,
                     "image_path": job.image_path[-2048:], "object_index": k, "vector": v.tolist(), **job.attributes}
                    for (job, sha, k), v in zip(meta, vectors)
                ]
                stage = "write"
                with metrics.stage_timer("write", len(rows)):
                    upsert(self.client, collection, rows)
            except Exception as e:  # not acked: retried, and dead-lettered after max_deliveries
                msg = f"{type(e).__name__}: {e}"
                log.error("batch for %s failed (%d images, will retry): %s", collection, len(items), msg)
                self.stats.errors.append(msg)
                for job in jobs_here:
                    if job.deliveries >= self.max_deliveries:
                        self.queue.dead_letter(job, f"failed {job.deliveries} times: {msg}", self.consumer)
                        self.stats.dead += 1
                        metrics.dead_letter(stage)
                continue
            self.queue.ack(jobs_here)
            self.stats.images += len(items)
            self.stats.vectors += len(rows)
        self.stats.batches += 1
        self.stats.seconds += time.perf_counter() - t0

    @staticmethod
    def _vectors(embedder, crops: list[Image.Image], meta: list[tuple[Job, str, int]]) -> np.ndarray:
        """The whole catalog image (object 0) under the model's catalog recipe (prototypes when it
        has catalog views, seeded by the image's hash); detected sub-objects as plain vectors."""
        if embedder.spec.catalog_views <= 0:
            return embedder.embed(crops)
        whole = [i for i, (_, _, k) in enumerate(meta) if k == 0]
        parts = [i for i, (_, _, k) in enumerate(meta) if k != 0]
        out = np.zeros((len(crops), embedder.dim), np.float32)
        out[whole] = prototypes.catalog_vectors(embedder, [crops[i] for i in whole],
                                                [prototypes.view_seed(meta[i][1]) for i in whole])
        if parts:
            out[parts] = embedder.embed([crops[i] for i in parts])
        return out

    def run(self, *, max_idle_s: float | None = None, block_ms: int = 1000) -> WorkerStats:
        """Process jobs until stopped (SIGTERM/SIGINT), or until idle for ``max_idle_s``."""
        self.queue.ensure_group()
        try:
            signal.signal(signal.SIGTERM, self.stop)
        except ValueError:  # not the main thread
            pass
        metrics.serve(self.settings.metrics_port)
        log.info("worker %s reading %s (group %s)%s", self.consumer, self.queue.stream, self.queue.group,
                 f", /metrics on :{self.settings.metrics_port}" if self.settings.metrics_port else "")
        idle_since = time.monotonic()
        threading.Thread(target=self._refresh_queue_gauges, name="queue-gauges", daemon=True).start()

        def fetch() -> tuple[int, list[tuple[Job, Image.Image, str]]]:
            try:
                jobs = self.queue.read(self.consumer, self.settings.batch_size, block_ms, self.claim_idle_ms)
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # Redis restarting, a starved machine
                log.warning("reading the queue failed (%s); retrying in 1 s", exc)
                self._stopped.wait(1.0)
                return 0, []
            return len(jobs), self.load(jobs)

        # the next batch is read and decoded in a thread while this one is embedded and upserted
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
            ahead = pool.submit(fetch)
            while not self._stop:
                n, loaded = ahead.result()
                ahead = pool.submit(fetch) if not self._stop else None
                if n == 0:
                    if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                        break
                    continue
                try:
                    self.index(loaded)
                except (redis.ConnectionError, redis.TimeoutError) as exc:  # not acked: reclaimed later
                    log.warning("acknowledging a batch failed (%s); its jobs will be reclaimed", exc)
                idle_since = time.monotonic()
                log.info("worker %s: %d images indexed, %d dead-lettered", self.consumer, self.stats.images,
                         self.stats.dead)
            if ahead is not None:  # a batch fetched ahead is finished, not left pending
                _, loaded = ahead.result()
                if loaded:
                    self.index(loaded)
        self._stopped.set()  # ends the gauge thread
        return self.stats


_WHOLE = NoDetector()
