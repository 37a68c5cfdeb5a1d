"""Per-node latency: a moving window of recent call durations per (node, method), with p50/p95/p99.

Fed by every node call (:meth:`NodeClient.call`); read by the hedging decision. Pure logic over
plain numbers (the caller passes durations), no I/O and no clock of its own.
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

    def observe(self, node: str, method: str, seconds: float) -> None:
        q = self._samples.get((node, method))
        if q is None:
            q = self._samples[(node, method)] = deque(maxlen=self.window)
        q.append(float(seconds))

    def count(self, node: str, method: str) -> int:
        q = self._samples.get((node, method))
        return len(q) if q else 0

    def quantile(self, node: str, method: str, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the window, None with fewer than ``min_samples`` samples."""
        samples = self._samples.get((node, method))
        if not samples or len(samples) < self.min_samples:
            return None
        return float(np.quantile(np.fromiter(samples, dtype=np.float64), q))

    def p95(self, node: str, method: str) -> float | None:
        return self.quantile(node, method, 0.95)

    def p99(self, node: str, method: str) -> float | None:
        return self.quantile(node, method, 0.99)

    def forget(self, node: str) -> None:
        for key in [k for k in self._samples if k[0] == node]:
            del self._samples[key]

    def snapshot(self) -> dict[tuple[str, str], dict[str, float]]:
        """``{(node, method): {"p50", "p95", "p99", "n"}}`` for every pair with an estimate."""
        out: dict[tuple[str, str], dict[str, float]] = {}
        for (node, method), q in self._samples.items():
            if len(q) >= self.min_samples:
                arr = np.fromiter(q, dtype=np.float64)
                p50, p95, p99 = np.quantile(arr, [0.5, 0.95, 0.99])
                out[(node, method)] = {"p50": float(p50), "p95": float(p95), "p99": float(p99), "n": float(len(q))}
        return out
