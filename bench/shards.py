"""Search latency and recall@10 vs the number of shards at equal total data.

The same rows (256-d) go into a cluster of S nodes behind the proxy, S = 1, 2, 4, 8 (one cluster
after the other), and once into a direct node (the baseline, measured in the same run and
interleaved query by query with every cluster). Recall@10 is against exact search (numpy brute
force, which is what FLAT returns). With an ANN index each shard searches its own graph/lists, so
recall can change with S; with FLAT it must stay 1.0. Writes bench/results/shards.{json,png}.

    .venv/bin/python bench/shards.py [--rows 100000] [--shards 1,2,4,8] [--index HNSW] [--engine milvus-lite]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]


from bench import common  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402

NAME = "bench_shards"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shards", default="1,2,4,8")
    ap.add_argument("--index", default="HNSW")
    ap.add_argument("--engine", default="milvus-lite")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    queries = (vecs[rng.choice(args.rows, args.queries, replace=False)]
               + 0.1 * rng.standard_normal((args.queries, args.dim))).astype(np.float32)
    truth = common.exact_top10(vecs, queries[:50])
    sp = common.search_params(args.index)
    res: dict = {"machine": common.machine(), "load_before": common.load(),
                 "setup": {"rows": args.rows, "dim": args.dim, "index": args.index, "engine": args.engine, "k": 10,
                           "queries": args.queries}, "points": []}
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        direct = common.start_node(args.engine, Path(tmp) / "direct" / "data", "direct")
        dc = common.client(f"http://{direct.address}")
        try:
            common.load_indexed(dc, NAME, vecs, args.index, args.engine, [f"http://{direct.address}"], [direct.pid], "direct")
            direct_recall = common.recall_at_10(dc, NAME, queries[:50], truth, args.index)
            for s in (int(x) for x in args.shards.split(",")):
                cluster = DevCluster(data_dir=Path(tmp) / f"c{s}", nodes=s, engine=args.engine, proxy_env=common.BENCH_PROXY_ENV).start()
                try:
                    pc = common.client(**cluster.connect_kwargs())
                    common.load_indexed(pc, NAME, vecs, args.index, args.engine, [f"http://{m.address}" for m in cluster.milvus],
                                        [m.pid for m in cluster.milvus], f"{s} shards")
                    load0 = common.load()
                    for q in queries[:10]:
                        pc.search(NAME, [q.tolist()], limit=10, search_params=sp)
                        dc.search(NAME, [q.tolist()], limit=10, search_params=sp)
                    calls = {label: (lambda q, c=c: c.search(NAME, [q.tolist()], limit=10, search_params=sp))
                             for label, c in (("proxy", pc), ("direct", dc))}
                    lat = common.interleaved_latency(calls, queries)  # interleaved: load hits both alike
                    px, dr = common.latency_summary(lat["proxy"]), common.latency_summary(lat["direct"])
                    p = {"shards": s, "proxy_p50_ms": px["search_p50_ms"], "proxy_p99_ms": px["search_p99_ms"],
                         "proxy_mean_ms": px["search_mean_ms"],
                         "direct_p50_ms": dr["search_p50_ms"], "direct_p99_ms": dr["search_p99_ms"],
                         "recall_at_10": common.recall_at_10(pc, NAME, queries[:50], truth, args.index), "direct_recall_at_10": direct_recall,
                         "load_before": load0, "load_after": common.load()}
                    p["p50_ratio_to_direct"] = p["proxy_p50_ms"] / p["direct_p50_ms"]
                    p["p99_ratio_to_direct"] = p["proxy_p99_ms"] / p["direct_p99_ms"]
                    res["points"].append(p)
                    print(f"{s} shards: p50 {p['proxy_p50_ms']:.1f} ms ({p['p50_ratio_to_direct']:.2f}x direct), "
                          f"recall@10 {p['recall_at_10']:.3f} (direct {direct_recall:.3f})", flush=True)
                    pc.close()
                finally:
                    cluster.stop()
            dc.close()
        finally:
            direct.stop(timeout=30)
    res["load_after"] = common.load()
    common.write("shards", res, args.out)
    plt = common.plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [p["shards"] for p in res["points"]]
    a1.plot(xs, [p["p50_ratio_to_direct"] for p in res["points"]], "o-", label="p50")
    a1.plot(xs, [p["p99_ratio_to_direct"] for p in res["points"]], "s-", label="p99")
    a1.axhline(1.0, color="k", lw=0.8)
    a1.set_xlabel("shards (nodes behind the proxy)")
    a1.set_ylabel("latency / direct 1 node (same run)")
    a1.legend()
    a2.plot(xs, [p["recall_at_10"] for p in res["points"]], "o-", label="proxy")
    a2.axhline(res["points"][0]["direct_recall_at_10"] if res["points"] else 0, color="k", lw=0.8, label="direct")
    a2.set_xlabel("shards")
    a2.set_ylabel("recall@10 vs exact")
    a2.legend()
    common.save_figure(fig, args.out / "shards.png", f"{args.rows:,} rows total, {args.index}, {args.engine}", res)
    print(f"wrote {args.out / 'shards.json'}")


if __name__ == "__main__":
    main()
