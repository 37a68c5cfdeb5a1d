"""Benchmark: the proxy over 3 Milvus nodes vs pymilvus straight to one node holding everything.

Same run, same data (256-d float vectors), same client code, on milvus-lite and on real Milvus
standalone nodes (PyPI's ``milvus`` package; skipped with a note when it is not installed).
Measures insert throughput, search latency (nq=1, k=10: p50/p99, the two targets interleaved query
by query) and batch-search throughput (nq=100), for FLAT, HNSW and IVF_FLAT, at growing sizes (rows
are added to the same collection, so 300k reuses the first 100k), after every node finished building
its index (see ``bench.common.await_index``); also recall@10 against numpy brute force, and the
resident memory of the direct node and of the three nodes (the capacity model's memory constants).
Writes bench/results/proxy_vs_direct.{json,png}.

    .venv/bin/python bench/proxy_vs_direct.py                                  # 100k, 300k rows
    .venv/bin/python bench/proxy_vs_direct.py --sizes 20000 --indexes HNSW --engines milvus-lite
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from pymilvus import MilvusClient
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench import common  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402

OUT = common.RESULTS


def latency(clients: dict[str, MilvusClient], name: str, queries: np.ndarray, index: str,
            fanout: Callable[[np.ndarray], object] | None = None) -> dict[str, list[float]]:
    """nq=1 k=10 latencies, the targets interleaved query by query so load affects them alike;
    ``fanout``: a third target, the same search sent by the client straight to every node behind
    the proxy at once (the floor a zero-cost proxy would reach on this machine)."""
    sp = common.search_params(index)
    calls = {label: (lambda q, c=c: c.search(name, [q.tolist()], limit=10, search_params=sp)) for label, c in clients.items()}
    if fanout is not None:
        calls["fanout"] = fanout
    return common.interleaved_latency(calls, tqdm(queries, desc="latency", leave=False))


def node_fanout(nodes: list[MilvusClient], pool: ThreadPoolExecutor, name: str, index: str) -> Callable[[np.ndarray], object]:
    """A search of every node at once from client threads, answers merged by score (no proxy)."""
    sp = common.search_params(index)

    def search(q: np.ndarray) -> object:
        futs = [pool.submit(c.search, name, [q.tolist()], limit=10, search_params=sp) for c in nodes]
        return sorted((h["distance"], h["id"]) for f in futs for h in f.result()[0])[:10]

    return search


def throughput(client: MilvusClient, name: str, queries: np.ndarray, index: str, rounds: int) -> float:
    sp = common.search_params(index)
    t0 = time.perf_counter()
    for i in range(rounds):
        client.search(name, queries[i % 2 :: 2][:100].tolist() if len(queries) > 100 else queries.tolist(), limit=10, search_params=sp)
    return rounds * 100 / (time.perf_counter() - t0)


def measure(clients: dict[str, MilvusClient], name: str, vecs: np.ndarray, queries: np.ndarray, index: str,
            args: argparse.Namespace, leaders: dict[str, list[int]], proxy_pid: int,
            fanout: Callable[[np.ndarray], object]) -> dict:
    r: dict = {label: {} for label in clients}
    truth = common.exact_top10(vecs, queries[: args.recall_queries])
    for label, c in clients.items():  # warm up
        for q in queries[:10]:
            c.search(name, [q.tolist()], limit=10, search_params=common.search_params(index))
    for q in queries[:10]:
        fanout(q)
    cpu0 = {label: sum(common.cpu_seconds(p) for p in leaders[label]) for label in clients} | {"proxy_process": common.cpu_seconds(proxy_pid)}
    nq1 = queries[: args.latency_queries]
    lat = latency(clients, name, nq1, index, fanout)
    for label in clients:
        r[label] |= common.latency_summary(lat[label])
    r["fanout"] = common.latency_summary(lat["fanout"])
    # CPU per nq=1 search: the direct node's; the 3 nodes' (they served the proxy's and the fan-out's
    # searches alike, so per search = their CPU / 2n); the proxy process's (only the proxy's searches)
    r["direct"]["node_cpu_ms_per_search_nq1"] = (sum(common.cpu_seconds(p) for p in leaders["direct"]) - cpu0["direct"]) / len(nq1) * 1000
    r["proxy"]["node_cpu_ms_per_search_nq1"] = (sum(common.cpu_seconds(p) for p in leaders["proxy"]) - cpu0["proxy"]) / (2 * len(nq1)) * 1000
    r["proxy"]["proxy_cpu_ms_per_search_nq1"] = (common.cpu_seconds(proxy_pid) - cpu0["proxy_process"]) / len(nq1) * 1000
    for label, c in clients.items():
        # CPU the servers spent per query (robust to other load on a shared machine, unlike QPS)
        nodes0, proxy0 = sum(common.cpu_seconds(p) for p in leaders[label]), common.cpu_seconds(proxy_pid)
        r[label]["batch_qps_nq100"] = throughput(c, name, queries, index, args.throughput_rounds)
        done = args.throughput_rounds * 100
        r[label]["node_cpu_ms_per_query_nq100"] = (sum(common.cpu_seconds(p) for p in leaders[label]) - nodes0) / done * 1000
        if label == "proxy":
            r[label]["proxy_cpu_ms_per_query_nq100"] = (common.cpu_seconds(proxy_pid) - proxy0) / done * 1000
        r[label]["recall_at_10"] = common.recall_at_10(c, name, queries[: args.recall_queries], truth, index)
    return r


def run_engine(engine: str, vecs: np.ndarray, queries: np.ndarray, sizes: list[int], args: argparse.Namespace,
               tmp: Path, runs: list[dict], save: Callable[[], object] = lambda: None,
               skipped: list[str] | None = None) -> list[dict]:
    """Measure one engine; every finished (index, size) is appended to ``runs`` at once, every
    (index, size) left out is said in ``skipped``."""
    skipped = skipped if skipped is not None else []
    cluster = DevCluster(data_dir=tmp / f"cluster-{engine}", nodes=3, engine=engine, proxy_env=common.BENCH_PROXY_ENV).start()
    direct = common.start_node(engine, tmp / f"direct-{engine}" / "data", "direct")
    try:
        leaders = {"direct": [direct.pid], "proxy": [m.pid for m in cluster.milvus]}
        uris = {"direct": [f"http://{direct.address}"], "proxy": [f"http://{m.address}" for m in cluster.milvus]}
        clients = {"direct": common.client(f"http://{direct.address}"), "proxy": common.client(**cluster.connect_kwargs())}
        nodes = [common.client(u) for u in uris["proxy"]]
        pool = ThreadPoolExecutor(len(nodes))
        for index in args.indexes.split(","):
            name = f"bench_{index.lower()}"
            base = {label: sum(common.rss_bytes(p) for p in leaders[label]) for label in clients}
            for c in clients.values():
                common.create_collection(c, name, args.dim, index)
            done = 0
            for rows in sizes:
                if engine == "milvus-lite" and index == "FLAT" and rows > args.lite_flat_max_rows:
                    skipped.append(f"milvus-lite FLAT {rows:,}: above --lite-flat-max-rows {args.lite_flat_max_rows:,} "
                                   "(its direct node grew to 13.6 GiB serving nq=100 at 100k rows and was OOM-killed)")
                    continue
                load0 = common.load()
                part = vecs[:rows]
                ins: dict = {}
                for label, c in clients.items():
                    secs = common.insert_all(c, name, part, args.batch, f"{engine} {label} {index} {rows}", first=done)
                    wait = common.await_index(engine, uris[label], leaders[label], name)
                    ins[label] = {"insert_rows_per_s": (rows - done) / secs, "insert_s": secs, "index_wait_s": wait,
                                  "rss_bytes": sum(common.rss_bytes(p) for p in leaders[label]),
                                  "rss_bytes_before_collection": base[label]}
                done = rows
                r = measure(clients, name, part, queries, index, args, leaders, cluster.proxy.pid,
                            node_fanout(nodes, pool, name, index))
                for label in clients:
                    r[label] = ins[label] | r[label]
                r["ratios"] = {
                    "insert_throughput_proxy_over_direct": r["proxy"]["insert_rows_per_s"] / r["direct"]["insert_rows_per_s"],
                    "search_p50_proxy_over_direct": r["proxy"]["search_p50_ms"] / r["direct"]["search_p50_ms"],
                    "search_p50_fanout_over_direct": r["fanout"]["search_p50_ms"] / r["direct"]["search_p50_ms"],
                    "search_p99_proxy_over_direct": r["proxy"]["search_p99_ms"] / r["direct"]["search_p99_ms"],
                    "batch_search_throughput_proxy_over_direct": r["proxy"]["batch_qps_nq100"] / r["direct"]["batch_qps_nq100"],
                }
                run = {"engine": engine, "index": index, "rows": rows, **r, "load_before": load0, "load_after": common.load()}
                runs.append(run)
                save()  # a long run that is cut short keeps what it measured
                print(f"{engine} {index} {rows:,}: " + ", ".join(f"{k}={v:.2f}" for k, v in r["ratios"].items())
                      + f" (load {run['load_after']['loadavg'][0]:.1f})", flush=True)
            for c in clients.values():
                c.drop_collection(name)
        for c in [*clients.values(), *nodes]:
            c.close()
        pool.shutdown()
    finally:
        direct.stop(timeout=30)
        cluster.stop()
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,300000", help="comma-separated row counts, ascending")
    ap.add_argument("--milvus-sizes", default="", help="sizes for real Milvus nodes (default: --sizes)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--indexes", default="FLAT,HNSW,IVF_FLAT")
    ap.add_argument("--engines", default="milvus-lite,milvus")
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--recall-queries", type=int, default=50)
    ap.add_argument("--throughput-rounds", type=int, default=5)
    ap.add_argument("--lite-flat-max-rows", type=int, default=50_000,
                    help="largest size measured with FLAT on milvus-lite (its brute force needs ~GiBs per nq=100 batch)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="measure nothing: merge the runs of these proxy_vs_direct.json files (separate invocations, "
                         "e.g. one per engine) into OUT/proxy_vs_direct.json and plot them")
    ap.add_argument("--note", action="append", default=[], help="with --merge: a line about the run for the report")
    args = ap.parse_args()
    if args.merge:
        merged = merge_invocations([json.loads(p.read_text()) for p in args.merge]) | {"notes": args.note}
        common.write("proxy_vs_direct", merged, args.out)
        plot(merged, args.out / "proxy_vs_direct.png")
        print(f"merged {len(merged['runs'])} runs from {len(args.merge)} invocations into {args.out / 'proxy_vs_direct.json'}")
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    per_engine = {"milvus-lite": sizes, "milvus": sorted(int(s) for s in args.milvus_sizes.split(",")) if args.milvus_sizes else sizes}
    if max(per_engine["milvus"]) > sizes[-1] or min(per_engine["milvus"]) < sizes[0]:
        ap.error("--milvus-sizes must lie within --sizes")

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((sizes[-1], args.dim)).astype(np.float32)
    pick = rng.choice(sizes[0], 400, replace=False)
    queries = (vecs[pick] + 0.1 * rng.standard_normal((400, args.dim))).astype(np.float32)
    results: dict = {
        "argv": " ".join(["bench/proxy_vs_direct.py", *sys.argv[1:]]), "machine": common.machine(), "load_before": common.load(),
        "setup": {"sizes": per_engine, "dim": args.dim, "batch": args.batch, "nodes_behind_proxy": 3, "metric": "L2",
                  "k": 10, "latency_queries": args.latency_queries, "indexes": args.indexes.split(","),
                  "params": {"HNSW": "M=16 efConstruction=100 ef=64", "IVF_FLAT": "nlist=256 nprobe=16", "FLAT": "-"},
                  "engines": {"milvus-lite": "milvus-lite 3.2.2 server, one process per node",
                              "milvus": "Milvus 2.3.5 standalone (PyPI milvus package), one per node"}},
        "runs": [], "skipped": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for engine in args.engines.split(","):
            if not common.engine_available(engine):
                results["skipped"].append(f"{engine}: not installed (pip install milvus==2.3.5)")
                print(f"skipping {engine}: not installed", flush=True)
                continue
            try:
                run_engine(engine, vecs, queries, per_engine[engine], args, Path(tmp), results["runs"],
                           lambda: common.write("proxy_vs_direct", results, args.out), results["skipped"])
            except Exception as exc:  # noqa: BLE001 - the other engine's numbers still count; the error is reported
                results["skipped"].append(f"{engine}: failed: {exc!r}"[:500])
                print(f"{engine} failed: {exc!r}", flush=True)
    results["load_after"] = common.load()
    common.write("proxy_vs_direct", results, args.out)
    if results["runs"]:
        plot(results, args.out / "proxy_vs_direct.png")
    print(f"wrote {args.out / 'proxy_vs_direct.json'} and .png")


def merge_invocations(docs: list[dict]) -> dict:
    """One result from several invocations: every run tagged with its invocation number, each
    invocation listed with its command and load, the setups' sizes per engine combined, and the
    load span over all of them. The first document gives machine and setup."""
    merged = {k: v for k, v in docs[0].items() if k not in ("runs", "skipped", "invocations")}
    merged["setup"] = dict(docs[0]["setup"]) | {"sizes": {}}
    merged |= {"runs": [], "skipped": [], "invocations": []}
    for i, d in enumerate(docs, 1):
        merged["invocations"].append({"n": i, "argv": d.get("argv", "?"), "load_before": d.get("load_before"),
                                      "load_after": d.get("load_after")})
        merged["runs"] += [r | {"invocation": i} for r in d["runs"]]
        merged["skipped"] += [f"invocation {i}: {s}" for s in d.get("skipped", [])]
        for engine in {r["engine"] for r in d["runs"]}:
            merged["setup"]["sizes"][engine] = sorted({r["rows"] for r in merged["runs"] if r["engine"] == engine})
    merged["load_before"] = docs[0].get("load_before")
    # an invocation cut short (or still running) has no load_after: take the last one recorded
    merged["load_after"] = next((d["load_after"] for d in reversed(docs) if d.get("load_after")), None)
    return merged


def plot(results: dict, path: Path) -> None:
    plt = common.plt()
    metrics = [("insert_throughput_proxy_over_direct", "insert rows/s"), ("search_p50_proxy_over_direct", "search p50 (nq=1, k=10)"),
               ("search_p99_proxy_over_direct", "search p99"), ("batch_search_throughput_proxy_over_direct", "queries/s at nq=100")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8))
    series: dict[tuple[str, str], list[dict]] = {}
    for r in results["runs"]:
        series.setdefault((r["engine"], r["index"]), []).append(r)
    for ax, (key, title) in zip(axes, metrics):
        for (engine, index), runs in series.items():
            ax.plot([r["rows"] for r in runs], [r["ratios"][key] for r in runs], "o-" if engine == "milvus-lite" else "s--",
                    label=f"{index} ({engine})")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("rows")
        ax.set_title(f"{title}: proxy / direct", fontsize=9)
    axes[0].legend(fontsize=7)
    m = results["machine"]
    fig.suptitle(f"proxy (3 nodes) / direct (1 node), dim {results['setup']['dim']}, {m['cpus']} cores, "
                 f"load {results['load_before']['loadavg'][0]:.1f}->{results['load_after']['loadavg'][0]:.1f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
