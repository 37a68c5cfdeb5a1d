"""What a second look at a zoomed crop does to the default head's boxes (strict validation photos).

For each of the head's first 5 boxes in a cluttered strict-validation photo that overlaps a product
(IoU >= 0.2 with its true box), the box is refined (``embed.refine``) at each zoom and compared with
that product's true box: mean IoU, share at IoU >= 0.5, and the median predicted / true width and
height. A zoom under about 4 shows the product larger than the first pass did; 6 and 8 smaller
(the window reaches past the photo).

Run: python bench/refinediag.py [--photos 15] [--zoom 2 --zoom 3 ...]; writes bench/out/refinediag.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.relsetup import load_setup, strict_split, strict_validation_photos, train_or_load  # noqa: E402
from embed.boxes import iou_matrix  # noqa: E402
from embed.detrain import DetTrainConfig  # noqa: E402
from embed.dethead import letterbox  # noqa: E402
from embed.productdet import ProductDetector  # noqa: E402
from embed.refine import refine_objects  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=15, help="cluttered strict-validation photos")
    ap.add_argument("--zoom", type=float, action="append", default=[])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    zooms = args.zoom or [2.0, 3.0, 4.0, 6.0, 8.0]
    s = load_setup()
    fit_idx, fit_tex, _, _ = strict_split(s)
    head = train_or_load(s, "strict", DetTrainConfig(), textures=fit_tex, product_idx=fit_idx)[0]
    det = ProductDetector(head, s.emb.backbone.net, runtime="onnx", export_dir=s.settings.artifacts_dir,
                          threads=s.settings.threads, conf=0.1, iou=0.5, top_k=20, min_size=s.settings.min_box_size)
    photos = strict_validation_photos(s, args.photos)["cluttered"]
    pairs = []  # (photo, detection, index of its product)
    for sc, _ in photos:
        img = sc.image
        x, lb = letterbox(img, det.size)
        for o in det.from_raw(det.raw(x), lb, img.width, img.height)[:5]:
            iou = iou_matrix(np.array([o.box]), np.array(sc.boxes, np.float64))[0]
            if iou.max() >= 0.2:
                pairs.append((sc, o, int(iou.argmax())))

    def stats(boxes: list, truths: list) -> dict[str, float]:
        b, t = np.array(boxes, np.float64), np.array(truths, np.float64)
        iou = np.array([iou_matrix(b[i : i + 1], t[i : i + 1])[0, 0] for i in range(len(b))])
        ratio = (b[:, 2:] - b[:, :2]) / (t[:, 2:] - t[:, :2])
        return {"mean_iou": float(iou.mean()), "iou>=0.5": float((iou >= 0.5).mean()),
                "width_ratio_median": float(np.median(ratio[:, 0])), "height_ratio_median": float(np.median(ratio[:, 1]))}

    truths = [sc.boxes[g] for sc, _, g in pairs]
    res = {"first pass": stats([o.box for _, o, _ in pairs], truths)}
    for z in zooms:
        res[f"zoom {z:g}"] = stats([refine_objects(det, sc.image, [o], z)[0].box for sc, o, _ in pairs], truths)
    for k, v in res.items():
        print(f"{k:11s} " + " ".join(f"{m} {x:.3f}" for m, x in v.items()), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refinediag.json").write_text(json.dumps(
        {"command": " ".join(["python", *sys.argv]), "boxes": len(pairs), "photos": len(photos), "results": res,
         "load_average_at_start": s.load_start, "load_average_at_end": os.getloadavg()}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(res)
    x = np.arange(len(names))
    for j, m in enumerate(("iou>=0.5", "width_ratio_median", "height_ratio_median")):
        ax.bar(x + (j - 1) * 0.27, [res[n][m] for n in names], 0.27, label=m)
    ax.axhline(1.0, color="k", lw=0.6, ls="--")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_title(f"refined boxes, {len(pairs)} boxes in {len(photos)} cluttered strict-validation photos")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "refinediag.png", dpi=120)
    print(f"wrote {args.out / 'refinediag.json'} and refinediag.png")


if __name__ == "__main__":
    main()
