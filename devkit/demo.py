"""``make demo``: start an embedded cluster of real processes, load a sample catalog through the
proxy with an unmodified pymilvus client, run searches, print what was found, then print the
shopper's page address and keep everything running until Ctrl-C (``--exit``, or no terminal on
stdin as in CI: stop at the end).

When the image pipeline is installed (``embed``), the demo imports the Tux Paint product photos
and searches with photos made from them; the vector part below always runs first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient
from rich.console import Console
from rich.table import Table

from shardproxy import devprofile, logs
from devkit.devcluster import DevCluster

CATEGORIES = ["shoes", "bags", "shirts", "lamps", "mugs", "watches", "bikes", "toys"]


def vector_demo(client: MilvusClient, console: Console, rows: int = 20_000, dim: int = 256) -> None:
    name = "demo_products"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("category", DataType.VARCHAR, max_length=32)
    schema.add_field("price", DataType.DOUBLE)
    idx = client.prepare_index_params()
    idx.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 100})
    client.create_collection(name, schema=schema, index_params=idx)

    # A synthetic catalog with structure: each category is a cluster of vectors.
    rng = np.random.default_rng(42)
    centers = rng.standard_normal((len(CATEGORIES), dim)).astype(np.float32)
    cats = rng.integers(0, len(CATEGORIES), rows)
    vecs = centers[cats] + 0.6 * rng.standard_normal((rows, dim)).astype(np.float32)
    prices = np.round(rng.uniform(5, 500, rows), 2)
    t0 = time.perf_counter()
    with console.status(f"inserting {rows:,} product vectors through the proxy ..."):
        for s in range(0, rows, 5000):
            client.insert(name, [
                {"id": i, "vector": vecs[i].tolist(), "category": CATEGORIES[cats[i]], "price": float(prices[i])}
                for i in range(s, min(rows, s + 5000))
            ])
    console.print(f"inserted {rows:,} rows in {time.perf_counter() - t0:.1f}s "
                  f"(count(*) via proxy: {client.query(name, filter='', output_fields=['count(*)'])[0]['count(*)']:,})")

    for probe, flt in [(17, ""), (4242, 'category == "lamps" and price < 100')]:
        q = vecs[probe] + 0.05 * rng.standard_normal(dim).astype(np.float32)
        t1 = time.perf_counter()
        hits = client.search(name, [q.tolist()], limit=5, filter=flt, output_fields=["category", "price"])[0]
        ms = (time.perf_counter() - t1) * 1000
        table = Table(title=f"query ≈ product {probe} ({CATEGORIES[cats[probe]]})" + (f", filter {flt}" if flt else "") + f" — {ms:.0f} ms")
        for col in ("rank", "id", "category", "price", "cosine"):
            table.add_column(col, justify="right" if col != "category" else "left")
        for r, h in enumerate(hits, 1):
            table.add_row(str(r), str(h["id"]), h["entity"]["category"], f"{h['entity']['price']:.2f}", f"{h['distance']:.3f}")
        console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", type=Path, default=Path(".data/demo"))
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--no-images", action="store_true", help="skip the image part")
    ap.add_argument("--web-port", type=int, default=8080, help="the shopper's page (0 = a free port)")
    ap.add_argument("--exit", dest="wait", action="store_false", default=None,
                    help="stop the cluster at the end (default when stdin is not a terminal, e.g. CI)")
    ap.add_argument("--wait", dest="wait", action="store_true",
                    help="keep the cluster and the page running until Ctrl-C (default on a terminal)")
    args = ap.parse_args()
    if args.wait is None:
        args.wait = sys.stdin.isatty()
    logs.setup("WARNING")
    console = Console()

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)  # stop every child on SIGTERM too
    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    console.rule("[bold]shop-by-image demo: starting an embedded cluster (real processes)")
    cluster = DevCluster(data_dir=args.data_dir.resolve(), nodes=args.nodes, with_worker=not args.no_images,
                         metrics=True, web_port=args.web_port)
    with console.status("starting Redis, Milvus nodes and the proxy ..."):
        cluster.start()
    console.print(f"[green]ready[/green]: proxy {cluster.proxy_address}, {args.nodes} milvus-lite nodes, redis {cluster.redis_url}")
    kwargs = ", ".join(f"{k}={v!r}" for k, v in cluster.connect_kwargs().items()).replace("'", '"')
    console.print(f"  pymilvus: MilvusClient({kwargs}); another shell: export SHARDPROXY_TOKEN={cluster.token}",
                  soft_wrap=True, highlight=False)
    # recorded now, not at the end: while the catalog imports (minutes), `embed status` and the page's
    # import progress in another shell already find this cluster
    devprofile.write(devprofile.DevProfile(proxy=cluster.proxy_address, redis_url=cluster.redis_url, pid=os.getpid(),
                                           data_dir=str(cluster.data_dir), web=cluster.web_url,
                                           metrics=cluster.metrics_endpoints(), token=cluster.token))
    console.print(f"  the page (import progress live): {cluster.web_url}catalog")
    try:
        client = cluster.client()
        console.rule("[bold]1. vectors through pymilvus.MilvusClient pointed at the proxy")
        vector_demo(client, console, rows=args.rows)
        if not args.no_images:
            try:
                from embed.demo import run_demo  # type: ignore[import-not-found]
            except ImportError:
                run_demo = None
            if run_demo is not None:
                console.rule("[bold]2. shop by image: import product photos, search with shopper photos")
                run_demo(cluster.proxy_uri, cluster.redis_url, console, token=cluster.token)
        console.rule("[bold]cluster status")
        from shardproxy.cli import cluster_status

        cluster_status(proxy=cluster.proxy_address, as_json=False, token=cluster.token)
        client.close()
        console.rule("[bold]the shopper's page")
        console.print(f"open [bold]{cluster.web_url}[/bold] (catalog, imports and cluster: {cluster.web_url}catalog)")
        if args.wait:
            console.print("the cluster keeps running for `shardproxy` and `embed` commands; Ctrl-C stops it")
            try:
                cluster.wait_forever()
            except KeyboardInterrupt:
                console.print("stopping ...")
    finally:
        devprofile.remove(os.getpid())
        with console.status("stopping the cluster ..."):
            cluster.stop()
    console.print("[green]demo finished[/green]; data left in", str(args.data_dir))


if __name__ == "__main__":
    main()
