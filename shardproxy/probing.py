"""Health-probe policy, as pure functions (the probing itself is :meth:`Cluster.check_health`).

A fixed probe deadline marks healthy nodes down when the whole machine is starved of CPU: every
probe on every node is slow at once (seen at load 20+ on 2 cores), and two misses in a row took
healthy nodes out of reads. Two rules keep fast detection of a hung node without that:

* :func:`probe_deadline`: the base deadline (``health_probe_timeout_s``), raised to ``factor`` ×
  the p90 of recent *answered* probes of all nodes (what a healthy answer costs right now),
  capped at ``max_s``. A hung node's probes time out and never feed the estimate, so the deadline
  does not drift up because of the hung node itself; on an idle machine it stays at the base.
* :func:`round_is_verdict`: a probe round whose own wall time overran its deadline by more than
  ``slack`` × the deadline says the proxy's event loop was starved (the timeouts were delivered
  late): its failures are not held against the nodes. A hung node, probed by a proxy that is not
  starved, fails within about the deadline and is still marked down after two rounds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from shardproxy.latency import linear_quantile

FACTOR = 4.0  # a healthy answer slower than 4x the recent p90 is suspect
WINDOW = 64  # answered probes remembered (all nodes together)


def probe_deadline(recent_s: Iterable[float], base_s: float, max_s: float, factor: float = FACTOR) -> float:
    """The deadline of the next probe: ``base_s``, or ``factor`` × p90 of ``recent_s`` when that is
    larger, never above ``max_s`` (and never below ``base_s``)."""
    samples = sorted(recent_s)
    if len(samples) < 4:
        return base_s
    return max(base_s, min(max_s, factor * linear_quantile(samples, 0.9)))


def round_is_verdict(elapsed_s: float, deadline_s: float, slack: float = 1.0) -> bool:
    """False when the round took longer than ``(1 + slack)`` × its deadline: the proxy itself was
    starved, so a timeout in that round says nothing about the node."""
    return elapsed_s <= (1.0 + slack) * deadline_s


class ProbeHistory:
    """The last :data:`WINDOW` answered probe durations, all nodes together."""

    def __init__(self, window: int = WINDOW) -> None:
        self.samples: deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
