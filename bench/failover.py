"""Benchmark of failover at R=2 on 3 milvus-lite nodes (one proxy, valkey), one run, three phases
with the same client load (one client inserting batches, one searching nq=1 k=10):

1. all nodes healthy (the baseline);
2. one node frozen with SIGSTOP (a hung node: hedged reads, then marked down by the probes);
3. one node killed with kill -9 (down: sloppy quorum with stand-ins and hints).

Reports insert throughput (acknowledged rows/s) and search p50/p99 per phase, the hedge rate
(hedged reads per search, from the proxy's /metrics) and the machine load. Writes
bench/out/failover.{json,png}.

    .venv/bin/python bench/failover.py                  # 3000 rows, dim 32, 15 s per phase
    .venv/bin/python bench/failover.py --phase-s 30     # longer phases
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from shopbyimage.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402

from bench import common  # noqa: E402
from devkit import procs  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
NAME = "bench_failover"


def pct(values: list[float], q: float) -> float:
    return round(common.pct(values, q), 2)


class Load:
    """One inserting and one searching client on their own threads."""

    def __init__(self, cluster: DevCluster, vecs: np.ndarray, next_id: int, batch: int = 50) -> None:
        self.cluster, self.vecs, self.next_id, self.batch = cluster, vecs, next_id, batch
        self.stop = threading.Event()
        self.lat: list[float] = []
        self.search_errors = 0
        self.rows_acked = 0
        self.batches_failed = 0
        self.threads = [threading.Thread(target=self._search, daemon=True),
                        threading.Thread(target=self._insert, daemon=True)]

    def _search(self) -> None:
        client = self.cluster.client()
        rng = np.random.default_rng(1)
        while not self.stop.is_set():
            q = self.vecs[rng.integers(len(self.vecs))]
            t = time.perf_counter()
            try:
                client.search(NAME, data=[q.tolist()], limit=10, anns_field="vec", timeout=30)
                self.lat.append(time.perf_counter() - t)
            except Exception:  # noqa: BLE001 - counted
                self.search_errors += 1

    def _insert(self) -> None:
        client = self.cluster.client()
        dim = self.vecs.shape[1]
        rng = np.random.default_rng(2)
        while not self.stop.is_set():
            ids = range(self.next_id, self.next_id + self.batch)
            self.next_id += self.batch
            vecs = rng.standard_normal((self.batch, dim), dtype=np.float32)
            try:
                res = client.insert(NAME, [{"id": i, "vec": v} for i, v in zip(ids, vecs.tolist())], timeout=30)
                self.rows_acked += int(res["insert_count"])
            except Exception:  # noqa: BLE001 - a batch with rows not acknowledged
                self.batches_failed += 1

    def run(self, seconds: float) -> dict:
        t0 = time.monotonic()
        load0 = os.getloadavg()[0]
        for t in self.threads:
            t.start()
        time.sleep(seconds)
        self.stop.set()
        for t in self.threads:
            t.join(60)
        wall = time.monotonic() - t0
        return {
            "seconds": round(wall, 2), "searches": len(self.lat), "search_errors": self.search_errors,
            "search_ms": {"p50": pct(self.lat, 50), "p99": pct(self.lat, 99), "max": pct(self.lat, 100)},
            "insert_rows_per_s": round(self.rows_acked / wall, 1), "insert_batches_failed": self.batches_failed,
            "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for name, pattern in (("hedges", r'^shardproxy_hedged_requests_total\{method="Search"\} (\S+)'),
                          ("hedge_wins", r'^shardproxy_hedge_wins_total\{method="Search"\} (\S+)'),
                          ("retries", r'^shardproxy_read_retries_total\{method="Search"\} (\S+)'),
                          ("standin_rows", r'^shardproxy_standin_rows_total\{[^}]*\} (\S+)')):
        out[name] = sum(float(v) for v in re.findall(pattern, text, re.M))
    return out


def wait_state(stub: admin_pb2_grpc.ShardAdminStub, node: str, state: int, timeout: float = 180) -> float:
    t0 = time.monotonic()
    while {n.id: n.state for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}[node] != state:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{node} did not reach state {state}")
        time.sleep(0.2)
    return time.monotonic() - t0


def run(rows: int, dim: int, phase_s: float) -> dict:
    metrics_port = procs.free_port()
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        cluster = DevCluster(data_dir=Path(tmp) / "c", nodes=3, replicas=2,
                             proxy_env={"SHARDPROXY_METRICS_PORT": str(metrics_port),
                                        "SHARDPROXY_IMAGE_SEARCH": "false"}).start()  # no model stack to load
        try:
            client = cluster.client()
            vecs = common.load_flat_collection(client, NAME, rows, dim, batch=2000)
            stub = cluster.admin()
            next_id = 10_000_000
            phases: dict[str, dict] = {}

            def phase(name: str) -> None:
                nonlocal next_id
                m0 = scrape(metrics_port)
                load = Load(cluster, vecs, next_id)
                phases[name] = load.run(phase_s)
                next_id = load.next_id + 1_000_000
                m1 = scrape(metrics_port)
                d = {k: m1[k] - m0[k] for k in m0}
                n = max(1, phases[name]["searches"])
                phases[name] |= {"hedges": d["hedges"], "hedge_wins": d["hedge_wins"], "read_retries": d["retries"],
                                 "hedge_rate": round(d["hedges"] / n, 4), "standin_rows": d["standin_rows"]}

            phase("healthy")
            victim = cluster.milvus[1]
            victim.freeze()
            try:
                phase("one_frozen")
            finally:
                victim.thaw()
            phases["one_frozen"]["back_active_after_thaw_s"] = round(wait_state(stub, "node-1", admin_pb2.NODE_STATE_ACTIVE), 2)
            victim = cluster.milvus[2]
            victim.kill()
            phases["one_down"] = {"marked_down_after_s": round(wait_state(stub, "node-2", admin_pb2.NODE_STATE_DOWN), 2)}
            phase("one_down")
            cluster.restart_node(2)
            phases["one_down"]["caught_up_after_restart_s"] = round(wait_state(stub, "node-2", admin_pb2.NODE_STATE_ACTIVE), 2)
            total = client.query(NAME, filter="", output_fields=["count(*)"])[0]["count(*)"]
            client.close()
            return {"rows": rows, "dim": dim, "nodes": 3, "replicas": 2, "phase_s": phase_s,
                    "rows_after": total, **phases}
        finally:
            cluster.stop()


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["healthy", "one_frozen", "one_down"]
    labels = ["all healthy", "one frozen (SIGSTOP)", "one down (kill -9)"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.bar(labels, [result[n]["insert_rows_per_s"] for n in names], color=["tab:green", "tab:orange", "tab:red"])
    ax.set_ylabel("acknowledged rows/s")
    ax.set_title("insert throughput, R=2 of 3 nodes")
    ax = axes[1]
    x = np.arange(2)
    for i, (n, lab) in enumerate(zip(names, labels)):
        s = result[n]["search_ms"]
        ax.bar(x + (i - 1) * 0.27, [s["p50"], s["p99"]], 0.27, label=lab)
    ax.set_xticks(x, ["p50", "p99"])
    ax.set_ylabel("search latency (ms), nq=1 k=10")
    ax.set_title("search latency")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.bar(labels, [result[n]["hedge_rate"] for n in names], color="tab:purple")
    ax.set_ylabel("hedged reads per search")
    ax.set_title("hedge rate")
    for a in axes:
        a.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--phase-s", type=float, default=15.0)
    args = ap.parse_args()
    result = {"machine": common.machine() | {"loadavg_before": [round(x, 2) for x in os.getloadavg()]},
              **run(args.rows, args.dim, args.phase_s)}
    result["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    common.write("failover", result, OUT)
    plot(result, OUT / "failover.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
