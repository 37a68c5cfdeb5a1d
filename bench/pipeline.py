"""Pipeline throughput vs the raw model forward, and query latency broken down by stage.

Same run, same machine, same batch size: (1) raw forward: the embedder's backbone + projection
on ready-made input tensors; (2) pipeline: catalog images enqueued on a real Redis Stream and
indexed by an `embed worker` (read, decode, letterbox, embed, upsert into a real milvus-lite,
ack); (3) query latency: SearchByImage's engine on 2-product scene photos (decode, detect, embed,
search), for the shipped configuration (saliency detector, eager torch, 8 objects) and the new default
(catalog-trained head, ONNX Runtime, at most 6 objects) on the same photos.
Run: python bench/pipeline.py [--images N] [--batch B]; writes bench/out/pipeline.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench._procs import servers  # noqa: E402
from embed.catalog import read_catalog  # noqa: E402
from embed.config import EmbedSettings  # noqa: E402
from embed.embedder import Embedder  # noqa: E402
from embed.imageio import read_image_file  # noqa: E402
from embed.importer import start_import  # noqa: E402
from embed.models import spec_from_settings  # noqa: E402
from embed.query import QueryEngine  # noqa: E402
from embed.sample_catalog import build_sample_catalog  # noqa: E402
from embed.scenes import make_scene  # noqa: E402
from embed.worker import Worker  # noqa: E402


def _bench_head(models: Path) -> Path | None:
    heads = sorted(models.glob("bench-head-full-*.pt"), key=lambda p: p.stat().st_mtime)
    return heads[-1] if heads else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--head", type=Path, default=None,
                    help="trained detector head (default: the newest one bench/relevance.py trained)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    csv = build_sample_catalog(ROOT / ".cache" / "tuxpaint")
    full = read_catalog(csv)
    catalog = type(full)(full.path, full.items[: args.images], full.attribute_types)
    n = len(catalog.items)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    settings = EmbedSettings(batch_size=args.batch, cache_dir=work / "cache")
    import os

    report: dict[str, object] = {"command": " ".join(["python", *sys.argv]), "images": n, "batch_size": args.batch,
                                 "torch_threads": torch.get_num_threads(), "embed_threads": settings.threads,
                                 "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    emb = Embedder(spec_from_settings(settings), batch_size=args.batch)
    # (1) raw forward at the same batch size
    x = emb.preprocess([read_image_file(catalog.items[i % n].image_path) for i in range(args.batch)])
    emb.project(emb.forward_features(x))  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < n:
        emb.project(emb.forward_features(x))
        done += args.batch
    raw = done / (time.perf_counter() - t0)
    report["raw_forward_images_per_s"] = raw
    print(f"raw forward (batch {args.batch}): {raw:.1f} images/s", flush=True)
    with servers(work / "srv") as (milvus_uri, redis_url):
        s = settings.model_copy(update={"redis_url": redis_url, "stream": "bench:jobs"})
        ticket = start_import(s, catalog, "bench", milvus_uri, adapt=False)
        worker = Worker(s, milvus_uri, consumer="bench")
        worker.pool._embedders[emb.model_id] = emb  # reuse the loaded model (same spec)
        worker.pool._default = emb
        t0 = time.perf_counter()
        stats = worker.run(max_idle_s=0.5, block_ms=200)
        elapsed = time.perf_counter() - t0 - 0.5  # minus the idle wait at the end
        pipe = stats.images / elapsed
        # each catalog image is embedded as itself plus its K prototype views (embed.prototypes)
        per_image = 1 + emb.spec.catalog_views
        report.update({"pipeline_images_per_s": pipe, "pipeline_vs_raw": pipe / raw, "indexed": stats.images,
                       "catalog_views": emb.spec.catalog_views, "forwards_per_image": per_image,
                       "pipeline_forwards_per_s": pipe * per_image, "pipeline_forwards_vs_raw": pipe * per_image / raw,
                       "dead": stats.dead, "import_id": ticket.import_id})
        print(f"pipeline (queue -> decode -> embed -> upsert -> ack): {pipe:.1f} images/s = {pipe / raw:.2f} x raw; "
              f"{per_image} forwards per image: {pipe * per_image / raw:.2f} x raw forwards/s", flush=True)
        # (3) query latency breakdown: the shipped baseline (saliency, eager torch, 8 objects, whole photo
        # first) and the new default (catalog-trained head + ONNX Runtime, <= 6 objects) on the same photos
        images = [read_image_file(it.image_path) for it in catalog.items[: args.queries]]
        scenes = [make_scene([(catalog.items[i].product_id, images[i]),
                              (catalog.items[-1 - i].product_id, read_image_file(catalog.items[-1 - i].image_path))],
                             seed=i) for i in range(len(images))]
        head = args.head or _bench_head(ROOT / ".cache" / "models")
        configs = {"saliency+torch (shipped)": {"detector": "saliency", "runtime": "torch", "max_objects": 8}}
        if head is not None:
            configs["trained head+onnxruntime"] = {"detector": "trained", "detector_head": head, "runtime": "onnx",
                                                   "max_objects": 6}
        report["query_latency"] = {}
        report["detector_head"] = str(head) if head else None
        for name, upd in configs.items():
            qs = s.model_copy(update={**upd, "cache_dir": work / "cache"})
            engine = QueryEngine(qs, milvus_uri)
            if upd["runtime"] == "torch":
                engine.pool._embedders[emb.model_id] = emb  # reuse the loaded model (same spec)
                engine.pool._default = emb
            engine.search_image(scenes[0].jpeg, "bench")  # warm-up (and the ONNX export, once)
            stages: dict[str, list[float]] = {"decode": [], "detect": [], "embed": [], "search": [], "total": []}
            nobj = []
            for sc in scenes:
                t0 = time.perf_counter()
                res = engine.search_image(sc.jpeg, "bench", top_k=10)
                stages["total"].append(time.perf_counter() - t0)
                nobj.append(len(res.objects))
                for k in ("decode", "detect", "embed", "search"):
                    stages[k].append(res.timings[k])
            lat = {k: {"mean_ms": 1000 * float(np.mean(v)), "p50_ms": 1000 * float(np.median(v)),
                       "p95_ms": 1000 * float(np.percentile(v, 95))} for k, v in stages.items()}
            lat["objects_per_photo"] = float(np.mean(nobj))  # type: ignore[assignment]
            report["query_latency"][name] = lat  # type: ignore[index]
            for k, v in lat.items():
                if isinstance(v, dict):
                    print(f"{name:26s} query {k:7s} mean {v['mean_ms']:7.1f} ms  p50 {v['p50_ms']:7.1f}  "
                          f"p95 {v['p95_ms']:7.1f}", flush=True)
    report["load_average_at_end"] = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(report, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    a1.bar(["raw forward", "pipeline"], [raw, report["pipeline_images_per_s"]], color=["C0", "C1"])
    a1.set_ylabel("images/s")
    a1.set_title(f"batch {args.batch}: pipeline = {report['pipeline_vs_raw']:.2f} x raw")
    ks = ["decode", "detect", "embed", "search"]
    qlat = report["query_latency"]
    for j, (name, lat) in enumerate(qlat.items()):  # type: ignore[union-attr]
        a2.bar(np.arange(len(ks)) + 0.4 * j - 0.2, [lat[k]["p50_ms"] for k in ks], 0.4,
               label=f"{name}: p50 {lat['total']['p50_ms']:.0f} ms")
    a2.set_xticks(np.arange(len(ks)), ks)
    a2.set_ylabel("ms (p50)")
    a2.legend(fontsize=7)
    a2.set_title("query latency per stage")
    fig.tight_layout()
    fig.savefig(args.out / "pipeline.png", dpi=120)
    print(f"wrote {args.out / 'pipeline.json'} and pipeline.png")


if __name__ == "__main__":
    main()
