"""Same-run before/after of a change to the proxy's Search path: the proxy at a base commit (its code
exported with ``git archive`` and run from there) and the proxy of this checkout, on the same 3
nodes and Redis, interleaved query by query (order rotated) with the direct node holding all rows
and the client's own parallel search of the 3 nodes (no proxy); plus each proxy's CPU per search
and its idle CPU. Both proxies must answer the same ids. Writes bench/out/proxy_before_after.json.

    .venv/bin/python bench/proxy_before_after.py --base 24b73d6 [--rows 3000] [--queries 300] [--engine milvus]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench import common  # noqa: E402
from devkit import procs  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402

NAME = "bench_before_after"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="git commit of the 'before' proxy")
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--engine", default="milvus", choices=common.ENGINES)
    ap.add_argument("--index", default="HNSW")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((args.rows, 256)).astype(np.float32)
    qs = (vecs[rng.choice(args.rows, 200, replace=False)] + 0.1 * rng.standard_normal((200, 256))).astype(np.float32)
    base = subprocess.run(["git", "rev-parse", args.base], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    res: dict = {"machine": common.machine(), "load_before": common.load(), "base": base, "head": head,
                 "setup": {"rows": args.rows, "queries": args.queries, "engine": args.engine, "index": args.index, "nq": 1, "k": 10}}
    with tempfile.TemporaryDirectory(prefix="bench-ba-") as tmp:
        old_src = Path(tmp) / "base"
        old_src.mkdir()
        archive = subprocess.run(["git", "archive", base], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive, check=True)
        cl = DevCluster(data_dir=Path(tmp) / "c", nodes=3, engine=args.engine, proxy_env=common.BENCH_PROXY_ENV).start()
        direct = common.start_node(args.engine, Path(tmp) / "direct" / "data", "direct")
        old = None
        try:
            d = common.client(f"http://{direct.address}")
            new = common.client(**cl.connect_kwargs())
            for c in (d, new):
                common.create_collection(c, NAME, 256, args.index)
                common.insert_all(c, NAME, vecs, 5000, "load")
            common.await_index(args.engine, [f"http://{direct.address}"] + [f"http://{m.address}" for m in cl.milvus],
                               [direct.pid] + [m.pid for m in cl.milvus], NAME)
            port = procs.free_port("127.0.0.1")
            env = {**os.environ, **cl._env(), "PYTHONPATH": f"{old_src}{os.pathsep}{old_src / 'gen'}"}
            old = subprocess.Popen([sys.executable, "-m", "shardproxy", "serve", "--host", "127.0.0.1", "--port", str(port),
                                    "--redis-url", cl.redis_url], env=env, cwd=old_src, start_new_session=True,
                                   stdout=open(Path(tmp) / "base-proxy.log", "w"), stderr=subprocess.STDOUT)
            procs.wait_serving(types.SimpleNamespace(address=f"127.0.0.1:{port}", name="base proxy",  # type: ignore[arg-type]
                                                     alive=lambda: old is not None and old.poll() is None),
                               180, channel=cl.channel(f"127.0.0.1:{port}"))
            before = common.client(**{**cl.connect_kwargs(), "uri": f"http://127.0.0.1:{port}"})
            nodes = [common.client(f"http://{m.address}") for m in cl.milvus]
            pool = ThreadPoolExecutor(len(nodes))
            sp = common.search_params(args.index)

            def fan(q: np.ndarray) -> object:
                futs = [pool.submit(c.search, NAME, [q.tolist()], limit=10, search_params=sp) for c in nodes]
                return sorted((h["distance"], h["id"]) for f in futs for h in f.result()[0])[:10]

            calls = {"direct": lambda q: d.search(NAME, [q.tolist()], limit=10, search_params=sp), "fanout": fan,
                     "proxy_before": lambda q: before.search(NAME, [q.tolist()], limit=10, search_params=sp),
                     "proxy_after": lambda q: new.search(NAME, [q.tolist()], limit=10, search_params=sp)}
            for q in qs[:20]:
                a, b = ([h["id"] for h in calls[k](q)[0]] for k in ("proxy_before", "proxy_after"))  # type: ignore[index]
                if a != b:
                    raise SystemExit(f"the two proxies answer differently: {a} vs {b}")
                calls["direct"](q)
                fan(q)
            pids = {"proxy_before": old.pid, "proxy_after": cl.proxy.pid}
            c0 = {k: common.cpu_seconds(p) for k, p in pids.items()}
            time.sleep(10)
            res["idle_cpu_share"] = {k: (common.cpu_seconds(p) - c0[k]) / 10 for k, p in pids.items()}
            c0 = {k: common.cpu_seconds(p) for k, p in pids.items()}
            lat = common.interleaved_latency(calls, [qs[i % len(qs)] for i in range(args.queries)], rotate=True)
            res["proxy_cpu_ms_per_search"] = {k: (common.cpu_seconds(p) - c0[k]) / args.queries * 1000 for k, p in pids.items()}
            res["latency"] = {k: common.latency_summary(v) for k, v in lat.items()}
            for c in (d, new, before, *nodes):
                c.close()
            pool.shutdown()
        finally:
            if old is not None:
                os.killpg(old.pid, signal.SIGTERM)
                old.wait(60)
            direct.stop(timeout=30)
            cl.stop()
    res["load_after"] = common.load()
    path = common.write("proxy_before_after", res, args.out)
    for k, v in res["latency"].items():
        print(f"{k:13s} p50 {v['search_p50_ms']:6.1f} ms  p99 {v['search_p99_ms']:6.1f} ms")
    print(f"proxy CPU ms/search: {res['proxy_cpu_ms_per_search']}; wrote {path}")


if __name__ == "__main__":
    main()
