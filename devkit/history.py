"""Operation histories of a workload under faults, and the checker (Jepsen-style). Pure.

A :class:`History` records every operation a client issues: kind (insert, upsert, delete, get,
search, query, count), the keys, the values written (one per key: the row's ``val`` field), the
invoke and completion times (one monotonic clock), the outcome (``ok``; ``fail``: the proxy
refused the rows; ``info``: unknown, e.g. a timeout or a dropped connection: the write may or may
not have happened, even later) and what a read returned.

:func:`check` proves, against the history:

* **lost / stale / resurrected** (``final``): every key's final value (read after the faults
  healed and repair ran) is one the history allows: the last acknowledged write or delete, or a
  write or delete that was concurrent with it or whose outcome is unknown;
* **read** (``get``): every value a get returned was possible at that time;
* **duplicate**: no key twice in any search or query answer;
* **count**: each count(*) lies between the keys surely present during the call and the keys
  possibly present (exact when nothing was in flight); the final count equals the final state.

"Possible" for one key in a window ``[t0, t1]``: the acknowledged operations that completed
before ``t0`` and were not followed by another acknowledged one that started after they ended
(the latest, up to concurrency), plus every operation still in flight in the window or whose
outcome is unknown and that no later acknowledged operation supersedes.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ABSENT = None  # the "no row" value
WRITES = ("insert", "upsert", "delete")
INF = math.inf


@dataclass
class Op:
    id: int
    process: str
    kind: str
    keys: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)  # per key, for insert/upsert
    invoke: float = 0.0
    complete: float = INF  # INF while in flight / never answered
    outcome: str = "info"  # ok | fail | info
    result: Any = None  # get: {pk: val}; search/query: list of id lists; count: int
    failed_keys: list[Any] = field(default_factory=list)  # rows a partly acknowledged write refused
    error: str = ""

    @property
    def is_write(self) -> bool:
        return self.kind in WRITES

    def effect(self, key: Any) -> Any:
        if self.kind == "delete":
            return ABSENT
        return self.values[self.keys.index(key)]

    def ok_for(self, key: Any) -> bool:
        return self.outcome == "ok" and key not in self.failed_keys


class History:
    """Thread-safe recorder; ``dump``/``load`` as JSON lines so a failing round can be re-checked."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.ops: list[Op] = []
        self.events: list[dict[str, Any]] = []  # nemesis actions, for the report
        self._lock = threading.Lock()
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    def invoke(self, process: str, kind: str, keys: Sequence[Any] = (), values: Sequence[Any] = ()) -> Op:
        with self._lock:
            op = Op(len(self.ops), process, kind, list(keys), list(values), invoke=self.now())
            self.ops.append(op)
            return op

    def complete(self, op: Op, outcome: str, result: Any = None, failed_keys: Iterable[Any] = (),
                 error: str = "") -> Op:
        op.complete = self.now()
        op.outcome, op.result, op.failed_keys, op.error = outcome, result, list(failed_keys), error
        return op

    def event(self, what: str, **info: Any) -> None:
        with self._lock:
            self.events.append({"t": self.now(), "what": what, **info})

    def dump(self, path: str) -> None:
        with open(path, "w") as f:
            for op in self.ops:
                d = asdict(op)
                d["complete"] = None if op.complete == INF else op.complete
                if op.kind == "get" and isinstance(op.result, dict):  # JSON keys are strings: keep pk types
                    d["result"] = [[k, v] for k, v in op.result.items()]
                f.write(json.dumps(d, default=str) + "\n")

    @classmethod
    def load(cls, path: str) -> History:
        h = cls()
        with open(path) as f:
            for line in f:
                d = json.loads(line)
                d["complete"] = INF if d["complete"] is None else d["complete"]
                if d["kind"] == "get" and isinstance(d["result"], list):
                    d["result"] = {k: v for k, v in d["result"]}
                h.ops.append(Op(**d))
        return h


