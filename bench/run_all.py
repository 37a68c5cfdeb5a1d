"""`make bench`: run every benchmark in bench/ (niced), then write bench/REPORT.md from the JSON.

Each benchmark runs as its own process under ``nice -n 10`` with the sizes of the chosen scale;
its output goes to bench/results/logs/NAME.log, its JSON and PNG to bench/results/. The machine's
load is recorded before and after every step (and inside every benchmark), and the report shows it
next to every table.

    .venv/bin/python bench/run_all.py                      # default scale: < 30 min on this shared 2-core box
    .venv/bin/python bench/run_all.py --scale tiny --out /tmp/smoke   # ~7 min smoke run of every part
    .venv/bin/python bench/run_all.py --scale small        # the sizes of an earlier session (see SCALES)
    make bench-scale                                       # the issue's 100k/300k/1M rows: proxy_vs_direct, ~2 h (Makefile)
    .venv/bin/python bench/run_all.py --scale large        # 1M rows, both engines: a bigger machine
    .venv/bin/python bench/run_all.py --only ring_sim,merge_cpu --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench import common, report  # noqa: E402

# name -> arguments per scale. Sizes: "default" fits this 2-core machine in < 30 minutes when idle.
SCALES: dict[str, dict[str, list[str]]] = {
    "tiny": {  # a smoke run of every part (a few minutes): proves the scripts, measures nothing worth keeping
        "ring_sim": ["--nodes", "3,8,32", "--vnodes", "10,40", "--build-nodes", "8", "--uhashring-up-to", "8",
                     "--choose-up-to", "32", "--batches", "1000"],
        "merge_cpu": ["--min-s", "0.02", "--shards", "2,8", "--ks", "10", "--nq", "1"],
        "proxy_vs_direct": ["--sizes", "2000", "--indexes", "FLAT,HNSW", "--latency-queries", "20",
                            "--throughput-rounds", "1", "--recall-queries", "10"],
        "shards": ["--rows", "2000", "--shards", "1,2", "--queries", "10"],
        "concurrency": ["--rows", "2000", "--clients", "1,4", "--seconds", "1"],
        "rebalance": ["--rows", "2000", "--baseline-s", "2"],
        "pipeline": ["--images", "8", "--batch", "4", "--queries", "2"],
    },
    "small": {
        "merge_cpu": ["--min-s", "0.1"],
        "concurrency": ["--rows", "10000", "--clients", "1,4,16,64", "--seconds", "4"],
        "shards": ["--rows", "20000", "--shards", "1,2,4", "--queries", "60"],
        "rebalance": ["--rows", "10000", "--baseline-s", "5"],
        "pipeline": ["--images", "64", "--batch", "16", "--queries", "10"],
        "proxy_vs_direct": ["--sizes", "3000,9000,27000", "--latency-queries", "40", "--throughput-rounds", "3"],
        "ring_sim": ["--nodes", "3,8,32,128,512", "--vnodes", "10,40,160,320", "--build-nodes", "3,32"],
    },
    "default": {  # sized to fit 30 minutes on this shared 2-core machine (the run of 2026-12-01 in REPORT.md);
        # the 100k/300k/1M rows per engine do not: proxy_vs_direct alone took ~70 min for 20k-100k
        # rows under load, and milvus-lite FLAT at 100k was OOM-killed serving nq=100 (`--scale large`)
        "ring_sim": [],
        "merge_cpu": ["--min-s", "0.15"],
        "proxy_vs_direct": ["--sizes", "10000,30000", "--milvus-sizes", "10000,20000",
                            "--indexes", "FLAT,HNSW,IVF_FLAT", "--latency-queries", "100", "--throughput-rounds", "3"],
        "shards": ["--rows", "10000", "--shards", "1,2,4", "--queries", "60"],
        "concurrency": ["--rows", "10000", "--clients", "1,4,16,64", "--seconds", "4"],
        "rebalance": ["--rows", "10000", "--baseline-s", "5"],
        "pipeline": ["--images", "64", "--batch", "16", "--queries", "10"],
    },
    "large": {
        "ring_sim": ["--vnodes", "10,40,80,160,320,640"],
        "merge_cpu": ["--shards", "2,4,8,16,32,64,128"],
        "proxy_vs_direct": ["--sizes", "100000,300000,1000000", "--latency-queries", "300"],
        "shards": ["--rows", "300000", "--shards", "1,2,4,8,16"],
        "concurrency": ["--rows", "300000", "--clients", "1,4,16,64,128"],
        "rebalance": ["--rows", "300000"],
        "pipeline": ["--images", "512", "--batch", "32", "--queries", "40"],
    },
}
ENGINE_AWARE = {"proxy_vs_direct": "--engines", "shards": "--engine", "concurrency": "--engine", "rebalance": "--engine"}


def run_step(name: str, args: list[str], out: Path, timeout: float) -> dict:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = ["nice", "-n", "10", sys.executable, str(ROOT / "bench" / f"{name}.py"), *args, "--out", str(out)]
    before = common.load()
    t0 = time.perf_counter()
    with open(logs / f"{name}.log", "wb") as log:
        try:
            rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])}).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    shown = [os.path.relpath(a, ROOT) if a.startswith(str(ROOT)) else a for a in map(str, argv[5:])]
    step = {"name": name, "argv": [f"bench/{name}.py", *shown], "rc": rc, "wall_s": time.perf_counter() - t0,
            "load_before": before, "load_after": common.load(), "log": os.path.relpath(logs / f"{name}.log", ROOT)}
    print(f"{name}: rc={rc} in {step['wall_s']:.0f}s (load {before['loadavg'][0]:.1f} -> {step['load_after']['loadavg'][0]:.1f})",
          flush=True)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="default")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    ap.add_argument("--engine", default="milvus-lite", choices=common.ENGINES,
                    help="engine of the shard/concurrency/rebalance runs (proxy_vs_direct runs both when installed)")
    ap.add_argument("--step-timeout", type=float, default=3600)
    ap.add_argument("--report-only", action="store_true", help="only regenerate bench/REPORT.md from the JSON")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's header (kept)")
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args()
    steps = SCALES[args.scale]
    names = [n for n in steps if not args.only or n in args.only.split(",")]
    meta_path = args.out / "run_all.json"
    full = not args.only and not args.report_only
    # a full run starts a new record: the report then describes that one run, not earlier pieces
    meta = json.loads(meta_path.read_text()) if meta_path.exists() and not full else {"steps": {}}
    meta.setdefault("notes", []).extend(args.note)
    if not args.report_only:
        t0 = time.perf_counter()
        meta |= {"scale": args.scale, "machine": common.machine(), "started": common.load()}
        for name in names:  # a part that fails must not leave an older run's results in the report
            for stale in (args.out / f"{name}.json", args.out / f"{name}.png"):
                stale.unlink(missing_ok=True)
        for name in names:
            extra = list(steps[name])
            if name in ENGINE_AWARE and name != "proxy_vs_direct":
                extra += [ENGINE_AWARE[name], args.engine]
            meta["steps"][name] = run_step(name, extra, args.out, args.step_timeout) | {"scale": args.scale}
            common.write("run_all", meta, args.out)
        meta |= {"finished": common.load(), "wall_s": time.perf_counter() - t0}
    common.write("run_all", meta, args.out)
    # the checked-in report belongs to bench/results; a run written elsewhere (a smoke run) reports there
    target = ROOT / "bench" / "REPORT.md" if args.out.resolve() == common.RESULTS.resolve() else args.out / "REPORT.md"
    path = report.write_report(args.out, target)
    print(f"wrote {path}")
    failed = [n for n in names if meta["steps"].get(n, {}).get("rc") not in (0, None)]
    if failed and not args.report_only:
        sys.exit(f"failed: {', '.join(failed)} (logs in {args.out / 'logs'})")


if __name__ == "__main__":
    main()
