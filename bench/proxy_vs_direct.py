"""Benchmark: the proxy over 3 milvus-lite nodes vs pymilvus straight to one node holding everything.

Same run, same data (256-d float vectors), same client code. Measures insert throughput, search
latency (nq=1, k=10: p50/p99) and batch-search throughput (nq=100), for HNSW and IVF_FLAT, after
the nodes finished building their indexes; also recall@10 of both against numpy brute force, so
speed is never bought with lost results. Writes bench/out/proxy_vs_direct.{json,png}.

    .venv/bin/python bench/proxy_vs_direct.py            # 200k rows (the issue's setting)
    .venv/bin/python bench/proxy_vs_direct.py --rows 20000 --indexes HNSW   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient
from tqdm import tqdm

from shardproxy import procs
from shardproxy.devcluster import DevCluster

OUT = Path(__file__).resolve().parent / "out"


def create(client: MilvusClient, name: str, dim: int, index: str) -> None:
    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    idx = client.prepare_index_params()
    params = {"M": 16, "efConstruction": 100} if index == "HNSW" else {"nlist": 256}
    idx.add_index("vector", index_type=index, metric_type="L2", params=params)
    client.create_collection(name, schema=schema, index_params=idx)


def search_params(index: str) -> dict:
    return {"params": {"ef": 64}} if index == "HNSW" else {"params": {"nprobe": 16}}


def insert_all(client: MilvusClient, name: str, vecs: np.ndarray, batch: int, label: str) -> float:
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(vecs), batch), desc=f"insert {label}", leave=False):
        chunk = vecs[start : start + batch]
        client.insert(name, [{"id": start + i, "vector": v} for i, v in enumerate(chunk.tolist())])
    client.flush(name)
    return time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pids: list[int], window: float = 3.0, busy: float = 0.05, timeout: float = 1800) -> float:
    """Wait until the node processes are idle: milvus-lite compacts and builds indexes in a
    background thread after a flush, and its DescribeIndex always says "Finished", so CPU use is
    the honest signal that index building is over."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(window)
        if (sum(cpu_seconds(p) for p in pids) - before) / window < busy:
            break
    return time.perf_counter() - t0


def recall(client: MilvusClient, name: str, vecs: np.ndarray, queries: np.ndarray, index: str) -> float:
    res = client.search(name, queries.tolist(), limit=10, search_params=search_params(index))
    hits = 0
    for q, r in zip(queries, res):
        d = ((vecs - q) ** 2).sum(axis=1)
        truth = set(np.argpartition(d, 10)[:10].tolist())
        hits += len(truth & {h["id"] for h in r})
    return hits / (10 * len(queries))


def latency(clients: dict[str, MilvusClient], name: str, queries: np.ndarray, index: str) -> dict[str, list[float]]:
    """nq=1 k=10 latencies, the two targets interleaved query by query so load affects both alike."""
    out: dict[str, list[float]] = {k: [] for k in clients}
    sp = search_params(index)
    for q in tqdm(queries, desc="latency", leave=False):
        for label, c in clients.items():
            t0 = time.perf_counter()
            c.search(name, [q.tolist()], limit=10, search_params=sp)
            out[label].append(time.perf_counter() - t0)
    return out


def throughput(client: MilvusClient, name: str, queries: np.ndarray, index: str, rounds: int) -> float:
    sp = search_params(index)
    t0 = time.perf_counter()
    for i in range(rounds):
        client.search(name, queries[i % 2 :: 2][:100].tolist() if len(queries) > 100 else queries.tolist(), limit=10, search_params=sp)
    return rounds * 100 / (time.perf_counter() - t0)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--indexes", default="HNSW,IVF_FLAT")
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--throughput-rounds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    queries = (vecs[rng.choice(args.rows, 400, replace=False)] + 0.1 * rng.standard_normal((400, args.dim))).astype(np.float32)
    results: dict = {
        "setup": {
            "rows": args.rows, "dim": args.dim, "batch": args.batch, "nodes_behind_proxy": 3,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "metric": "L2",
            "server": "milvus-lite 3.2.2 (one process per node)",
        },
        "indexes": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        cluster = DevCluster(data_dir=Path(tmp) / "cluster", nodes=3).start()
        direct = procs.start_milvus(Path(tmp) / "direct", name="direct")
        try:
            pids = {"direct": [direct.pid], "proxy": [m.pid for m in cluster.milvus]}
            clients = {"direct": MilvusClient(uri=f"http://{direct.address}"), "proxy": cluster.client()}
            for index in args.indexes.split(","):
                name = f"bench_{index.lower()}"
                r: dict = {}
                for label, c in clients.items():
                    create(c, name, args.dim, index)
                    secs = insert_all(c, name, vecs, args.batch, f"{label} {index}")
                    build = wait_idle(pids[label])
                    r[label] = {"insert_rows_per_s": args.rows / secs, "insert_s": secs, "index_wait_s": build}
                    print(f"{index} {label}: insert {args.rows / secs:,.0f} rows/s, index wait {build:.1f}s")
                for label, c in clients.items():  # warm up
                    for q in queries[:20]:
                        c.search(name, [q.tolist()], limit=10, search_params=search_params(index))
                lat = latency(clients, name, queries[: args.latency_queries], index)
                for label, c in clients.items():
                    r[label]["search_p50_ms"] = pct(lat[label], 50)
                    r[label]["search_p99_ms"] = pct(lat[label], 99)
                    r[label]["search_mean_ms"] = statistics.fmean(lat[label]) * 1000
                    r[label]["batch_qps_nq100"] = throughput(c, name, queries, index, args.throughput_rounds)
                    r[label]["recall_at_10"] = recall(c, name, vecs, queries[:50], index)
                    print(f"{index} {label}: " + ", ".join(f"{k}={v:.3f}" for k, v in r[label].items()))
                r["ratios"] = {
                    "search_p50_proxy_over_direct": r["proxy"]["search_p50_ms"] / r["direct"]["search_p50_ms"],
                    "search_p99_proxy_over_direct": r["proxy"]["search_p99_ms"] / r["direct"]["search_p99_ms"],
                    "insert_throughput_proxy_over_direct": r["proxy"]["insert_rows_per_s"] / r["direct"]["insert_rows_per_s"],
                    "batch_search_throughput_proxy_over_direct": r["proxy"]["batch_qps_nq100"] / r["direct"]["batch_qps_nq100"],
                }
                print(f"{index} ratios: {r['ratios']}")
                results["indexes"][index] = r
                for c in clients.values():
                    c.drop_collection(name)
            for c in clients.values():
                c.close()
        finally:
            direct.stop()
            cluster.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "proxy_vs_direct.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "proxy_vs_direct.png")
    print(f"wrote {args.out / 'proxy_vs_direct.json'} and .png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = list(results["indexes"])
    metrics = [("insert_rows_per_s", "insert rows/s"), ("search_p50_ms", "search p50 ms (nq=1,k=10)"),
               ("search_p99_ms", "search p99 ms"), ("batch_qps_nq100", "queries/s at nq=100")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6))
    width = 0.38
    for ax, (key, title) in zip(axes, metrics):
        x = np.arange(len(idx))
        d = [results["indexes"][i]["direct"][key] for i in idx]
        p = [results["indexes"][i]["proxy"][key] for i in idx]
        ax.bar(x - width / 2, d, width, label="direct (1 node)")
        ax.bar(x + width / 2, p, width, label="proxy (3 nodes)")
        ax.set_xticks(x, idx)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=8)
    s = results["setup"]
    fig.suptitle(f"shardproxy vs direct milvus-lite: {s['rows']:,} rows, dim {s['dim']}, {s['machine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
