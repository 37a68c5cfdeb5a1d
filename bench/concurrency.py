"""Concurrency: search p50/p99 and QPS at 1, 4, 16, 64 concurrent clients through one proxy and
through two proxies (clients split between them) over 3 nodes, vs the same clients straight to one
node holding the same rows (the baseline, same run; the three targets are measured one after the
other at each client count, so load drifts hit all three alike). Errors are counted, not hidden:
the Mishards report that broke at 5 client threads is the anchor. Each client is a thread with its
own pymilvus client on its own gRPC channel (nq=1, k=10). Writes bench/results/concurrency.{json,png}.

    .venv/bin/python bench/concurrency.py [--rows 50000] [--clients 1,4,16,64] [--seconds 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]


from bench import common  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402

NAME = "bench_concurrency"


def run_point(uris: list[dict], clients: int, seconds: float, queries: np.ndarray, index: str,
              proxy_pids: list[int]) -> dict:
    """``clients`` threads searching for ``seconds``; thread i talks to ``uris[i % len(uris)]``."""
    sp = common.search_params(index)
    # dedicated: each client its own gRPC channel and TCP connection, like separate client processes
    # (pymilvus 3 otherwise shares one channel per URI, and gRPC one subchannel per target)
    conns = [common.client(**uris[i % len(uris)], dedicated=True) for i in range(clients)]
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def work(i: int) -> None:
        rng = np.random.default_rng(i)
        start.wait()
        while not stop.is_set():
            q = queries[rng.integers(len(queries))]
            t0 = time.perf_counter()
            try:
                conns[i].search(NAME, [q.tolist()], limit=10, search_params=sp)
                lat[i].append(time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - counted: a failed search is a result here
                errors[i] += 1

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    cpu0 = sum(common.cpu_seconds(p) for p in proxy_pids)
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    flat = [x for xs in lat for x in xs]
    proxy_cpu = sum(common.cpu_seconds(p) for p in proxy_pids) - cpu0
    return {"proxy_cpu_ms_per_search": proxy_cpu / len(flat) * 1000 if proxy_pids and flat else None,
            "clients": clients, "qps": len(flat) / wall, "p50_ms": common.pct(flat, 50), "p99_ms": common.pct(flat, 99),
            "searches": len(flat), "errors": sum(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--index", default="HNSW")
    ap.add_argument("--engine", default="milvus-lite")
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    queries = (vecs[rng.choice(args.rows, 200, replace=False)] + 0.1 * rng.standard_normal((200, args.dim))).astype(np.float32)
    res: dict = {"machine": common.machine(), "load_before": common.load(),
                 "setup": {"rows": args.rows, "dim": args.dim, "index": args.index, "engine": args.engine, "nodes": 3,
                           "seconds_per_point": args.seconds, "nq": 1, "k": 10}, "points": []}
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as tmp:
        cluster = DevCluster(data_dir=Path(tmp) / "c", nodes=3, proxies=2, engine=args.engine, proxy_env=common.BENCH_PROXY_ENV).start()
        direct = common.start_node(args.engine, Path(tmp) / "direct" / "data", "direct")
        try:
            targets = {
                "direct": [{"uri": f"http://{direct.address}"}],
                "1 proxy": [cluster.connect_kwargs()],
                "2 proxies": [cluster.connect_kwargs(), {**cluster.connect_kwargs(), "uri": f"http://{cluster.more_proxies[0].address}"}],
            }
            proxy_pids = {"direct": [], "1 proxy": [cluster.proxy.pid],
                          "2 proxies": [cluster.proxy.pid, cluster.more_proxies[0].pid]}
            for label, uri in (("direct", targets["direct"][0]), ("proxy", targets["1 proxy"][0])):
                c = common.client(**uri)
                common.create_collection(c, NAME, args.dim, args.index)
                common.insert_all(c, NAME, vecs, 5000, label)
                c.close()
            common.await_index(args.engine, [f"http://{direct.address}"] + [f"http://{m.address}" for m in cluster.milvus],
                               [direct.pid] + [m.pid for m in cluster.milvus], NAME)
            for n in (int(x) for x in args.clients.split(",")):
                base = None
                for label, uris in targets.items():
                    load0 = common.load()
                    p = run_point(uris, n, args.seconds, queries, args.index, proxy_pids[label])
                    p |= {"target": label, "proxies": 0 if label == "direct" else len(uris), "load_before": load0,
                          "load_after": common.load()}
                    if label == "direct":
                        base = p
                    p["qps_ratio_to_direct"] = p["qps"] / base["qps"] if base and base["qps"] else float("nan")
                    p["p99_ratio_to_direct"] = p["p99_ms"] / base["p99_ms"] if base else float("nan")
                    res["points"].append(p)
                    print(f"{n:3d} clients, {label:9s}: {p['qps']:7.1f} QPS, p50 {p['p50_ms']:7.1f} ms, p99 {p['p99_ms']:7.1f} ms, "
                          f"errors {p['errors']} ({p['qps_ratio_to_direct']:.2f}x direct QPS)", flush=True)
        finally:
            direct.stop(timeout=30)
            cluster.stop()
    res["load_after"] = common.load()
    common.write("concurrency", res, args.out)
    plt = common.plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label in ("direct", "1 proxy", "2 proxies"):
        pts = [p for p in res["points"] if p["target"] == label]
        a1.plot([p["clients"] for p in pts], [p["qps"] for p in pts], "o-", label=label)
        a2.plot([p["clients"] for p in pts], [p["p99_ms"] for p in pts], "o-", label=label)
    for ax, yl in ((a1, "QPS (nq=1, k=10)"), (a2, "p99 ms")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(yl)
        ax.legend()
    common.save_figure(fig, args.out / "concurrency.png", f"{args.rows:,} rows, {args.index}, {args.engine}, 3 nodes", res)
    print(f"wrote {args.out / 'concurrency.json'}")


if __name__ == "__main__":
    main()
