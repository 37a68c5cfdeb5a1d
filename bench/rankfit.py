"""Tune the query path on VALIDATION photos (never the test split): detector threshold, NMS IoU, crop
padding, how many candidates, and the object order (detector order with the whole photo last or first,
or the learned order of ``embed.objrank``, fitted here).

Validation photos: detector-training products on training textures, compositions of their own seeds
(``bench.relsetup.validation_photos``). The learned order is scored 2-fold (fitted on one half of the
photos, scored on the other); the weights it prints and writes are fitted on all of them.

Run: python bench/rankfit.py [--queries N] [--head PATH]; writes bench/out/rankfit.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.relsetup import SPLITS, load_setup, product_lists, score_photo, train_or_load, validation_photos  # noqa: E402
from embed import objrank  # noqa: E402
from embed.detector import WHOLE_IMAGE_LABEL, Detection  # noqa: E402
from embed.detrain import DetTrainConfig  # noqa: E402
from embed.dethead import letterbox  # noqa: E402
from embed.evalmetrics import recall_at  # noqa: E402
from embed.productdet import ProductDetector  # noqa: E402


def evidence(objs: list[Detection], sims: np.ndarray, lists: list[list[str]], w: int, h: int) -> list[objrank.ObjectEvidence]:
    out = []
    for o, (s1, s2), lst in zip(objs, sims, lists):
        x0, y0, x1, y1 = o.box
        out.append(objrank.ObjectEvidence(o.score if o.label != WHOLE_IMAGE_LABEL else 0.0, o.label == WHOLE_IMAGE_LABEL,
                                          (x1 - x0) * (y1 - y0) / max(1.0, w * h), float(s1), float(s2),
                                          lst[0] if lst else None))
    return out


def main() -> None:  # noqa: C901
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=40, help="validation photos per split")
    ap.add_argument("--head", type=Path, default=None, help="detector head (default: train/load the bench head)")
    ap.add_argument("--max-objects", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    s = load_setup()
    head = args.head or train_or_load(s, "full", DetTrainConfig())[0]
    det = ProductDetector(head, s.emb.backbone.net, runtime="onnx", export_dir=s.settings.artifacts_dir,
                          threads=s.settings.threads, top_k=20, min_size=s.settings.min_box_size)
    val = validation_photos(s, args.queries)
    cat_vecs = s.emb.embed(s.images)
    raws = {}
    for split, photos in val.items():
        for j, (sc, _) in enumerate(photos):
            x, lb = letterbox(sc.image, det.size)
            raws[split, j] = (det.raw(x), lb)
    cache: dict[tuple, tuple[np.ndarray, list[str], tuple[float, float]]] = {}

    def embed_objs(key: tuple, img, objs: list[Detection], pad: float):
        need = [o for o in objs if (key, pad, tuple(round(v) for v in o.box)) not in cache]
        if need:
            vecs = s.emb.embed([o.crop(img, pad if o.label != WHOLE_IMAGE_LABEL else 0.0) for o in need])
            lists, sims = product_lists(vecs, cat_vecs, s.pids)
            for o, v, lst, sm in zip(need, vecs, lists, sims):
                cache[key, pad, tuple(round(v_) for v_ in o.box)] = (v, lst, (float(sm[0]), float(sm[1])))
        got = [cache[key, pad, tuple(round(v) for v in o.box)] for o in objs]
        return [g[1] for g in got], np.asarray([g[2] for g in got], np.float32).reshape(-1, 2)

    # crops pooled from the detection pass (one backbone forward) instead of re-embedding each crop
    from embed.detrain import onnx_maps

    maps = onnx_maps(s.emb.backbone.net, det.size, s.settings.artifacts_dir, s.settings.threads)
    roi_rows: dict[str, list] = {}
    for split, photos in val.items():
        for j, (sc, _) in enumerate(photos):
            raw, lb = raws[split, j]
            img = sc.image
            x, _ = letterbox(img, det.size)
            f32 = maps(x)[1][0]  # (1280, G/2, G/2), stride 32
            dets = det.from_raw(raw, lb, img.width, img.height, conf=0.2, iou=0.5)[:5]
            objs = [*dets, Detection((0.0, 0.0, float(img.width), float(img.height)), WHOLE_IMAGE_LABEL, 0.0)]
            feats = []
            for o in objs:
                b = np.asarray(o.box) * lb.scale / 32
                c0, r0 = int(np.floor(b[0])), int(np.floor(b[1]))
                c1, r1 = max(c0 + 1, int(np.ceil(b[2]))), max(r0 + 1, int(np.ceil(b[3])))
                feats.append(f32[:, r0:r1, c0:c1].mean(axis=(1, 2)))
            lists, sims = product_lists(s.emb.project(np.stack(feats)), cat_vecs, s.pids)
            roi_rows.setdefault(split, []).append((sc, objs, lists, evidence(objs, sims, lists, img.width, img.height)))

    grid = list(itertools.product((0.1, 0.2, 0.3), (0.3, 0.5), (0.0, 0.1), (3, 5, 8)))
    rows: dict[tuple, dict] = {}
    t0 = time.monotonic()
    for conf, iou, pad, cand in grid:
        per: dict[str, list] = {}
        for split, photos in val.items():
            for j, (sc, _) in enumerate(photos):
                raw, lb = raws[split, j]
                img = sc.image
                dets = det.from_raw(raw, lb, img.width, img.height, conf=conf, iou=iou)[:cand]
                objs = [*dets, Detection((0.0, 0.0, float(img.width), float(img.height)), WHOLE_IMAGE_LABEL, 0.0)]
                lists, sims = embed_objs((split, j), img, objs, pad)
                per.setdefault(split, []).append((sc, objs, lists, evidence(objs, sims, lists, img.width, img.height)))
        rows[conf, iou, pad, cand] = per
        print(f"conf {conf} iou {iou} pad {pad} cand {cand}: {len(cache)} crops embedded, "
              f"{time.monotonic() - t0:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)

    def labels(sc, ev):
        return [1.0 if e.top_product in sc.product_ids else 0.0 for e in ev]

    def fit_on(per, part):
        xs, ys = [], []
        for split in SPLITS:
            for j, (sc, _objs, _l, ev) in enumerate(per[split]):
                if j % 2 == part:
                    xs.append(objrank.features(ev))
                    ys += labels(sc, ev)
        return objrank.fit_logistic(np.concatenate(xs), np.asarray(ys))

    def evaluate(per, mode, weights_by_part=None):
        res = {}
        for split in SPLITS:
            r, cov, tot = [], 0, 0
            for j, (sc, objs, lists, ev) in enumerate(per[split]):
                if mode == "whole last":
                    idx = list(range(len(objs)))
                elif mode == "whole first":
                    idx = [len(objs) - 1, *range(len(objs) - 1)]
                else:
                    w = weights_by_part[1 - j % 2]  # fitted on the other half
                    idx = objrank.order(ev, w, dedupe=mode.endswith("dedupe"))
                idx = idx[: args.max_objects]
                if mode in ("whole last", "whole first") and len(objs) - 1 not in idx:  # the fallback stays
                    idx = [*idx[:-1], len(objs) - 1]
                ps = score_photo(sc, [objs[i] for i in idx], [lists[i] for i in idx])
                r += ps.ranks
                cov, tot = cov + ps.covered, tot + ps.total
            res[split] = {"recall@1": recall_at(r, 1), "recall@10": recall_at(r, 10), "det@0.5": cov / max(1, tot)}
        res["mean_recall@1"] = float(np.mean([res[sp]["recall@1"] for sp in SPLITS]))
        return res

    rows["roi", 0.2, 0.5, 0.0, 5] = roi_rows  # type: ignore[index]
    table = []
    for key, per in rows.items():
        if key[0] == "roi":
            wparts = [fit_on(per, 0), fit_on(per, 1)]
            for mode in ("whole last", "learned, dedupe"):
                res = evaluate(per, mode, wparts)
                table.append({"conf": 0.2, "nms_iou": 0.5, "pad": 0.0, "candidates": 5, "crops": "pooled from the detection pass",
                              "order": mode, **res})
            continue
        wparts = [fit_on(per, 0), fit_on(per, 1)]
        for mode in ("whole last", "whole first", "learned", "learned, dedupe"):
            if mode.startswith("whole") and key[3] != 5:
                continue  # detector order: candidates beyond max_objects-1 are never shown
            res = evaluate(per, mode, wparts)
            table.append({"conf": key[0], "nms_iou": key[1], "pad": key[2], "candidates": key[3], "crops": "re-embedded",
                          "order": mode, **res})
    table.sort(key=lambda r: -r["mean_recall@1"])
    for r in table[:15]:
        print(f"conf {r['conf']} iou {r['nms_iou']} pad {r['pad']} cand {r['candidates']} {r['order']:16s} {r['crops'][:6]} "
              + " ".join(f"{sp} {r[sp]['recall@1']:.3f}/{r[sp]['recall@10']:.3f}" for sp in SPLITS)
              + f" mean r@1 {r['mean_recall@1']:.3f}")
    for r in table:
        if r["crops"] != "re-embedded" or (r["conf"], r["nms_iou"], r["pad"], r["candidates"]) == (0.2, 0.5, 0.0, 5):
            print("reference:", r["crops"], r["order"], " ".join(f"{sp} {r[sp]['recall@1']:.3f}/{r[sp]['recall@10']:.3f}"
                                                               for sp in SPLITS), f"mean r@1 {r['mean_recall@1']:.3f}")
    best = next(r for r in table if r["order"].startswith("learned") and r["crops"] == "re-embedded")
    per = rows[best["conf"], best["nms_iou"], best["pad"], best["candidates"]]
    xs, ys = [], []
    for split in SPLITS:
        for sc, _o, _l, ev in per[split]:
            xs.append(objrank.features(ev))
            ys += labels(sc, ev)
    weights = objrank.fit_logistic(np.concatenate(xs), np.asarray(ys))
    print("weights (", ", ".join(objrank.FEATURES), "):", ", ".join(f"{v:.4f}" for v in weights))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rankfit.json").write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "head": str(head), "validation_photos_per_split": args.queries,
        "best": best, "weights": dict(zip(objrank.FEATURES, map(float, weights))), "table": table,
        "load_average_at_start": s.load_start, "load_average_at_end": os.getloadavg()}, indent=2))
    print(f"wrote {args.out / 'rankfit.json'}")


if __name__ == "__main__":
    main()
