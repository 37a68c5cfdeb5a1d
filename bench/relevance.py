"""Relevance benchmark on the tuxpaint sample catalog: recall@1 / recall@10 per object.

Queries are catalog products pasted (scaled, rotated, recoloured) into room-like scenes and
JPEG-compressed, never identical to a catalog image: set "single" has one product per photo,
set "pair" two. Each object is searched the way SearchByImage does it (whole photo + detector
boxes, embed, cosine nearest catalog vectors, grouped by product; exact search in numpy here, which
is what a FLAT index returns). A product counts as found at rank r when an object overlapping it
(IoU >= 0.3), or the whole photo, lists it at rank r. "oracle" uses the true box instead of the
detector. Run: python bench/relevance.py [--queries N] [--no-adapt]; writes bench/out/relevance.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from embed.boxes import iou_matrix  # noqa: E402
from embed.catalog import read_catalog  # noqa: E402
from embed.config import EmbedSettings  # noqa: E402
from embed.detector import SaliencyDetector, detect_objects  # noqa: E402
from embed.embedder import Embedder  # noqa: E402
from embed.imageio import read_image_file  # noqa: E402
from embed.models import spec_from_settings  # noqa: E402
from embed.sample_catalog import build_sample_catalog  # noqa: E402
from embed.scenes import make_scene  # noqa: E402


def ranks_for(vectors: np.ndarray, cat: np.ndarray, cat_pids: list[str], target: str, k: int = 10) -> list[int]:
    """Rank (1-based, 10**6 if absent) of ``target`` among grouped products for each query vector."""
    sims = vectors @ cat.T
    out = []
    for row in sims:
        order = np.argsort(-row)
        seen: list[str] = []
        rank = 10**6
        for j in order:
            p = cat_pids[j]
            if p not in seen:
                seen.append(p)
                if p == target:
                    rank = len(seen)
                    break
                if len(seen) >= k:
                    break
        out.append(rank)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=200, help="photos per set")
    ap.add_argument("--variants", default="shipped,adapted",
                    help="comma-separated: shipped (Lite0 + fixed projection), adapted (after embed train)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    settings = EmbedSettings()
    csv = build_sample_catalog(ROOT / ".cache" / "tuxpaint")
    catalog = read_catalog(csv)
    images = [read_image_file(it.image_path) for it in catalog.items]
    pids = [it.product_id for it in catalog.items]
    print(f"catalog: {len(images)} products from {csv}")
    rng = random.Random(1234)
    sets = {
        "single": [make_scene([(pids[i], images[i])], seed=10_000 + q)
                   for q, i in enumerate(rng.sample(range(len(pids)), min(args.queries, len(pids))))],
        "pair": [make_scene([(pids[i], images[i]) for i in rng.sample(range(len(pids)), 2)], seed=20_000 + q)
                 for q in range(args.queries)],
    }
    wanted = args.variants.split(",")
    variants: dict[str, Path | None] = {"lite0-shipped": None} if "shipped" in wanted else {}
    timings: dict[str, float] = {}
    if "adapted" in wanted:
        from embed.train import adapt_to_catalog

        t0 = time.monotonic()
        variants["lite0-adapted"] = adapt_to_catalog(catalog, settings)
        timings["adaptation_s"] = time.monotonic() - t0
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, proj in variants.items():
        emb = Embedder(spec_from_settings(settings, projection=proj), batch_size=32, threads=settings.threads)
        det = SaliencyDetector(emb.backbone.net, min_size=settings.min_box_size)
        t0 = time.monotonic()
        cat = emb.embed(images)
        timings[f"{name}_catalog_embed_s"] = time.monotonic() - t0
        results[name] = {}
        for set_name, scenes in sets.items():
            r_det: list[int] = []
            r_oracle: list[int] = []
            t0 = time.monotonic()
            for sc in scenes:
                objs = detect_objects(det, sc.image, settings.max_objects)
                vecs = emb.embed([o.crop(sc.image) for o in objs])
                boxes = np.array([o.box for o in objs], np.float32)
                gt_vecs = emb.embed([sc.image.crop(b) for b in sc.boxes])
                for g, (box, pid) in enumerate(zip(sc.boxes, sc.product_ids)):
                    ious = iou_matrix(boxes, np.array([box], np.float32))[:, 0]
                    eligible = [i for i, o in enumerate(objs) if o.label == "image" or ious[i] >= 0.3]
                    r_det.append(min(ranks_for(vecs[eligible], cat, pids, pid)))
                    r_oracle.append(ranks_for(gt_vecs[g : g + 1], cat, pids, pid)[0])
            timings[f"{name}_{set_name}_s"] = time.monotonic() - t0
            rd, ro = np.array(r_det), np.array(r_oracle)
            results[name][set_name] = {
                "objects": len(rd),
                "recall@1": float((rd <= 1).mean()), "recall@10": float((rd <= 10).mean()),
                "oracle_recall@1": float((ro <= 1).mean()), "oracle_recall@10": float((ro <= 10).mean()),
            }
            allr = results[name].setdefault("all", {"n1": 0, "n10": 0, "n": 0})
            allr["n1"] += int((rd <= 1).sum())
            allr["n10"] += int((rd <= 10).sum())
            allr["n"] += len(rd)
            print(f"{name:14s} {set_name:7s} objects {len(rd):4d}  recall@1 {results[name][set_name]['recall@1']:.3f}  "
                  f"recall@10 {results[name][set_name]['recall@10']:.3f}  (true boxes: "
                  f"{results[name][set_name]['oracle_recall@1']:.3f} / {results[name][set_name]['oracle_recall@10']:.3f})",
                  flush=True)
        a = results[name]["all"]
        results[name]["all"] = {"objects": a["n"], "recall@1": a["n1"] / a["n"], "recall@10": a["n10"] / a["n"]}
        print(f"{name:14s} all     objects {a['n']:4d}  recall@1 {results[name]['all']['recall@1']:.3f}  "
              f"recall@10 {results[name]['all']['recall@10']:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    import os

    report = {"load_average_at_end": os.getloadavg(), "catalog_products": len(pids), "queries_per_set": args.queries, "max_objects": settings.max_objects,
              "detector": "saliency-lite0 + whole photo", "results": results, "timings_s": timings}
    (args.out / "relevance.json").write_text(json.dumps(report, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    labels, vals1, vals10 = [], [], []
    for name, per in results.items():
        for set_name in ("single", "pair", "all"):
            labels.append(f"{name}\n{set_name}")
            vals1.append(per[set_name]["recall@1"])
            vals10.append(per[set_name]["recall@10"])
    x = np.arange(len(labels))
    ax.bar(x - 0.2, vals1, 0.4, label="recall@1")
    ax.bar(x + 0.2, vals10, 0.4, label="recall@10")
    ax.axhline(0.85, color="C0", ls="--", lw=0.8)
    ax.axhline(0.95, color="C1", ls="--", lw=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(f"tuxpaint catalog ({len(pids)} products): recall per object")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "relevance.png", dpi=120)
    print(f"wrote {args.out / 'relevance.json'} and relevance.png")


if __name__ == "__main__":
    main()
