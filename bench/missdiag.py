"""Why a cluttered product gets no box: the default head's misses on strict validation photos, by kind.

For each product of a cluttered strict-validation photo that none of the head's first 5 boxes covers
at IoU 0.5: ``merged`` (a candidate holds its centre and covers at least half of another product too),
``too large`` / ``too small`` / ``shifted`` (a candidate holds its centre; its area is over 1.5x / under
0.67x the product's, or neither), ``later peak`` (no candidate holds its centre, but one of the head's
boxes beyond the first 5, down to score 0.05, covers it at IoU 0.5), ``none`` (otherwise).

Run: python bench/missdiag.py [--photos 150]; writes bench/out/missdiag.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.relsetup import load_setup, strict_split, strict_validation_photos, train_or_load  # noqa: E402
from embed.boxes import iou_matrix  # noqa: E402
from embed.detrain import DetTrainConfig  # noqa: E402
from embed.dethead import letterbox  # noqa: E402
from embed.productdet import ProductDetector  # noqa: E402


def inside(b: np.ndarray, p: np.ndarray) -> bool:
    return bool(b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3])


def kind(cands: np.ndarray, more: np.ndarray, gt: np.ndarray, g: int) -> str:
    """The miss kind of product ``g`` (see the module docstring)."""
    c = (gt[g, :2] + gt[g, 2:]) / 2
    area = float(np.prod(gt[g, 2:] - gt[g, :2]))
    holders = [b for b in cands if inside(b, c)]
    if holders:
        b = max(holders, key=lambda x: iou_matrix(x[None], gt[g : g + 1])[0, 0])
        x0, y0 = np.maximum(b[:2], gt[:, :2]).T
        x1, y1 = np.minimum(b[2:], gt[:, 2:]).T
        cover = (x1 - x0).clip(0) * (y1 - y0).clip(0) / np.prod(gt[:, 2:] - gt[:, :2], axis=1)
        cover[g] = 0
        if (cover >= 0.5).any():
            return "merged"
        ratio = float(np.prod(b[2:] - b[:2])) / area
        return "too large" if ratio > 1.5 else "too small" if ratio < 0.67 else "shifted"
    if len(more) and iou_matrix(more, gt[g : g + 1])[:, 0].max() >= 0.5:
        return "later peak"
    return "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=150)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    s = load_setup()
    fit_idx, fit_tex, _, _ = strict_split(s)
    head = train_or_load(s, "strict", DetTrainConfig(), textures=fit_tex, product_idx=fit_idx)[0]
    det = ProductDetector(head, s.emb.backbone.net, runtime="onnx", export_dir=s.settings.artifacts_dir,
                          threads=s.settings.threads, conf=0.1, iou=0.5, top_k=20, min_size=s.settings.min_box_size)
    counts: Counter[str] = Counter()
    total = 0
    for sc, _ in strict_validation_photos(s, args.photos)["cluttered"]:
        img = sc.image
        x, lb = letterbox(img, det.size)
        pred = det.raw(x)
        cands = np.array([o.box for o in det.from_raw(pred, lb, img.width, img.height)[:5]]).reshape(-1, 4)
        more = np.array([o.box for o in det.from_raw(pred, lb, img.width, img.height, conf=0.05)[5:]]).reshape(-1, 4)
        gt = np.array(sc.boxes, np.float64)
        iou = iou_matrix(cands, gt) if len(cands) else np.zeros((0, len(gt)))
        for g in range(len(gt)):
            total += 1
            if len(cands) and iou[:, g].max() >= 0.5:
                counts["covered"] += 1
            else:
                counts[kind(cands, more, gt, g)] += 1
    res = {k: {"products": v, "share": v / total} for k, v in counts.most_common()}
    for k, v in res.items():
        print(f"{k:11s} {v['products']:4d} {v['share']:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "missdiag.json").write_text(json.dumps(
        {"command": " ".join(["python", *sys.argv]), "products": total, "results": res,
         "load_average_at_start": s.load_start, "load_average_at_end": os.getloadavg()}, indent=2))
    print(f"wrote {args.out / 'missdiag.json'}")


if __name__ == "__main__":
    main()
