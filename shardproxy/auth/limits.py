"""Pure rate logic: per-principal token buckets and the slow-down of peers whose
authentications keep failing. Clocks are passed in, so the tests need no sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """``rate`` requests per second with bursts up to ``burst``, per key (user or API key).
    ``rate <= 0`` turns it off."""

    rate: float
    burst: float
    max_keys: int = 100_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def acquire(self, key: str, now: float) -> float:
        """0.0 when the request may go; else the seconds until it would be allowed."""
        if self.rate <= 0:
            return 0.0
        cap = max(self.burst, 1.0)
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()
            b = self._buckets[key] = _Bucket(cap, now)
        b.tokens = min(cap, b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate


@dataclass
class FailureThrottle:
    """After ``free`` failed authentications from one peer within ``window_s``, each further
    failure is answered after a delay doubling from ``base_s`` up to ``max_s``; a success
    clears the peer's record."""

    free: int = 5
    window_s: float = 60.0
    base_s: float = 0.25
    max_s: float = 5.0
    max_peers: int = 100_000
    _fails: dict[str, list[float]] = field(default_factory=dict)

    def failed(self, peer: str, now: float) -> float:
        """Record a failure; returns how long to wait before answering it."""
        if len(self._fails) >= self.max_peers:
            self._fails.clear()
        recent = [t for t in self._fails.get(peer, []) if now - t < self.window_s]
        recent.append(now)
        self._fails[peer] = recent
        over = len(recent) - self.free
        if over <= 0:
            return 0.0
        return min(self.max_s, self.base_s * 2 ** (over - 1))

    def succeeded(self, peer: str) -> None:
        self._fails.pop(peer, None)


def peer_host(peer: str) -> str:
    """``ipv4:1.2.3.4:5678`` / ``ipv6:[::1]:5678`` -> the host part (one record per client host)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer
