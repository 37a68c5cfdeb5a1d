"""Hedged reads ("The Tail at Scale", Dean and Barroso): when a node is slower than its hedge
threshold, ask another replica of the same data; the first complete answer wins.

Two pure pieces, no I/O:

* :func:`hedge_delay`: how long to wait for a node before hedging: the node's moving p95 for the
  method, times a factor, clamped to ``[min_s, max_s]`` (``max_s`` without enough samples);
* :class:`HedgeBudget`: a token bucket so hedges cannot double the load: every read deposits
  ``ratio`` tokens (up to ``burst``), every hedge spends one. With ratio 0.1 at most ~10% of the
  reads send an extra request.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardproxy.latency import LatencyTracker


def hedge_delay(
    tracker: LatencyTracker, node: str, method: str, *, factor: float, min_s: float, max_s: float
) -> float:
    p95 = tracker.p95(node, method)
    if p95 is None:
        return max_s
    return min(max_s, max(min_s, p95 * factor))


@dataclass
class HedgeBudget:
    ratio: float = 0.1
    burst: float = 10.0
    tokens: float = 10.0

    def deposit(self) -> None:
        """One read was served: earn ``ratio`` of a hedge."""
        self.tokens = min(self.burst, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        """Take one hedge if the budget allows."""
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
