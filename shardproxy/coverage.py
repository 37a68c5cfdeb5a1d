"""Coverage of a scattered read and the partial-result policy. Pure: no I/O.

A read that misses a shard (every replica of some stretch of the ring is down) fails
UNAVAILABLE naming the missing shards, unless the caller sent request metadata
``x-shardproxy-partial: allow``; then it answers what the live nodes hold and says so in
trailing metadata (``x-shardproxy-partial: true``, ``x-shardproxy-missing-shards``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shardproxy.errors import Unavailable

PARTIAL_KEY = "x-shardproxy-partial"
MISSING_KEY = "x-shardproxy-missing-shards"
_ALLOW = ("allow", "true", "1")


@dataclass(frozen=True)
class Coverage:
    """What a read did not cover: the shards missing from its answer (empty: complete)."""

    missing: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def trailers(self) -> list[tuple[str, str]]:
        """Trailing metadata announcing a partial answer (none for a complete one)."""
        if not self.missing:
            return []
        return [(PARTIAL_KEY, "true"), (MISSING_KEY, ",".join(self.missing))]

    def __or__(self, other: Coverage) -> Coverage:
        return Coverage(tuple(sorted(set(self.missing) | set(other.missing))))


COMPLETE = Coverage()


def partial_allowed(metadata: Iterable[tuple[str, str]] | None) -> bool:
    """True when the request metadata accepts partial results (``x-shardproxy-partial: allow``)."""
    return any(k == PARTIAL_KEY and str(v).lower() in _ALLOW for k, v in (metadata or ()))


def decide(missing: Sequence[str], down: Iterable[str], failures: Sequence[str], allow_partial: bool) -> Coverage:
    """The partial-result policy. ``missing``: shards with no live replica; ``down``: nodes that
    were not called or failed; ``failures``: their error messages. No missing shard: complete.
    Otherwise partial when allowed, else :class:`Unavailable` naming the shards."""
    if not missing:
        return COMPLETE
    if not allow_partial:
        raise Unavailable(
            f"shard(s) unavailable, no live replica: {', '.join(missing)} (down: {', '.join(sorted(down))}); "
            f"send request metadata '{PARTIAL_KEY}: allow' to accept partial results"
            + (f"; {failures[0]}" if failures else "")
        )
    return Coverage(tuple(missing))
