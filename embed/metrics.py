"""Prometheus metrics of the image pipeline (embedding worker and the in-proxy SearchByImage path).

Light on purpose: imports only ``prometheus_client`` and :mod:`shardproxy.metrics` (for the shared
model-identity metric), so any process can import it without pulling torch. Labels are bounded:
``stage`` is one of :data:`STAGES`, ``outcome`` one of :data:`OUTCOMES`; never an image URL,
product id or collection name.

Wiring (embed worker):

* at start: ``serve(settings.metrics_port)`` and ``set_model_info(model_id, embedder, dim, detector)``;
* per batch and stage: ``with stage_timer("embed", len(batch)) as t: ...; t.failed(n_bad)``
  (or :func:`observe_stage` with a measured duration);
* when a message is claimed again from a dead consumer: ``REDELIVERIES.inc()``;
* when a message goes to the dead-letter stream: ``dead_letter(stage)`` (and log it once, at
  WARNING, with the message id);
* every few seconds (or before each XREADGROUP): ``update_queue_gauges(redis, stream, group)``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from shardproxy.metrics import MODEL_INFO, serve, set_model_info

__all__ = [
    "BATCH_SIZE", "DEAD_LETTERS", "ITEMS", "MODEL_INFO", "OUTCOMES", "QUEUE_LAG", "QUEUE_LENGTH",
    "QUEUE_OLDEST_PENDING_AGE", "QUEUE_PENDING", "REDELIVERIES", "STAGES", "STAGE_SECONDS", "dead_letter",
    "observe_stage", "serve", "set_model_info", "stage_timer", "update_queue_gauges",
]

STAGES = ("decode", "detect", "embed", "write")
OUTCOMES = ("ok", "error")

_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# -- import queue (Redis Streams): set from Redis by update_queue_gauges
QUEUE_LENGTH = Gauge("embed_queue_length", "Entries in the import stream (XLEN)")
QUEUE_PENDING = Gauge(
    "embed_queue_pending", "Entries delivered to a worker and not acknowledged yet (XPENDING of the group)"
)
QUEUE_LAG = Gauge(
    "embed_queue_lag", "Entries in the stream not yet delivered to the consumer group (XINFO GROUPS lag)"
)
QUEUE_OLDEST_PENDING_AGE = Gauge(
    "embed_queue_oldest_pending_age_seconds", "Age of the oldest unacknowledged entry (0 when none)"
)
REDELIVERIES = Counter(
    "embed_queue_redeliveries_total", "Entries claimed again after a worker failed to acknowledge them"
)
DEAD_LETTERS = Counter(
    "embed_queue_dead_letters_total", "Entries moved to the dead-letter stream, by the stage that gave up",
    ["stage"],
)

# -- pipeline stages
ITEMS = Counter(
    "embed_items_total", "Items through a pipeline stage (images decoded/detected, crops embedded, rows written)",
    ["stage", "outcome"],
)
STAGE_SECONDS = Histogram(
    "embed_stage_duration_seconds", "Time one batch spends in a pipeline stage", ["stage"],
    buckets=_SECONDS_BUCKETS,
)
BATCH_SIZE = Histogram(
    "embed_batch_size", "Items in one batch entering a pipeline stage", ["stage"], buckets=_BATCH_BUCKETS,
)

for _stage in STAGES:  # every series exists from the start: rate() and dashboards see 0, not gaps
    STAGE_SECONDS.labels(stage=_stage)
    BATCH_SIZE.labels(stage=_stage)
    DEAD_LETTERS.labels(stage=_stage)
    for _outcome in OUTCOMES:
        ITEMS.labels(stage=_stage, outcome=_outcome)


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown pipeline stage {stage!r}; one of {', '.join(STAGES)}")
    return stage


def observe_stage(stage: str, items: int, seconds: float, failed: int = 0) -> None:
    """One batch of ``items`` went through ``stage`` in ``seconds``; ``failed`` of them failed."""
    _check_stage(stage)
    BATCH_SIZE.labels(stage=stage).observe(items)
    STAGE_SECONDS.labels(stage=stage).observe(seconds)
    if items - failed > 0:
        ITEMS.labels(stage=stage, outcome="ok").inc(items - failed)
    if failed > 0:
        ITEMS.labels(stage=stage, outcome="error").inc(failed)


class _StageTimer:
    def __init__(self) -> None:
        self.n_failed = 0

    def failed(self, n: int = 1) -> None:
        self.n_failed += n


@contextlib.contextmanager
def stage_timer(stage: str, items: int) -> Iterator[_StageTimer]:
    """Time one batch in ``stage``; an exception counts the whole batch as failed (and propagates)."""
    _check_stage(stage)
    timer = _StageTimer()
    t0 = time.perf_counter()
    try:
        yield timer
    except BaseException:
        timer.n_failed = items
        raise
    finally:
        observe_stage(stage, items, time.perf_counter() - t0, min(timer.n_failed, items))


def dead_letter(stage: str, count: int = 1) -> None:
    DEAD_LETTERS.labels(stage=_check_stage(stage)).inc(count)


def _decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def update_queue_gauges(redis: Any, stream: str, group: str, now: float | None = None) -> dict[str, float]:
    """Read the queue's state from Redis (a synchronous ``redis.Redis``) into the queue gauges.
    A missing stream or group reads as an empty queue. Returns what it set."""
    length = pending = lag = age = 0.0
    try:
        length = float(redis.xlen(stream))
        groups = redis.xinfo_groups(stream)
    except Exception as exc:  # noqa: BLE001 - redis.ResponseError: no such key
        if "no such key" not in str(exc).lower():
            raise
        groups = []
    for g in groups:
        g = {_decode(k): _decode(v) for k, v in g.items()}
        if g.get("name") != group:
            continue
        pending = float(g.get("pending") or 0)
        raw_lag = g.get("lag")
        if raw_lag is None:  # Redis < 7, or the lag is unknown after deletions: entries after last delivery
            raw_lag = len(redis.xrange(stream, min=f"({g.get('last-delivered-id', '0-0')}", count=100_000))
        lag = float(raw_lag)
        if pending:
            summary = redis.xpending(stream, group)
            oldest = _decode(summary.get("min")) if summary else None
            if oldest:
                ms = int(str(oldest).split("-")[0])
                age = max(0.0, (now if now is not None else time.time()) - ms / 1000.0)
    QUEUE_LENGTH.set(length)
    QUEUE_PENDING.set(pending)
    QUEUE_LAG.set(lag)
    QUEUE_OLDEST_PENDING_AGE.set(age)
    return {"length": length, "pending": pending, "lag": lag, "oldest_pending_age_seconds": age}
