"""Benchmark of verify and repair. Writes bench/out/verify_repair.{json,png}.

On a real cluster (3 milvus-lite nodes, R = 2, one proxy, valkey), same run:

* verify rate: rows read and compared per second (all copies, unthrottled);
* repair rate: damage a share of the rows on one replica (deleted there), then rows repaired
  per second (verify + copy);
* search p50/p99 (nq=1, k=10, through the proxy) idle vs while a repair pass runs;
* machine load (1-minute load average) before and after.

    .venv/bin/python bench/verify_repair.py               # 5000 rows, dim 32
    .venv/bin/python bench/verify_repair.py --rows 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

from bench import common
from devkit.devcluster import DevCluster
from shardproxy.metastore import MetaStore
from shardproxy.repair import verify_and_repair
from shardproxy.verifyscan import ScanOptions, Scanner

OUT = Path(__file__).resolve().parent / "out"
COLL = "bench_verify"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


class Searcher(threading.Thread):
    def __init__(self, client: MilvusClient, vecs: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.client, self.vecs = client, vecs
        self.lat: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(3)
        while not self.stop.is_set():
            q = self.vecs[rng.integers(len(self.vecs))]
            t0 = time.perf_counter()
            self.client.search(COLL, data=[q.tolist()], limit=10, anns_field="vec")
            self.lat.append(time.perf_counter() - t0)


def measure_search(client: MilvusClient, vecs: np.ndarray, seconds: float) -> list[float]:
    s = Searcher(client, vecs)
    s.start()
    time.sleep(seconds)
    s.stop.set()
    s.join(60)
    return s.lat


async def verify_once(redis_url: str) -> tuple[float, int]:
    store = MetaStore(redis_url)
    scanner = Scanner(store)
    try:
        t0 = time.perf_counter()
        reports = await scanner.run()
        el = time.perf_counter() - t0
        return el, sum(sum(t.rows for t in r.nodes.values()) for r in reports)
    finally:
        await scanner.close()
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--damage", type=float, default=0.1, help="share of rows deleted on one replica")
    ap.add_argument("--idle-s", type=float, default=10.0)
    args = ap.parse_args()
    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "loadavg_before": os.getloadavg()[0]},
                    "rows": args.rows, "dim": args.dim, "replicas": 2}
    with tempfile.TemporaryDirectory() as tmp:
        c = DevCluster(data_dir=Path(tmp) / "c", nodes=3, replicas=2, proxy_env={"SHARDPROXY_REPAIR_INTERVAL_S": "0"})
        c.start()
        try:
            client = c.client()
            schema = client.create_schema(auto_id=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vec", DataType.FLOAT_VECTOR, dim=args.dim)
            idx = client.prepare_index_params()
            idx.add_index("vec", index_type="FLAT", metric_type="L2")
            client.create_collection(COLL, schema=schema, index_params=idx)
            vecs = np.random.default_rng(1).random((args.rows, args.dim), dtype=np.float32)
            for i in range(0, args.rows, 2000):
                client.insert(COLL, [{"id": j, "vec": vecs[j].tolist()} for j in range(i, min(args.rows, i + 2000))])
            el, copies = asyncio.run(verify_once(c.redis_url))
            result["verify"] = {"seconds": el, "rows_read": copies, "rows_per_s": copies / el}
            # damage: delete a share of the keys on node-0 only (its other replica keeps them)
            victim = common.client(f"http://{c.milvus[0].address}")
            lost = list(range(0, args.rows, max(1, int(1 / args.damage))))
            victim.delete(COLL, ids=lost)
            idle = measure_search(client, vecs, args.idle_s)
            during: list[float] = []
            s = Searcher(client, vecs)
            s.start()
            t0 = time.perf_counter()
            fixed = asyncio.run(verify_and_repair(c.redis_url, "shardproxy", None, "", False, ScanOptions()))
            rep_s = time.perf_counter() - t0
            s.stop.set()
            s.join(60)
            during = s.lat
            copied = sum(r.copied + r.reconverged for _, r in fixed)
            result["repair"] = {"seconds": rep_s, "rows_repaired": copied, "rows_scanned": copies,
                                "repaired_rows_per_s": copied / rep_s, "scanned_rows_per_s": copies / rep_s}
            result["search_ms"] = {"idle": {"p50": pct(idle, 50), "p99": pct(idle, 99), "n": len(idle)},
                                   "during_repair": {"p50": pct(during, 50), "p99": pct(during, 99), "n": len(during)}}
            el2, _ = asyncio.run(verify_once(c.redis_url))
            result["verify_after_repair_s"] = el2
        finally:
            c.stop()
    result["machine"]["loadavg_after"] = os.getloadavg()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "verify_repair.json").write_text(json.dumps(result, indent=2))
    plot(result, OUT / "verify_repair.png")
    print(json.dumps(result, indent=2))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.bar(["verify (read)", "repair (scanned)", "repair (fixed)"],
          [result["verify"]["rows_per_s"], result["repair"]["scanned_rows_per_s"], result["repair"]["repaired_rows_per_s"]])
    a.set_ylabel("rows/s")
    a.set_title(f"{result['rows']} rows, R=2, 3 nodes")
    s = result["search_ms"]
    x = np.arange(2)
    b.bar(x - 0.2, [s["idle"]["p50"], s["during_repair"]["p50"]], 0.4, label="p50")
    b.bar(x + 0.2, [s["idle"]["p99"], s["during_repair"]["p99"]], 0.4, label="p99")
    b.set_xticks(x, ["idle", "during repair"])
    b.set_ylabel("search ms (nq=1, k=10)")
    b.legend()
    fig.suptitle(f"load avg {result['machine']['loadavg_before']:.1f} -> {result['machine']['loadavg_after']:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
