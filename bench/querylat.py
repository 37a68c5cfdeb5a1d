"""Query latency through the proxy: decode + detect + embed + search (p50 / p95 per stage), two query
configurations on the same photos in the same run.

A 3-node dev cluster (proxy with auth, milvus-lite nodes, Redis); the catalog (Debian's tuxpaint stamps)
is imported through the proxy by an in-process `embed worker` with the catalog-adapted model. The
query engine (the code the proxy's SearchByImage runs) searches through the proxy, with

- **default**: the shipped head config (``DetTrainConfig()``: width 48, centre-only targets) with the
  shipped query settings (learned order over ``det_candidates`` boxes, ``crop_pad``), and
- **width 96, dense**: the opt-in head of the third round (``EMBED_DET_WIDTH=96 EMBED_DET_DENSE=0.3``),
  same settings.

Photos: the cluttered and 1-2 product test compositions of bench/relevance.py. The heads and the
projection are the ones bench/relevance.py trains (``.cache/models``, trained here when missing). Load
average is recorded.

Run: python bench/querylat.py [--queries N]; writes bench/out/querylat.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench.relsetup import load_setup, test_photos, train_or_load  # noqa: E402
from embed.detrain import DetTrainConfig  # noqa: E402
from devkit.devcluster import DevCluster  # noqa: E402
from embed.importer import start_import  # noqa: E402
from embed.query import QueryEngine  # noqa: E402
from embed.worker import Worker  # noqa: E402

STAGES = ("decode", "detect", "embed", "search", "total")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=20, help="photos per split (scene and cluttered)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    s = load_setup()
    heads = {"default": train_or_load(s, "full", DetTrainConfig())[0],
             "width 96, dense": train_or_load(s, "full", DetTrainConfig(width=96, dense=0.3))[0]}
    proj = s.emb.spec.projection
    photos = test_photos(s, args.queries)
    jpegs = [sc.jpeg for split in ("scene", "cluttered") for sc, _ in photos[split]]
    work = Path(tempfile.mkdtemp(prefix="bench-querylat-"))
    report: dict[str, object] = {"command": " ".join(["python", *sys.argv]), "photos": len(jpegs),
                                 "heads": {k: p.name for k, p in heads.items()}, "cpu_count": os.cpu_count(),
                                 "load_average_at_start": os.getloadavg()}
    dc = DevCluster(work / "cluster", nodes=3).start()
    try:
        base = s.settings.model_copy(update={"redis_url": dc.redis_url, "stream": "bench:querylat", "projection": proj,
                                             "token": dc.token, "cache_dir": work / "cache", "detector": "trained",
                                             "detector_head": heads["default"]})
        start_import(base, s.catalog, "querylat", dc.proxy_uri, adapt=False)
        stats = Worker(base, dc.proxy_uri, consumer="bench").run(max_idle_s=0.5, block_ms=200)
        report["indexed"] = stats.images
        print(f"indexed {stats.images} catalog images through the proxy; load {os.getloadavg()}", flush=True)
        configs = {"default: width-48 head, learned order": {},
                   "opt-in: width-96 dense head, learned order": {"detector_head": heads["width 96, dense"]}}
        report["query_latency"] = {}
        for name, upd in configs.items():
            engine = QueryEngine(base.model_copy(update=upd), dc.proxy_uri)
            engine.search_image(jpegs[0], "querylat")  # warm-up (loads, ONNX export once)
            st: dict[str, list[float]] = {k: [] for k in STAGES}
            nobj = []
            for data in jpegs:
                t0 = time.perf_counter()
                res = engine.search_image(data, "querylat", top_k=10)
                st["total"].append(time.perf_counter() - t0)
                nobj.append(len(res.objects))
                for k in STAGES[:-1]:
                    st[k].append(res.timings[k])
            lat = {k: {"p50_ms": 1000 * float(np.median(v)), "p95_ms": 1000 * float(np.percentile(v, 95)),
                       "mean_ms": 1000 * float(np.mean(v))} for k, v in st.items()}
            report["query_latency"][name] = {**lat, "objects_per_photo": float(np.mean(nobj)),  # type: ignore[index]
                                             "load_average_after": os.getloadavg()}
            for k, v in lat.items():
                print(f"{name:44s} {k:7s} p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms", flush=True)
            print(f"  load {os.getloadavg()}", flush=True)
    finally:
        dc.stop()
        shutil.rmtree(work, ignore_errors=True)
    report["load_average_at_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "querylat.json").write_text(json.dumps(report, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for j, (name, lat) in enumerate(report["query_latency"].items()):  # type: ignore[union-attr]
        ax.bar(np.arange(len(STAGES)) + 0.4 * j - 0.2, [lat[k]["p50_ms"] for k in STAGES], 0.4,
               label=f"{name}: p50 {lat['total']['p50_ms']:.0f} / p95 {lat['total']['p95_ms']:.0f} ms")
    ax.axhline(300, color="k", ls="--", lw=0.8)
    ax.set_xticks(np.arange(len(STAGES)), STAGES)
    ax.set_ylabel("ms (p50)")
    ax.set_title(f"query through the proxy, load {report['load_average_at_start'][0]:.1f}"  # type: ignore[index]
                 f"-{report['load_average_at_end'][0]:.1f} on {os.cpu_count()} cores")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "querylat.png", dpi=120)
    print(f"wrote {args.out / 'querylat.json'} and querylat.png")


if __name__ == "__main__":
    main()