def by_key(ops: Iterable[Op]) -> dict[Any, list[Op]]:
    out: dict[Any, list[Op]] = {}
    for op in ops:
        if op.is_write:
            for k in op.keys:
                out.setdefault(k, []).append(op)
    return out


def possible(ops: Sequence[Op], key: Any, t0: float, t1: float) -> set[Any]:
    """Values ``key`` may have at some moment of ``[t0, t1]`` (ABSENT for no row)."""
    done = [o for o in ops if o.ok_for(key) and o.complete < t0]
    latest = [a for a in done if not any(b.invoke > a.complete for b in done)]
    vals = {a.effect(key) for a in latest} if latest else {ABSENT}
    for o in ops:
        if o.invoke >= t1 or o in latest:
            continue
        if o.ok_for(key) and o.complete < t0:
            continue  # superseded by a later acknowledged op
        if not o.ok_for(key) and any(b.invoke > o.complete for b in latest):
            continue  # an unknown op that ended before an acknowledged one began
        vals.add(o.effect(key))
    return vals


@dataclass
class Violation:
    kind: str
    key: Any = None
    op: int = -1
    detail: str = ""


@dataclass
class CheckResult:
    violations: list[Violation] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for v in self.violations:
            kinds[v.kind] = kinds.get(v.kind, 0) + 1
        return {"ok": self.ok, "checked": self.checked, "violations": kinds,
                "examples": [asdict(v) for v in self.violations[:10]]}


def check(history: History | Sequence[Op], final: dict[Any, Any] | None = None,
          final_count: int | None = None) -> CheckResult:
    """Check a history; ``final``: every key's value read after the run (absent keys left out)."""
    ops = history.ops if isinstance(history, History) else list(history)
    keys = by_key(ops)
    res = CheckResult(checked={"ops": len(ops), "keys": len(keys)})
    n = {"get": 0, "dup": 0, "count": 0}
    for op in ops:
        if op.outcome != "ok":
            continue
        if op.kind == "get":
            n["get"] += 1
            for k in op.keys:
                got = (op.result or {}).get(k, ABSENT)
                allowed = possible(keys.get(k, []), k, op.invoke, op.complete)
                if got not in allowed:
                    kind = "lost-read" if got is ABSENT else ("resurrected-read" if ABSENT in allowed and len(allowed) == 1
                                                              else "stale-read")
                    res.violations.append(Violation(kind, k, op.id, f"got {got!r}, allowed {sorted(map(repr, allowed))}"))
        if op.kind in ("search", "query"):
            n["dup"] += 1
            for ids in op.result or []:
                if len(ids) != len(set(ids)):
                    dup = sorted({i for i in ids if ids.count(i) > 1}, key=repr)
                    res.violations.append(Violation("duplicate", dup[0], op.id, f"ids {dup} twice"))
        elif op.kind == "count":
            n["count"] += 1
            lo = hi = 0
            for k, kops in keys.items():
                allowed = possible(kops, k, op.invoke, op.complete)
                lo += ABSENT not in allowed
                hi += allowed != {ABSENT}
            if not lo <= int(op.result) <= hi:
                res.violations.append(Violation("count", None, op.id, f"count {op.result} outside [{lo}, {hi}]"))
    res.checked.update({"gets": n["get"], "reads_for_duplicates": n["dup"], "counts": n["count"]})
    if final is not None:
        for k in set(keys) | set(final):
            got = final.get(k, ABSENT)
            allowed = possible(keys.get(k, []), k, INF, INF)
            if got not in allowed:
                kind = "lost" if got is ABSENT else ("resurrected" if allowed == {ABSENT} else "stale")
                res.violations.append(Violation(kind, k, -1, f"final {got!r}, allowed {sorted(map(repr, allowed))}"))
        res.checked["final_keys"] = len(set(keys) | set(final))
        if final_count is not None and final_count != len(final):
            res.violations.append(Violation("count", None, -1, f"final count {final_count} != {len(final)} rows"))
    return res
