"""Benchmark of online rebalancing. Writes bench/results/rebalance.{json,png}.

1. Moved fraction vs the ideal, N = 2..8 (pure, from the ring: exact arc shares, bench/ringsim.py):
   adding node N to N-1 nodes should move 1/N of the keys; draining one of N nodes should move its
   1/N. The real move below also reports rows moved / rows, vs the ideal 1/4.
2. On a real cluster (3 Milvus nodes + 1 spare, one proxy, valkey; ``--engine milvus-lite`` or
   ``milvus`` for real Milvus standalones), same run:
   * search latency (nq=1, k=10, through the proxy) with no move running: p50/p99;
   * add the spare with no client load: rows moved per second;
   * drain it again while one client inserts and another searches: rows/s under load, and the
     search p50/p99 measured during that move.

    .venv/bin/python bench/rebalance.py                 # 30k rows, dim 32
    .venv/bin/python bench/rebalance.py --rows 100000 --engine milvus   # bigger, real Milvus nodes
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench import common  # noqa: E402
from bench.ringsim import moved_fraction_exact  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402
from shardproxy.ring import Ring, RingNode  # noqa: E402

OUT = common.RESULTS
NAME = "bench_rebalance"


def moved_fractions() -> list[dict]:
    out = []
    for n in range(2, 9):
        before = Ring([RingNode(f"node-{i}") for i in range(n - 1)])
        after = Ring([RingNode(f"node-{i}") for i in range(n)])
        add = moved_fraction_exact(before, after)
        drain_ring = Ring([RingNode(f"node-{i}") for i in range(n) if i != n // 2])
        drain = moved_fraction_exact(after, drain_ring)
        out.append({"n": n, "ideal": 1 / n, "add_moved": add, "add_ratio": add * n,
                    "drain_moved": drain, "drain_ratio": drain * n})
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


class Searcher(threading.Thread):
    def __init__(self, connect: dict, vecs: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.client = common.client(**connect)
        self.vecs = vecs
        self.lat: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(1)
        while not self.stop.is_set():
            q = self.vecs[rng.integers(len(self.vecs))]
            t0 = time.perf_counter()
            self.client.search(NAME, data=[q.tolist()], limit=10, anns_field="vec")
            self.lat.append(time.perf_counter() - t0)
            time.sleep(0.01)


class Inserter(threading.Thread):
    def __init__(self, connect: dict, dim: int) -> None:
        super().__init__(daemon=True)
        self.client = common.client(**connect)
        self.dim = dim
        self.rows = 0
        self.stop = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(2)
        nxt = 10_000_000
        while not self.stop.is_set():
            v = rng.standard_normal((200, self.dim), dtype=np.float32)
            self.client.insert(NAME, [{"id": nxt + i, "vec": v[i].tolist()} for i in range(200)])
            nxt += 200
            self.rows += 200
            time.sleep(0.05)


def wait_move(stub: admin_pb2_grpc.ShardAdminStub) -> admin_pb2.RebalanceStatusResponse:
    while True:
        st = stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
        if not st.active:
            return st
        time.sleep(0.25)


def real_cluster(rows: int, dim: int, baseline_s: float, engine: str = "milvus-lite") -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-rebalance-") as tmp:
        cluster = DevCluster(data_dir=Path(tmp) / "c", nodes=3, spare=1, engine=engine).start()
        try:
            client = cluster.client()
            vecs = common.load_flat_collection(client, NAME, rows, dim)
            stub = cluster.admin()

            # search latency with no move running
            searcher = Searcher(cluster.connect_kwargs(), vecs)
            searcher.start()
            time.sleep(baseline_s)
            searcher.stop.set()
            searcher.join()
            before = searcher.lat

            # add the spare, no client load
            spare = cluster.spare_nodes[0]
            t0 = time.time()
            stub.AddNode(admin_pb2.AddNodeRequest(address=spare.address, id="node-3"), timeout=120)
            add = wait_move(stub)
            add_wall = time.time() - t0

            # drain it again under load
            searcher = Searcher(cluster.connect_kwargs(), vecs)
            inserter = Inserter(cluster.connect_kwargs(), dim)
            searcher.start()
            inserter.start()
            time.sleep(2.0)
            n0 = len(searcher.lat)
            t0 = time.time()
            stub.DrainNode(admin_pb2.DrainNodeRequest(node_id="node-3"), timeout=120)
            drain = wait_move(stub)
            drain_wall = time.time() - t0
            during = searcher.lat[n0:]
            searcher.stop.set()
            inserter.stop.set()
            searcher.join()
            inserter.join()

            def move(st: admin_pb2.RebalanceStatusResponse, wall: float) -> dict:
                dur = st.finished_at - st.started_at
                return {"rows_moved": st.rows_moved, "rows_to_move": st.rows_to_move,
                        "seconds": round(dur, 2), "rows_per_s": round(st.rows_moved / dur, 1),
                        "client_wall_s": round(wall, 2)}

            return {
                "rows": rows, "dim": dim, "nodes": 3, "engine": engine,
                "add_without_load": move(add, add_wall) | {"moved_fraction": add.rows_moved / rows,
                                                              "ratio_to_ideal": add.rows_moved / rows * 4},
                "drain_with_load": move(drain, drain_wall) | {"rows_inserted_meanwhile": inserter.rows},
                "search_ms_before": {"p50": pct(before, 50), "p99": pct(before, 99), "n": len(before)},
                "search_ms_during_move": {"p50": pct(during, 50), "p99": pct(during, 99), "n": len(during)},
            }
        finally:
            cluster.stop()


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    mf = result["moved_fraction"]
    ns = [m["n"] for m in mf]
    ax = axes[0]
    ax.plot(ns, [m["ideal"] for m in mf], "k--", label="ideal 1/N")
    ax.plot(ns, [m["add_moved"] for m in mf], "o-", label="add node N")
    ax.plot(ns, [m["drain_moved"] for m in mf], "s-", label="drain one of N")
    ax.set_xlabel("N (nodes after add / before drain)")
    ax.set_ylabel("fraction of keys moved")
    ax.set_title("moved fraction vs ideal (ring, exact)")
    ax.legend()
    rc = result.get("cluster")
    if rc:
        ax = axes[1]
        labels = ["add, no load", "drain, with load"]
        vals = [rc["add_without_load"]["rows_per_s"], rc["drain_with_load"]["rows_per_s"]]
        ax.bar(labels, vals, color=["tab:blue", "tab:orange"])
        ax.set_ylabel("rows/s moved")
        ax.set_title(f"migration rate ({rc['rows']:,} rows, dim {rc['dim']})")
        ax = axes[2]
        x = np.arange(2)
        b, d = rc["search_ms_before"], rc["search_ms_during_move"]
        ax.bar(x - 0.2, [b["p50"], b["p99"]], 0.4, label="no move")
        ax.bar(x + 0.2, [d["p50"], d["p99"]], 0.4, label="during move (+ inserts)")
        ax.set_xticks(x, ["p50", "p99"])
        ax.set_ylabel("search latency (ms), nq=1 k=10")
        ax.set_title("search latency")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=30_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--baseline-s", type=float, default=15.0)
    ap.add_argument("--ring-only", action="store_true", help="only the moved-fraction part (fast, no servers)")
    ap.add_argument("--engine", default="milvus-lite", choices=common.ENGINES)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    result: dict = {"machine": common.machine(), "load_before": common.load(), "moved_fraction": moved_fractions()}
    if not args.ring_only:
        result["cluster"] = real_cluster(args.rows, args.dim, args.baseline_s, args.engine)
    result["load_after"] = common.load()
    common.write("rebalance", result, args.out)
    plot(result, args.out / "rebalance.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
