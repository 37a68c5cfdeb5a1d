"""Benchmark: what authentication (+ TLS) costs at the proxy.

One cluster (2 milvus-lite nodes, one Redis), three proxies on it at once: ``off`` (auth off,
plaintext), ``auth`` (token checked, RBAC decided, plaintext) and ``auth+tls`` (token + TLS).
The same client code goes through each: insert throughput (batches alternated between the
proxies, each into its own collection of the same shape) and search latency (nq=1, k=10, the
three targets interleaved query by query so machine load hits them alike). Records machine load
(load average before/after, cores). Writes bench/out/auth_overhead.{json,png}.

    .venv/bin/python bench/auth_overhead.py                  # ~3 minutes
    .venv/bin/python bench/auth_overhead.py --rows 5000      # quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench import common  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
VARIANTS = ("off", "auth", "auth+tls")


def start_proxies(cluster: DevCluster) -> dict[str, dict]:
    """The cluster's own proxy is ``auth+tls``; two more proxies join the same Redis."""
    conns = {"auth+tls": cluster.connect_kwargs()}
    token = cluster.token
    cluster.tls = False
    auth = cluster._spawn_proxy(None, "proxy-auth")
    cluster.more_proxies.append(auth)
    cluster.wait_serving(auth)
    cluster.auth = False
    off = cluster._spawn_proxy(None, "proxy-off")
    cluster.more_proxies.append(off)
    cluster.wait_serving(off)
    cluster.auth, cluster.tls = True, True
    conns["auth"] = {"uri": f"http://{auth.address}", "token": token}
    conns["off"] = {"uri": f"http://{off.address}"}
    return conns


def retrying(fn, errors: list[str], attempts: int = 5):  # type: ignore[no-untyped-def]
    """On an overloaded machine a health check may mark a node down for a moment: retry, and
    record it (the JSON keeps the count; a retried call's time includes the wait)."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            errors.append(str(exc)[:200])
            if i == attempts - 1:
                raise
            time.sleep(1.0)
    return None


def rotated(n: int) -> tuple[str, ...]:
    k = n % len(VARIANTS)
    return VARIANTS[k:] + VARIANTS[:k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000, help="rows inserted through each proxy")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    queries = vecs[rng.choice(args.rows, args.queries)] + 0.05 * rng.standard_normal((args.queries, args.dim))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        cluster = DevCluster(data_dir=Path(tmp) / "cluster", nodes=2, tls=True,
                             proxy_env={"SHARDPROXY_HEALTH_INTERVAL_S": "5"}).start()
        try:
            conns = start_proxies(cluster)
            clients = {v: common.client(**conns[v], dedicated=True) for v in VARIANTS}
            names = {v: f"bench_auth_{i}" for i, v in enumerate(VARIANTS)}
            for v in VARIANTS:
                # FLAT: the nodes stay responsive (a 2-core machine building HNSW starves the health checks)
                common.create_collection(clients[v], names[v], args.dim, "FLAT", consistency_level="Strong")
            insert_s = dict.fromkeys(VARIANTS, 0.0)
            errors: list[str] = []
            for n, start in enumerate(range(0, args.rows, args.batch)):  # batches alternate between the proxies
                chunk = [{"id": start + i, "vector": x} for i, x in enumerate(vecs[start:start + args.batch].tolist())]
                for v in rotated(n):
                    t0 = time.perf_counter()
                    retrying(lambda: clients[v].insert(names[v], chunk), errors)
                    insert_s[v] += time.perf_counter() - t0
            for v in VARIANTS:
                clients[v].flush(names[v])
            for v in VARIANTS:  # warm up (caches: token verification, connections)
                for q in queries[:20]:
                    retrying(lambda: clients[v].search(names[v], [q.tolist()], limit=10), errors)
            calls = {v: (lambda q, v=v: retrying(lambda: clients[v].search(names[v], [q.tolist()], limit=10), errors))
                     for v in VARIANTS}
            lat = common.interleaved_latency(calls, queries, rotate=True)  # who goes first changes every round
            for c in clients.values():
                c.close()
        finally:
            cluster.stop()
    res = {v: {"insert_rows_per_s": args.rows / insert_s[v]} | common.latency_summary(lat[v]) for v in VARIANTS}
    results = {
        "setup": {"rows_per_proxy": args.rows, "dim": args.dim, "batch": args.batch, "queries": args.queries,
                  "nodes": 2, "index": "FLAT", "server": "milvus-lite 3.2.2", "retried_calls": len(errors),
                  "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                  "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "results": res,
        "overhead": {
            "search_p50_auth_tls_over_off": res["auth+tls"]["search_p50_ms"] / res["off"]["search_p50_ms"],
            "search_p50_auth_over_off": res["auth"]["search_p50_ms"] / res["off"]["search_p50_ms"],
            "insert_auth_tls_over_off": res["auth+tls"]["insert_rows_per_s"] / res["off"]["insert_rows_per_s"],
            "insert_auth_over_off": res["auth"]["insert_rows_per_s"] / res["off"]["insert_rows_per_s"],
        },
    }
    print(json.dumps(results, indent=2))
    common.write("auth_overhead", results, args.out)
    plot(results, args.out / "auth_overhead.png")
    print(f"wrote {args.out / 'auth_overhead.json'} and .png")


def plot(results: dict, path: Path) -> None:
    plt = common.plt()
    metrics = [("insert_rows_per_s", "insert rows/s"), ("search_p50_ms", "search p50 ms (nq=1, k=10)"),
               ("search_p99_ms", "search p99 ms")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4))
    for ax, (key, title) in zip(axes, metrics):
        vals = [results["results"][v][key] for v in VARIANTS]
        ax.bar(VARIANTS, vals, color=["#999999", "#4c72b0", "#dd8452"])
        ax.set_title(title, fontsize=9)
    s = results["setup"]
    fig.suptitle(f"auth/TLS overhead at the proxy: {s['rows_per_proxy']:,} rows, dim {s['dim']}, {s['machine']}, "
                 f"load {s['loadavg_before'][0]:.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
