"""Benchmark: what ``order_by_fields`` costs through the proxy (3 milvus-lite nodes). A query with
order_by reads the key column of every row matching its filter from each node (the nodes do not
sort), so its cost grows with the filter's selectivity; a search with order_by only re-sorts its
page. Baselines in the same run: the same query / search without order_by through the proxy, and
straight to one milvus-lite node with the same data (which ignores order_by: its time is the floor).

Queries are interleaved target by target so machine load hits all alike; the load average is
recorded before and after. Writes bench/out/orderby.{json,png}.

    .venv/bin/python bench/orderby.py                  # 12k rows, 16-d, 20 queries per point
    .venv/bin/python bench/orderby.py --rows 30000 --queries 40
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench import common  # noqa: E402
from bench.common import BENCH_PROXY_ENV, machine, pct, plt  # noqa: E402
from bench.common import load as machine_load  # noqa: E402
from devkit import procs  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
NAME = "bench_orderby"
SELECTIVITY = (0.05, 0.25, 1.0)


def create(client: MilvusClient, dim: int, rows: int) -> None:
    if client.has_collection(NAME):
        client.drop_collection(NAME)
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("v", DataType.FLOAT_VECTOR, dim=dim)
    s.add_field("price", DataType.DOUBLE)
    s.add_field("bucket", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection(NAME, schema=s, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(1)
    vec = rng.standard_normal((rows, dim)).astype(np.float32)
    for start in range(0, rows, 2000):
        client.insert(NAME, [{"id": i, "v": vec[i].tolist(), "price": float(rng.integers(0, 1000)), "bucket": i % 100}
                             for i in range(start, min(rows, start + 2000))])
    client.flush(NAME)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=12000)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--queries", type=int, default=20)
    args = ap.parse_args()
    before = machine_load()
    data = Path(tempfile.mkdtemp(prefix="bench-orderby-"))
    cluster = DevCluster(data_dir=data / "cluster", nodes=3,
                         proxy_env={**BENCH_PROXY_ENV, "SHARDPROXY_ORDER_BY_MAX_ROWS": str(args.rows)})
    direct_node = procs.start_milvus(data / "direct", name="bench-direct")
    try:
        cluster.start()
        clients = {"proxy": common.client(**cluster.connect_kwargs()), "direct": common.client(f"http://{direct_node.address}")}
        for c in clients.values():
            create(c, args.dim, args.rows)
        rng = np.random.default_rng(2)
        qv = rng.standard_normal((args.queries, args.dim)).astype(np.float32).tolist()
        cases = {}
        for sel in SELECTIVITY:
            flt = f"bucket < {int(sel * 100)}"
            cases[f"query sel={sel}"] = (lambda c, i, f=flt: c.query(NAME, filter=f, limit=10, output_fields=["price"]),
                                         lambda c, i, f=flt: c.query(NAME, filter=f, limit=10, output_fields=["price"],
                                                                     order_by_fields="price:desc"))
        cases["search k=10"] = (lambda c, i: c.search(NAME, [qv[i]], limit=10, output_fields=["price"]),
                                lambda c, i: c.search(NAME, [qv[i]], limit=10, output_fields=["price"],
                                                      order_by_fields="price:desc"))
        results: dict = {}
        for name, (plain, ordered) in cases.items():
            lat: dict[str, list[float]] = {"proxy plain": [], "proxy order_by": [], "direct plain": []}
            for i in range(args.queries):
                for label, c, fn in (("proxy plain", clients["proxy"], plain), ("proxy order_by", clients["proxy"], ordered),
                                     ("direct plain", clients["direct"], plain)):
                    t0 = time.perf_counter()
                    fn(c, i)
                    lat[label].append(time.perf_counter() - t0)
            results[name] = {k: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99)} for k, v in lat.items()}
            print(name, json.dumps(results[name]))
        for c in clients.values():
            c.close()
    finally:
        cluster.stop()
        direct_node.stop()
    out = {"rows": args.rows, "dim": args.dim, "queries": args.queries, "nodes": 3, "results": results,
           "machine": machine(), "load_before": before, "load_after": machine_load(), "pid": os.getpid()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "orderby.json").write_text(json.dumps(out, indent=2, default=float))
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(8, 4))
    names = list(results)
    labels = ["direct plain", "proxy plain", "proxy order_by"]
    for j, label in enumerate(labels):
        ax.bar([i + j * 0.27 for i in range(len(names))], [results[n][label]["p50_ms"] for n in names], 0.27, label=label)
    ax.set_xticks([i + 0.27 for i in range(len(names))], names)
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title(f"order_by through the proxy, {args.rows} rows, 3 nodes (load {before['loadavg'][0]:.1f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "orderby.png")
    print("wrote", OUT / "orderby.json", OUT / "orderby.png")


if __name__ == "__main__":
    main()
