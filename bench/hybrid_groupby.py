"""Benchmark: hybrid search and grouping search through the proxy (3 milvus-lite nodes) vs pymilvus
straight to one milvus-lite node holding the same data, in the same run; plus the proxy's merge
CPU per query (merge every sub-request across shards + one rerank; the group-by reduce) against
the number of shards and k, measured on the pure reducers without servers.

Measures p50/p99 latency at nq=1 (the two targets interleaved query by query so load hits both
alike) and nq=100 throughput; records the machine's load average before and after. Writes
bench/out/hybrid_groupby.{json,png}.

    .venv/bin/python bench/hybrid_groupby.py                 # small default (20k rows, 64-d)
    .venv/bin/python bench/hybrid_groupby.py --rows 100000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker

from bench import common
from devkit import procs
from devkit.devcluster import DevCluster
from shardproxy import rerank as rr
from shardproxy.groupby import GHit, group_page, merged_hits
from shardproxy.merge import Hit, merge_hits

OUT = Path(__file__).resolve().parent / "out"
NAME = "bench_hybrid_groupby"


def create(client: MilvusClient, dim: int) -> None:
    if client.has_collection(NAME):
        client.drop_collection(NAME)
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("text", DataType.FLOAT_VECTOR, dim=dim)
    s.add_field("image", DataType.FLOAT_VECTOR, dim=dim)
    s.add_field("product", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("text", index_type="FLAT", metric_type="IP")
    idx.add_index("image", index_type="FLAT", metric_type="L2")
    client.create_collection(NAME, schema=s, index_params=idx, consistency_level="Strong")


def load(client: MilvusClient, text: np.ndarray, image: np.ndarray, batch: int) -> None:
    for start in range(0, len(text), batch):
        client.insert(NAME, [{"id": start + i, "text": t, "image": m, "product": (start + i) // 5}
                             for i, (t, m) in enumerate(zip(text[start:start + batch].tolist(),
                                                            image[start:start + batch].tolist()))])
    client.flush(NAME)


def hybrid(c: MilvusClient, qt: list, qi: list) -> object:
    reqs = [AnnSearchRequest(qt, "text", {"metric_type": "IP"}, limit=50),
            AnnSearchRequest(qi, "image", {"metric_type": "L2"}, limit=50)]
    return c.hybrid_search(NAME, reqs, RRFRanker(60), limit=10)


def grouping(c: MilvusClient, qt: list, qi: list) -> object:
    return c.search(NAME, qi, anns_field="image", limit=10, group_by_field="product", group_size=1)


WORKLOADS = {"hybrid_rrf": hybrid, "group_by": grouping}


def end_to_end(clients: dict[str, MilvusClient], qt: np.ndarray, qi: np.ndarray, queries: int, rounds: int) -> dict:
    out: dict = {}
    for wl, fn in WORKLOADS.items():
        lat: dict[str, list[float]] = {k: [] for k in clients}
        for c in clients.values():  # warm up
            fn(c, qt[:1].tolist(), qi[:1].tolist())
        for i in range(queries):
            for label, c in clients.items():
                t0 = time.perf_counter()
                fn(c, qt[i:i + 1].tolist(), qi[i:i + 1].tolist())
                lat[label].append(time.perf_counter() - t0)
        res: dict = {}
        for label, c in clients.items():
            t0 = time.perf_counter()
            for r in range(rounds):
                fn(c, qt[:100].tolist(), qi[:100].tolist())
            res[label] = {"p50_ms": float(np.percentile(lat[label], 50) * 1000),
                          "p99_ms": float(np.percentile(lat[label], 99) * 1000),
                          "nq100_qps": rounds * 100 / (time.perf_counter() - t0)}
        res["proxy_over_direct"] = {"p50": res["proxy"]["p50_ms"] / res["direct"]["p50_ms"],
                                    "nq100_qps": res["proxy"]["nq100_qps"] / res["direct"]["nq100_qps"]}
        print(wl, json.dumps(res))
        out[wl] = res
    return out


def merge_cpu(shards_list: list[int], ks: list[int], reps: int) -> dict:
    """CPU seconds per query of the proxy's reduce alone (no I/O): hybrid (two sub-requests of k
    hits per shard, merged, then RRF) and group-by (a window of 10k hits per shard, grouped)."""
    rng = np.random.default_rng(0)
    rrf = rr.make_ranker("rrf", {"k": 60})
    out: dict = {"hybrid_rrf": {}, "group_by": {}}
    for n in shards_list:
        for k in ks:
            subs = []
            for _ in range(2):
                per = []
                for s in range(n):
                    sc = np.sort(rng.random(k)).tolist()
                    per.append([Hit(int(s * 10_000_000 + rng.integers(0, 20_000)), x, s, i) for i, x in enumerate(sc)])
                subs.append(per)
            t0 = time.process_time()
            for _ in range(reps):
                lists = [[(h.pk, h.score) for h in merge_hits(per, "L2", 0, k)] for per in subs]
                rr.rerank(rrf, lists, ["L2", "L2"], 0, 10)
            out["hybrid_rrf"][f"{n}x{k}"] = (time.process_time() - t0) / reps
            win = 10 * k
            per_g = [[GHit(s * 10_000_000 + i, float(x), int(rng.integers(0, win // 3 + 1)), s, i)
                      for i, x in enumerate(np.sort(rng.random(win)))] for s in range(n)]
            t0 = time.process_time()
            for _ in range(reps):
                group_page(merged_hits(per_g, "L2"), 0, k, 1, False)
            out["group_by"][f"{n}x{k}"] = (time.process_time() - t0) / reps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=60, help="nq=1 queries per target for the latency")
    ap.add_argument("--rounds", type=int, default=3, help="nq=100 batches per target for the throughput")
    ap.add_argument("--merge-reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    text = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    image = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    qt = rng.standard_normal((max(100, args.queries), args.dim)).astype(np.float32)
    qi = rng.standard_normal((max(100, args.queries), args.dim)).astype(np.float32)
    results: dict = {"setup": {"rows": args.rows, "dim": args.dim, "nodes_behind_proxy": 3, "index": "FLAT",
                               "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                               "server": "milvus-lite 3.2.2 (one process per node)",
                               "hybrid": "2 sub-requests (IP text, L2 image), limit 50 each, RRF k=60, limit 10",
                               "group_by": "L2 image, group_by product (5 rows each), group_size 1, limit 10"},
                     "load_avg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-hg-") as tmp:
        cluster = DevCluster(data_dir=Path(tmp) / "cluster", nodes=3).start()
        direct = procs.start_milvus(Path(tmp) / "direct", name="direct")
        try:
            clients = {"direct": common.client(f"http://{direct.address}"), "proxy": common.client(**cluster.connect_kwargs())}
            for label, c in clients.items():
                create(c, args.dim)
                load(c, text, image, args.batch)
                print(f"loaded {label}")
            results["end_to_end"] = end_to_end(clients, qt, qi, args.queries, args.rounds)
            for c in clients.values():
                c.drop_collection(NAME)
                c.close()
        finally:
            direct.stop()
            cluster.stop()
    results["merge_cpu_s_per_query"] = merge_cpu([1, 3, 8, 16], [10, 100, 1000], args.merge_reps)
    results["load_avg_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hybrid_groupby.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "hybrid_groupby.png")
    print(f"wrote {args.out / 'hybrid_groupby.json'} and .png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e2e = results["end_to_end"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    wls = list(e2e)
    x = np.arange(len(wls))
    for i, (metric, title) in enumerate((("p50_ms", "p50 latency, nq=1 (ms)"), ("nq100_qps", "throughput, nq=100 (queries/s)"))):
        for j, label in enumerate(("direct", "proxy")):
            ax[i].bar(x + (j - 0.5) * 0.38, [e2e[w][label][metric] for w in wls], 0.38, label=label)
        ax[i].set_xticks(x, wls)
        ax[i].set_title(title)
        ax[i].legend()
    for wl, style in (("hybrid_rrf", "-o"), ("group_by", "--s")):
        data = results["merge_cpu_s_per_query"][wl]
        for k in sorted({int(key.split("x")[1]) for key in data}):
            pts = sorted((int(key.split("x")[0]), v * 1000) for key, v in data.items() if key.endswith(f"x{k}"))
            ax[2].plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{wl} k={k}")
    ax[2].set_xlabel("shards")
    ax[2].set_ylabel("merge CPU per query (ms)")
    ax[2].set_yscale("log")
    ax[2].set_title("proxy reduce CPU vs shards and k")
    ax[2].legend(fontsize=7)
    la, lb = results["load_avg_before"], results["load_avg_after"]
    fig.suptitle(f"hybrid + grouping search: proxy (3 milvus-lite nodes) vs one node, {results['setup']['rows']} rows; "
                 f"load avg before {la[0]:.1f}, after {lb[0]:.1f} on {results['setup']['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
