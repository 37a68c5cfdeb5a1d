"""Faults on a :class:`~devkit.devcluster.DevCluster`, on a seeded schedule (replayable).

:func:`schedule` is pure: the same seed and fault list give the same plan. :class:`Nemesis`
carries a plan out on real processes: kill -9 and restart of a Milvus node, SIGSTOP/SIGCONT of
a node (a hung peer), kill -9 of the migrator mid-move, kill -9 of one of two proxies (restarted
on its port), a Redis restart (AOF: nothing lost), a node add and a drain (both online moves).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from dataclasses import dataclass

from shopbyimage.v1 import admin_pb2

from devkit import procs
from devkit.devcluster import DevCluster
from devkit.history import History

log = logging.getLogger(__name__)

FAULTS = ("kill-node", "pause-node", "kill-migrator", "kill-proxy", "restart-redis", "add-drain")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the workload starts
    kind: str
    target: int  # node index (kill/pause), else 0
    hold_s: float  # how long the fault lasts


def schedule(seed: int, faults: list[str], duration_s: float, nodes: int) -> list[Fault]:
    """One fault of each kind in ``faults`` (in a seeded order), spread over ``duration_s``."""
    for f in faults:
        if f not in FAULTS:
            raise ValueError(f"unknown fault {f!r}; known: {', '.join(FAULTS)}")
    rng = random.Random(seed)
    order = list(faults)
    rng.shuffle(order)
    slot = duration_s / max(1, len(order))
    out = []
    for i, kind in enumerate(order):
        at = i * slot + rng.uniform(0.1, 0.3) * slot
        out.append(Fault(round(at, 2), kind, rng.randrange(nodes), round(rng.uniform(0.3, 0.5) * slot, 2)))
    return out


class Nemesis:
    def __init__(self, cluster: DevCluster, history: History) -> None:
        self.c = cluster
        self.h = history

    def run(self, plan: list[Fault], t0: float) -> None:
        for f in plan:
            wait = t0 + f.at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.h.event(f"start {f.kind}", target=f.target)
            log.info("nemesis: %s (target %d, %.1f s)", f.kind, f.target, f.hold_s)
            getattr(self, f.kind.replace("-", "_"))(f)
            self.h.event(f"end {f.kind}", target=f.target)

    # -- faults
    def kill_node(self, f: Fault) -> None:
        self.c.milvus[f.target].kill()
        time.sleep(f.hold_s)
        self.c.restart_node(f.target)

    def pause_node(self, f: Fault) -> None:
        pid = self.c.milvus[f.target].pid
        os.killpg(pid, signal.SIGSTOP)
        try:
            time.sleep(f.hold_s)
        finally:
            os.killpg(pid, signal.SIGCONT)

    def kill_proxy(self, f: Fault) -> None:
        if not self.c.more_proxies:
            return
        p = self.c.more_proxies[0]
        p.kill()
        time.sleep(f.hold_s)
        self.c.more_proxies[0] = self.c._spawn_proxy(p.port, p.name)

    def restart_redis(self, f: Fault) -> None:
        assert self.c.redis is not None
        r = self.c.redis
        r.kill()
        time.sleep(min(f.hold_s, 2.0))
        self.c.redis = procs.start_redis(self.c.data_dir / "redis", r.port, r.host)

    def _status(self) -> admin_pb2.RebalanceStatusResponse:
        return self.c.admin().RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)

    def _move(self, call, timeout: float = 300.0) -> None:  # type: ignore[no-untyped-def]
        call()
        deadline = time.monotonic() + timeout
        while self._status().active and time.monotonic() < deadline:
            time.sleep(0.5)

    def add_drain(self, f: Fault) -> None:
        spare = self.c.spare_nodes[0]
        stub = self.c.admin()
        self._move(lambda: stub.AddNode(admin_pb2.AddNodeRequest(address=spare.address), timeout=120))
        self._move(lambda: stub.DrainNode(admin_pb2.DrainNodeRequest(node_id=spare.name), timeout=120))

    def kill_migrator(self, f: Fault) -> None:
        """Add the spare, kill -9 its migrator once it moved rows; a proxy restarts one."""
        spare = self.c.spare_nodes[-1]
        stub = self.c.admin()
        stub.AddNode(admin_pb2.AddNodeRequest(address=spare.address), timeout=120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = self._status()
            if not st.active:
                break
            if st.rows_moved > 0 and st.migrator_pid:
                try:
                    os.kill(st.migrator_pid, signal.SIGKILL)
                    self.h.event("killed migrator", pid=st.migrator_pid, rows_moved=st.rows_moved)
                except ProcessLookupError:
                    pass
                break
            time.sleep(0.2)
        deadline = time.monotonic() + 300
        while self._status().active and time.monotonic() < deadline:
            time.sleep(0.5)
