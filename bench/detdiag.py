"""Where cluttered recall goes, on VALIDATION photos: the boxes or the embedding, and the heads' size bias.

Per product of the cluttered validation photos (``bench.relsetup.validation_photos``), for each head:
its true box padded by 0.1 embedded (top-1 correct?), whether one of the head's first 5 (or 8) boxes
at threshold 0.1 has it as its top-1 product, whether none of the 5 covers it at IoU 0.5, and whether
the covering box's top-1 is wrong. Size bias over all three splits: predicted / true box width and
height of the head's box whose centre is nearest a product's (within a quarter of its size), by the
product's width in the head's input pixels.

Run: python bench/detdiag.py [--queries N] HEAD...  (a head file, or ``default`` / ``w96dense``);
writes bench/out/detdiag.{json,png}.
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

from bench.relsetup import SPLITS, load_setup, product_lists, train_or_load, validation_photos  # noqa: E402
from embed.boxes import iou_matrix  # noqa: E402
from embed.detector import Detection  # noqa: E402
from embed.detrain import DetTrainConfig  # noqa: E402
from embed.dethead import letterbox  # noqa: E402
from embed.productdet import ProductDetector  # noqa: E402

BINS = ((0, 60), (60, 100), (100, 160), (160, 1000))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("heads", nargs="+")
    ap.add_argument("--queries", type=int, default=80)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    s = load_setup()
    val = validation_photos(s, args.queries)
    cat = s.emb.embed(s.images)
    named = {"default": lambda: train_or_load(s, "full", DetTrainConfig())[0],
             "w96dense": lambda: train_or_load(s, "full", DetTrainConfig(width=96, dense=0.3))[0]}
    report: dict[str, dict] = {}
    for name in args.heads:
        head = named[name]() if name in named else Path(name)
        det = ProductDetector(head, s.emb.backbone.net, runtime="onnx", export_dir=s.settings.artifacts_dir, conf=0.1,
                              top_k=20, min_size=s.settings.min_box_size, threads=s.settings.threads)
        n = dict.fromkeys(("products", "true_box_top1", "a_box_top1_of5", "a_box_top1_of8", "no_box_iou0.5_of5",
                           "box_iou0.5_wrong_top1"), 0)
        ratios: list[tuple[float, float, float]] = []
        for split in SPLITS:
            for sc, _ in val[split]:
                img = sc.image
                x, lb = letterbox(img, det.size)
                raw = det.raw(x)
                gt = np.array(sc.boxes, np.float32)
                loose = det.from_raw(raw, lb, img.width, img.height, conf=0.05)
                if loose:
                    p = np.array([o.box for o in loose])
                    pc, gc = (p[:, :2] + p[:, 2:]) / 2, (gt[:, :2] + gt[:, 2:]) / 2
                    for g, c in zip(gt, gc):
                        gw, gh = g[2] - g[0], g[3] - g[1]
                        d = np.hypot((pc[:, 0] - c[0]) / gw, (pc[:, 1] - c[1]) / gh)
                        j = int(d.argmin())
                        if d[j] < 0.25:
                            ratios.append((gw * lb.scale, (p[j, 2] - p[j, 0]) / gw, (p[j, 3] - p[j, 1]) / gh))
                if split != "cluttered":
                    continue
                dets = det.from_raw(raw, lb, img.width, img.height)[:8]
                truth = [Detection(tuple(map(float, g)), "object", 1.0) for g in gt]  # type: ignore[arg-type]
                lists, _ = product_lists(s.emb.embed([o.crop(img, 0.1) for o in dets + truth]), cat, s.pids)
                dl, tl = lists[: len(dets)], lists[len(dets):]
                m = iou_matrix(gt, np.array([o.box for o in dets[:5]]).reshape(-1, 4)) if dets else np.zeros((len(gt), 0))
                for i, pid in enumerate(sc.product_ids):
                    n["products"] += 1
                    n["true_box_top1"] += tl[i][0] == pid
                    n["a_box_top1_of5"] += any(lst[0] == pid for lst in dl[:5])
                    n["a_box_top1_of8"] += any(lst[0] == pid for lst in dl)
                    if m.shape[1] == 0 or m[i].max() < 0.5:
                        n["no_box_iou0.5_of5"] += 1
                    elif dl[int(m[i].argmax())][0] != pid:
                        n["box_iou0.5_wrong_top1"] += 1
        r = np.array(ratios)
        bias = {f"{lo}-{hi}px": {"boxes": int(((r[:, 0] >= lo) & (r[:, 0] < hi)).sum()),
                                 "median_w_ratio": float(np.median(r[(r[:, 0] >= lo) & (r[:, 0] < hi), 1])),
                                 "median_h_ratio": float(np.median(r[(r[:, 0] >= lo) & (r[:, 0] < hi), 2]))}
                for lo, hi in BINS if ((r[:, 0] >= lo) & (r[:, 0] < hi)).any()}
        report[name] = {"head": str(head), "cluttered": {k: (v / n["products"] if k != "products" else v) for k, v in n.items()},
                        "size_bias": bias}
        print(name, json.dumps(report[name]["cluttered"]), flush=True)
        for b, v in bias.items():
            print(f"  true width {b:10s} {v['boxes']:4d} boxes: predicted/true width {v['median_w_ratio']:.2f} "
                  f"height {v['median_h_ratio']:.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detdiag.json").write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "validation_photos_per_split": args.queries,
        "load_average_at_start": s.load_start, "load_average_at_end": os.getloadavg(), "heads": report}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for j, (name, rep) in enumerate(report.items()):
        bins = list(rep["size_bias"])
        ax.bar(np.arange(len(bins)) + 0.8 / len(report) * j - 0.4 + 0.4 / len(report),
               [rep["size_bias"][b]["median_w_ratio"] for b in bins], 0.8 / len(report), label=name)
        ax.set_xticks(np.arange(len(bins)), [f"true width {b}" for b in bins])
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set_ylabel("median predicted / true width")
    ax.set_title("size bias of the heads (validation photos)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "detdiag.png", dpi=120)
    print(f"wrote {args.out / 'detdiag.json'} and detdiag.png")


if __name__ == "__main__":
    main()
