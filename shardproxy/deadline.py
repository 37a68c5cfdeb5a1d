"""The caller's deadline, carried to every node call.

The RPC wrapper records when the caller's deadline expires (``context.time_remaining()``) in a
context variable; :func:`node_timeout` turns it into the timeout of one node call: never longer
than what the caller has left (minus a small margin to answer in time), never longer than the
proxy's own per-node deadline. Work without a caller (health checks, hint replay, the migrator)
has no deadline and uses the per-node one. Pure logic over a clock value; no I/O.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

from shardproxy.errors import DeadlineBeforeSend

MARGIN_S = 0.05  # answer the caller at least this much before its deadline, with a status instead of nothing
MARGIN_FRACTION = 0.1  # ... or this share of what it has left, up to MARGIN_MAX_S (a busy event loop
MARGIN_MAX_S = 0.5  # answers late: 50 ms was too little at load 10 on 2 cores, the caller saw no status)

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("shardproxy_deadline", default=None)


def set_remaining(seconds: float | None) -> contextvars.Token[float | None]:
    """Record that the caller has ``seconds`` left (None: no deadline)."""
    return _DEADLINE.set(None if seconds is None else time.monotonic() + seconds)


def reset(token: contextvars.Token[float | None]) -> None:
    _DEADLINE.reset(token)


@contextmanager
def caller_deadline(seconds: float | None) -> Iterator[None]:
    token = set_remaining(seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining(now: float | None = None) -> float | None:
    """Seconds the caller has left, None when the caller set no deadline."""
    at = _DEADLINE.get()
    if at is None:
        return None
    return at - (time.monotonic() if now is None else now)


def margin(caller_left_s: float) -> float:
    """How long before the caller's deadline the proxy stops waiting on nodes, to answer with a
    status: a tenth of what the caller has left, between 50 ms and 0.5 s. Pure."""
    return min(MARGIN_MAX_S, max(MARGIN_S, MARGIN_FRACTION * caller_left_s))


def effective_timeout(default_s: float, caller_left_s: float | None, margin_s: float | None = None) -> tuple[float, bool]:
    """``(timeout, bounded_by_caller)`` of one node call. Pure."""
    if caller_left_s is None:
        return default_s, False
    left = caller_left_s - (margin(caller_left_s) if margin_s is None else margin_s)
    if left < default_s:
        return left, True
    return default_s, False


def node_timeout(default_s: float, what: str = "") -> tuple[float, bool]:
    """Timeout of a node call made now; raises :class:`DeadlineBeforeSend` (a :class:`DeadlineExceeded`) when the caller has no
    time left (the call would be wasted work on the node)."""
    timeout, by_caller = effective_timeout(default_s, remaining())
    if timeout <= 0:
        raise DeadlineBeforeSend(f"the caller's deadline expired before {what or 'a node call'} was sent")
    return timeout, by_caller
