"""Per-node latency: a moving window of recent call durations per (node, method), with p50/p95/p99.

Fed by every node call (:meth:`NodeClient.call`); read by the hedging decision on every read, so a
quantile is cached and recomputed only after ``len(window) // 16`` new samples (at most 16 at the
default window): the hedge threshold lags by a few calls, and a search no longer pays for a numpy
quantile per node (it was ~18% of the proxy's CPU per search). Pure logic over plain numbers (the
caller passes durations), no I/O and no clock of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 256  # samples kept per (node, method)
MIN_SAMPLES = 8  # fewer samples than this: no estimate (the caller uses its default)


@dataclass
class LatencyTracker:
    window: int = WINDOW
    min_samples: int = MIN_SAMPLES
    _samples: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _seen: dict[tuple[str, str], int] = field(default_factory=dict)  # samples ever observed
    _cache: dict[tuple[str, str, float], tuple[int, float]] = field(default_factory=dict)

    def observe(self, node: str, method: str, seconds: float) -> None:
        key = (node, method)
        q = self._samples.get(key)
        if q is None:
            q = self._samples[key] = deque(maxlen=self.window)
        q.append(float(seconds))
        self._seen[key] = self._seen.get(key, 0) + 1

    def count(self, node: str, method: str) -> int:
        q = self._samples.get((node, method))
        return len(q) if q else 0

    def quantile(self, node: str, method: str, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the window, None with fewer than ``min_samples`` samples."""
        samples = self._samples.get((node, method))
        if not samples or len(samples) < self.min_samples:
            return None
        seen = self._seen[(node, method)]
        cached = self._cache.get((node, method, q))
        if cached is not None and seen - cached[0] < max(1, len(samples) // 16):
            return cached[1]
        value = linear_quantile(sorted(samples), q)
        self._cache[(node, method, q)] = (seen, value)
        return value

    def p95(self, node: str, method: str) -> float | None:
        return self.quantile(node, method, 0.95)

    def p99(self, node: str, method: str) -> float | None:
        return self.quantile(node, method, 0.99)

    def forget(self, node: str) -> None:
        for key in [k for k in self._samples if k[0] == node]:
            del self._samples[key]
            self._seen.pop(key, None)
        for ckey in [k for k in self._cache if k[0] == node]:
            del self._cache[ckey]

    def snapshot(self) -> dict[tuple[str, str], dict[str, float]]:
        """``{(node, method): {"p50", "p95", "p99", "n"}}`` for every pair with an estimate."""
        out: dict[tuple[str, str], dict[str, float]] = {}
        for (node, method), q in self._samples.items():
            if len(q) >= self.min_samples:
                arr = np.fromiter(q, dtype=np.float64)
                p50, p95, p99 = np.quantile(arr, [0.5, 0.95, 0.99])
                out[(node, method)] = {"p50": float(p50), "p95": float(p95), "p99": float(p99), "n": float(len(q))}
        return out


def linear_quantile(ordered: list[float], q: float) -> float:
    """numpy's default ("linear") quantile of an already sorted, non-empty list, in plain Python."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
