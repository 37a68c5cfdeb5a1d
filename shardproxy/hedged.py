"""Reads that do not wait for a slow node: ask a set of nodes that covers the data, hedge to
another replica when one of them is slower than its threshold, stop as soon as the answers
cover everything (the first complete set of answers wins), cancel the rest.

The executor is generic over node ids and three callbacks, so it is unit-tested with plain
coroutines: ``call(node)`` does the node call, ``covers(nodes)`` says whether answers from these
nodes make the result complete, ``delay_of(node)`` is the node's hedge threshold.

* A node whose call fails (``Unavailable``), or whose circuit opens while we wait (the health
  probe found it hung: ``is_live`` turns False), is given up at once and replaced by spare
  replicas where they exist (not budgeted: it replaces a request, it adds no load).
* A node slower than its threshold is hedged: the fewest spare nodes that restore coverage are
  asked too, if the :class:`~shardproxy.hedging.HedgeBudget` allows.
* Other exceptions (a Milvus error, the caller's deadline) propagate after the remaining calls
  are cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shardproxy.errors import Unavailable
from shardproxy.hedging import HedgeBudget

POLL_S = 0.1  # how often a wait re-checks circuits and hedge thresholds


@dataclass
class Gathered:
    results: dict[str, Any] = field(default_factory=dict)  # node -> its answer
    failed: dict[str, str] = field(default_factory=dict)  # node -> why it was given up
    hedges: list[str] = field(default_factory=list)  # nodes asked because another was slow
    retries: list[str] = field(default_factory=list)  # nodes asked because another failed
    dropped: list[str] = field(default_factory=list)  # slow nodes not waited for (covered)
    hedge_won: bool = False  # a hedge answered and the node it hedged for had not
    complete: bool = False  # the answers cover everything


async def gather_covering(
    first: Sequence[str],
    spare: Sequence[str],
    call: Callable[[str], Awaitable[Any]],
    covers: Callable[[frozenset[str]], bool],
    delay_of: Callable[[str], float],
    budget: HedgeBudget,
    is_live: Callable[[str], bool] = lambda n: True,
    poll_s: float = POLL_S,
) -> Gathered:
    out = Gathered()
    spare = list(spare)
    tasks: dict[str, asyncio.Task[Any]] = {}
    started: dict[str, float] = {}
    handled: set[str] = set()  # slow or failed nodes already hedged for (or that could not be)
    replaced: set[str] = set()  # failed nodes already replaced (or that could not be)
    hedged_for: set[str] = set()  # slow nodes a hedge was sent for

    def launch(node: str) -> None:
        tasks[node] = asyncio.ensure_future(call(node))
        started[node] = time.monotonic()

    for n in first:
        launch(n)
    budget.deposit()
    try:
        while tasks and not covers(frozenset(out.results)):
            now = time.monotonic()
            waits = [started[n] + delay_of(n) - now for n in tasks if n not in handled]
            timeout = min([poll_s, *waits])
            done, _ = await asyncio.wait(
                list(tasks.values()), timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
            )
            for node in [n for n, t in tasks.items() if t in done]:
                task = tasks.pop(node)
                exc = task.exception()
                if exc is None:
                    out.results[node] = task.result()
                elif isinstance(exc, Unavailable):
                    out.failed[node] = exc.message
                else:
                    raise exc
            for node in [n for n in tasks if not is_live(n)]:
                tasks.pop(node).cancel()
                out.failed[node] = f"node {node} stopped answering health checks; not waited for"
            now = time.monotonic()
            # a node that fails after it was found slow (and not hedged for: over budget) is
            # still replaced: a retry is not budgeted
            failed_now = [n for n in out.failed if n not in replaced]
            slow = [n for n in tasks if n not in handled and now - started[n] >= delay_of(n)]
            if not failed_now and not slow:
                continue
            replaced.update(failed_now)
            handled.update(failed_now, slow)
            hopeful = frozenset(out.results) | frozenset(n for n in tasks if n not in slow)
            if not spare or covers(hopeful):
                continue
            chosen: list[str] = []
            for s in spare:
                if covers(hopeful | frozenset(chosen)):
                    break
                chosen.append(s)
            if not chosen:
                continue
            if not failed_now and not budget.try_spend():
                continue  # over budget: keep waiting (the health probe bounds the wait)
            for s in chosen:
                spare.remove(s)
                launch(s)
                (out.retries if failed_now else out.hedges).append(s)
            hedged_for.update(slow)
        out.complete = covers(frozenset(out.results))
        out.dropped = sorted(tasks)
        out.hedge_won = bool(out.hedges) and any(h in out.results for h in out.hedges) and bool(hedged_for & set(tasks))
        return out
    finally:
        for t in tasks.values():
            t.cancel()
