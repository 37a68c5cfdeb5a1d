"""Compare detector heads, input sizes and projections on VALIDATION photos (never the test split).

For each variant (a head file, the input size it runs at, the catalog projection): the head's boxes at
threshold 0.1 / NMS 0.5 (``--candidates`` boxes + the whole photo), crops padded by 0.1 and embedded,
the learned order (``embed.objrank``) re-fitted 2-fold for that variant (fitted on half the photos,
scored on the other half) with duplicates last; first n+1 objects counted. Also: the shipped weights
(``objrank.DEFAULT_WEIGHTS``) as they are, detector recall at IoU 0.5 of all candidates, perfect boxes,
and the detect time per photo.

Validation photos: detector-training products on training textures, compositions of their own seeds
(``bench.relsetup.validation_photos``); with ``--strict``, products and textures held out of the heads'
training, disjoint from the test split's (``bench.relsetup.strict_split``). Variants are given as
``NAME=HEAD[,HEAD...][@SIZE][+hard][+protoK][+viewsV][+stepsS][+crowdedC][+tex][+refine[ZOOM][+minPX]][+ft=PREFIX][+detbb=PATH]``: HEAD is a head file (or ``default`` for the bench head of the shipped
config, ``w96dense`` for the width-96 head with dense targets, ``stride8`` for the stride-8 head,
``giou`` for the default head trained with a GIoU box loss of weight 1 next to the L1, ``giou2`` with
weight 2, ``gioudense`` with weight 1 and dense targets 0.3, ``default-seed1`` / ``giou-seed1`` the
default / giou head trained with another seed, ``base300`` / ``base300-seed1`` the head of the default
config before the sixth round (300 scenes / 300 steps; seeds 0 and 1), ``more900`` / ``more1500`` the default head trained on 900 / 1500
scenes for as many steps (``more900-seed1`` with another seed, ``more900clutter`` on a mix with twice the
cluttered and crowded scenes), ``w96more900`` the width-96 dense head on 900 / 900), SIZE
the input side (default: the head's; several heads joined by commas are an ensemble: their raw outputs
are averaged before decoding, each with its own backbone pass here), ``+hard`` the projection adapted with
``EMBED_TRAIN_HARD_VIEWS=0.4`` (without it: 0, the default), ``+protoK`` catalog prototypes of K views
(``EMBED_CATALOG_VIEWS=K``, ``embed.prototypes``; ``+proto`` is K=8), ``+viewsV`` / ``+stepsS`` the
projection adapted with V synthetic views per image / S steps (``EMBED_TRAIN_VIEWS`` / ``EMBED_TRAIN_STEPS``), ``+crowdedC``
a share C of the views crowded by other products (``EMBED_TRAIN_CROWDED``; ``+crowded0`` is the fifth round's), ``+tex`` half the crowded views on
training textures (``EMBED_TRAIN_TEXTURES=1``; the heads' texture pool, never the evaluation photos'), ``+refine`` the box-refinement pass of
``EMBED_DET_REFINE`` (``embed.refine``: the head re-run on a crop of ZOOM x each candidate
box, default 6; ``+minPX`` refines only boxes at least PX input pixels long in the first pass; its time
is counted in the detect time), ``+ft=PREFIX`` the embedder from ``PREFIX-lite0.pth`` and
``PREFIX-projection.pt`` (a backbone fine-tuned by ``bench/headft.py --save``; no adaptation runs, and the
detector keeps the stock backbone), ``+detbb=PATH`` the detector's backbone from a Lite0 state_dict
(``bench/detft.py``; default: the stock weights).

``--calibrate`` resizes every box by a size calibration fitted for that head on the (non-strict)
validation photos (``fit_size_calibration``).

Run: python bench/detround.py --queries 40 --variant base=default --variant s8=stride8 ...;
writes bench/out/detround.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.relsetup import (  # noqa: E402
    SPLITS,
    catalog_seeds,
    compose_photos,
    load_setup,
    product_lists,
    score_photo,
    strict_split,
    strict_validation_photos,
    train_or_load,
    validation_photos,
)
from embed import objrank, prototypes  # noqa: E402
from embed.compose import TRAIN_STYLES  # noqa: E402
from embed.detector import WHOLE_IMAGE_LABEL, Detection  # noqa: E402
from embed.detrain import DetTrainConfig  # noqa: E402
from embed.dethead import letterbox  # noqa: E402
from embed.embedder import Embedder  # noqa: E402
from embed.evalmetrics import box_recall, recall_at  # noqa: E402
from embed.models import spec_from_settings  # noqa: E402
from embed.productdet import ProductDetector  # noqa: E402
from embed.query import FoundObject, evidence  # noqa: E402
from embed.refine import refine_objects  # noqa: E402
from embed.store import Hit  # noqa: E402

HARD_VIEWS = 0.4

# the shipped training mix with the cluttered and crowded styles weighted twice (single and scene kept)
CLUTTER_HEAVY = tuple((st, w * (2.0 if k >= 2 else 1.0)) for k, (st, w) in enumerate(TRAIN_STYLES))


def sized(head: Path, size: int | None, tmp: Path) -> Path:
    """The head file, or a copy that runs at input ``size``."""
    if size is None:
        return head
    sd = torch.load(head)
    sd["_meta.size"] = torch.tensor(size)
    out = tmp / f"{head.stem}-at{size}.pt"
    torch.save(sd, out)
    return out


def fit_size_calibration(det: ProductDetector, photos: dict[str, list]) -> np.ndarray:
    """Per axis (a, b) of log(true size) = a + b log(predicted size), in the head's input pixels, over the
    head's box whose centre is nearest each product's (within a quarter of its size)."""
    xs, ys = [], []
    for split in SPLITS:
        for sc, _ in photos[split]:
            img = sc.image
            x, lb = letterbox(img, det.size)
            dets = det.from_raw(det.raw(x), lb, img.width, img.height, conf=0.05)
            if not dets:
                continue
            p = np.array([o.box for o in dets])
            pc = (p[:, :2] + p[:, 2:]) / 2
            for g in np.array(sc.boxes, np.float32):
                gs, gc = g[2:] - g[:2], (g[:2] + g[2:]) / 2
                d = np.hypot(*((pc - gc) / gs).T)
                j = int(d.argmin())
                if d[j] < 0.25:
                    xs.append(np.log((p[j, 2:] - p[j, :2]) * lb.scale))
                    ys.append(np.log(gs * lb.scale))
    x, y = np.array(xs), np.array(ys)
    return np.array([np.polyfit(x[:, k], y[:, k], 1)[::-1] for k in range(2)])  # rows: (a, b) for w, h


def calibrated(dets: list[Detection], coef: np.ndarray, scale: float, w: int, h: int) -> list[Detection]:
    """Boxes resized about their centres by the size calibration (clipped to the photo)."""
    out = []
    for o in dets:
        b = np.asarray(o.box, np.float64)
        c, size = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]) * scale
        new = np.exp(coef[:, 0] + coef[:, 1] * np.log(np.maximum(size, 1.0))) / scale
        x0, y0 = np.maximum(c - new / 2, 0)
        x1, y1 = np.minimum(c + new / 2, (w, h))
        out.append(Detection((float(x0), float(y0), float(x1), float(y1)), o.label, o.score))
    return out


def flag_value(flags: list[str], prefix: str, *, bare: float | None = None, absent: float | None = None) -> float | None:
    """The number after ``prefix`` in the first flag starting with it (``+refine6`` -> 6.0): ``bare``
    for the flag alone (an error when None), ``absent`` when no flag starts with ``prefix``."""
    for f in flags:
        if f.startswith(prefix):
            value = f.removeprefix(prefix)
            if value:
                return float(value)
            if bare is None:
                raise ValueError(f"+{prefix} needs a number")
            return bare
    return absent


def main() -> None:  # noqa: C901 (a benchmark script reads top to bottom)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=40, help="validation photos per split")
    ap.add_argument("--variant", action="append", default=[], help="NAME=HEAD[@SIZE][+hard][+protoK][+viewsV][+stepsS][+crowdedC][+tex][+refine[ZOOM][+minPX]] (repeatable)")
    ap.add_argument("--candidates", type=int, default=5)
    ap.add_argument("--max-objects", type=int, default=6)
    ap.add_argument("--pad", type=float, default=0.1)
    ap.add_argument("--pad2", type=float, default=0.0,
                    help="also embed every box at this padding and keep the better-matching crop (0 = off)")
    ap.add_argument("--calibrate", action="store_true",
                    help="resize the boxes by a size calibration fitted on the (non-strict) validation photos")
    ap.add_argument("--strict", action="store_true",
                    help="validation products and textures held out of the heads' training (bench.relsetup.strict_split); "
                         "the named heads are trained without them")
    ap.add_argument("--unseen-bg", action="store_true",
                    help="with --strict: the validation products on the unseen backgrounds of the extra texture "
                         "packages (EMBED_DET_TEXTURES beyond ukui-wallpapers; bench.relsetup.Setup.tex_extra_held)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    s = load_setup()
    tmp = s.settings.artifacts_dir / "detround"
    tmp.mkdir(parents=True, exist_ok=True)
    val = strict_validation_photos(s, args.queries) if args.strict else validation_photos(s, args.queries)
    fit_idx, fit_tex, val_idx, _ = strict_split(s)
    if args.unseen_bg:
        if not (args.strict and s.tex_extra_held):
            raise SystemExit("--unseen-bg needs --strict and an extra package in EMBED_DET_TEXTURES")
        val = compose_photos(s, args.queries, 30_000, [val_idx], s.tex_extra_held)
    pool = {"textures": fit_tex, "product_idx": fit_idx} if args.strict else {}
    prefix = "strict" if args.strict else "full"
    embs: dict[str, tuple[Embedder, np.ndarray]] = {}

    def embedder(hard: bool, proto: int = 0, adapt: dict | None = None, ft: str = "") -> tuple[Embedder, np.ndarray]:
        adapt = adapt or {}
        key = ("hard" if hard else "plain") + (f"-proto{proto}" if proto else "") + "".join(f"-{k}{v}" for k, v in adapt.items()) + ft
        if key not in embs:
            from embed.train import adapt_to_catalog

            views = HARD_VIEWS if hard else 0.0
            update: dict = {"catalog_views": proto}
            if ft:  # a backbone and projection fine-tuned by bench/headft.py --save (the detector keeps the stock one)
                update["weights"], proj = Path(f"{ft}-lite0.pth"), Path(f"{ft}-projection.pt")
            else:
                proj = adapt_to_catalog(s.catalog, s.settings.model_copy(update={"train_hard_views": views, **adapt}),
                                        textures=fit_tex if args.strict else s.tex_train)
            spec = spec_from_settings(s.settings.model_copy(update=update), projection=proj)
            e = Embedder(spec, batch_size=32, runtime="onnx", export_dir=s.settings.artifacts_dir, threads=s.settings.threads)
            # catalog vectors as the import worker makes them (prototypes seeded by each file's sha256)
            embs[key] = (e, prototypes.catalog_vectors(e, s.images, catalog_seeds(s)))
        return embs[key]

    heads = {"default": lambda: train_or_load(s, prefix, DetTrainConfig(), **pool)[0],  # the shipped config
             "w96dense": lambda: train_or_load(s, prefix, DetTrainConfig(width=96, dense=0.3), **pool)[0],
             "stride8": lambda: train_or_load(s, prefix, DetTrainConfig(stride=8), **pool)[0],
             "giou": lambda: train_or_load(s, prefix, DetTrainConfig(giou=1.0), **pool)[0],
             "giou2": lambda: train_or_load(s, prefix, DetTrainConfig(giou=2.0), **pool)[0],
             "gioudense": lambda: train_or_load(s, prefix, DetTrainConfig(giou=1.0, dense=0.3), **pool)[0],
             "default-seed1": lambda: train_or_load(s, prefix, DetTrainConfig(seed=1), **pool)[0],
             "giou-seed1": lambda: train_or_load(s, prefix, DetTrainConfig(giou=1.0, seed=1), **pool)[0],
             "base300": lambda: train_or_load(s, prefix, DetTrainConfig(scenes=300, steps=300), **pool)[0],
             "base300-seed1": lambda: train_or_load(s, prefix, DetTrainConfig(scenes=300, steps=300, seed=1), **pool)[0],
             "more900": lambda: train_or_load(s, prefix, DetTrainConfig(scenes=900, steps=900), **pool)[0],
             "more1500": lambda: train_or_load(s, prefix, DetTrainConfig(scenes=1500, steps=1500), **pool)[0],
             "more900-seed1": lambda: train_or_load(s, prefix, DetTrainConfig(scenes=900, steps=900, seed=1), **pool)[0],
             "more900clutter": lambda: train_or_load(s, prefix, DetTrainConfig(scenes=900, steps=900, styles=CLUTTER_HEAVY),
                                                     **pool)[0],
             "w96more900": lambda: train_or_load(s, prefix, DetTrainConfig(width=96, dense=0.3, scenes=900, steps=900),
                                                 **pool)[0]}
    report: dict[str, dict] = {}
    for spec in args.variant or ["default=default"]:
        name, rest = spec.split("=", 1)
        rest, *flags = rest.split("+")
        hard = "hard" in flags
        zoom = flag_value(flags, "refine", bare=6.0, absent=0.0)
        min_px = flag_value(flags, "min", absent=0.0)
        head_s, _, size_s = rest.partition("@")

        detbb = next((Path(f[6:]) for f in flags if f.startswith("detbb=")), None)
        backbone = (Embedder(spec_from_settings(s.settings.model_copy(update={"weights": detbb})), runtime="torch")
                    .backbone.net.eval() if detbb else s.emb.backbone.net)

        def detector(path: Path) -> ProductDetector:
            return ProductDetector(sized(path, int(size_s) if size_s else None, tmp), backbone, runtime="onnx",
                                   export_dir=s.settings.artifacts_dir, threads=s.settings.threads, conf=0.1, iou=0.5,
                                   top_k=20, min_size=s.settings.min_box_size)

        # "A,B": an ensemble, the heads' raw outputs (heatmap logits, sizes, offsets) averaged before decoding
        paths = [heads[h]() if h in heads else Path(h) for h in head_s.split(",")]
        det, *others = [detector(p) for p in paths]
        head = head_s if others else paths[0]

        def raw(x: np.ndarray) -> np.ndarray:
            return np.mean([det.raw(x), *[o.raw(x) for o in others]], axis=0) if others else det.raw(x)
        proto = int(flag_value(flags, "proto", bare=8, absent=0))
        adapt = {key: int(v) for key, prefix in (("train_views", "views"), ("train_steps", "steps"))
                 if (v := flag_value(flags, prefix)) is not None}
        if (crowded := flag_value(flags, "crowded")) is not None:
            adapt["train_crowded"] = crowded
        if "tex" in flags:
            adapt["train_textures"] = True
        ft = next((f[3:] for f in flags if f.startswith("ft=")), "")
        emb, cat = embedder(hard, proto, adapt, ft)
        coef = fit_size_calibration(det, validation_photos(s, args.queries)) if args.calibrate else None
        rows: dict[str, list] = {}
        t_det: dict[str, list[float]] = {}
        oracle: dict[str, list[int]] = {}
        cov_all = {sp: [0, 0] for sp in SPLITS}
        t0 = time.monotonic()
        for split in SPLITS:
            for sc, _ in val[split]:
                img = sc.image
                t = time.perf_counter()
                x, lb = letterbox(img, det.size)
                dets = det.from_raw(raw(x), lb, img.width, img.height)[: args.candidates]
                if coef is not None:
                    dets = calibrated(dets, coef, lb.scale, img.width, img.height)
                if zoom:
                    dets = refine_objects(det, img, dets, zoom, min_px=min_px)
                t_det.setdefault(split, []).append(time.perf_counter() - t)
                objs = [*dets, Detection((0.0, 0.0, float(img.width), float(img.height)), WHOLE_IMAGE_LABEL, 0.0)]
                truth = [Detection(tuple(map(float, b)), "object", 1.0) for b in sc.boxes]  # type: ignore[arg-type]
                vecs = emb.embed([o.crop(img, 0.0 if o.label == WHOLE_IMAGE_LABEL else args.pad) for o in objs]
                                 + [o.crop(img) for o in truth])
                lists, sims = product_lists(vecs, cat, s.pids)
                k = len(objs)
                if args.pad2 > 0 and dets:  # the same boxes at a second padding: keep the better top match
                    l2, s2 = product_lists(emb.embed([o.crop(img, args.pad2) for o in dets]), cat, s.pids)
                    for i in range(len(dets)):
                        if s2[i, 0] > sims[i, 0]:
                            lists[i], sims[i] = l2[i], s2[i]
                ev = [evidence(FoundObject(o.box, o.label, o.score, [Hit(0, p, float(v)) for p, v in zip(lst[:2], sm)]),
                               img.width, img.height) for o, lst, sm in zip(objs, lists[:k], sims[:k])]
                rows.setdefault(split, []).append((sc, objs, lists[:k], ev))
                oracle.setdefault(split, []).extend(score_photo(sc, truth + [objs[-1]], lists[k:] + [lists[k - 1]]).ranks)
                c, tt = box_recall(np.array([o.box for o in dets]).reshape(-1, 4), np.array(sc.boxes))
                cov_all[split][0] += c
                cov_all[split][1] += tt

        def labels(sc, ev):
            return [1.0 if e.top_product in sc.product_ids else 0.0 for e in ev]

        def fit_on(part: int) -> np.ndarray:
            xs, ys = [], []
            for split in SPLITS:
                for j, (sc, _o, _l, ev) in enumerate(rows[split]):
                    if j % 2 == part:
                        xs.append(objrank.features(ev))
                        ys += labels(sc, ev)
            return objrank.fit_logistic(np.concatenate(xs), np.asarray(ys))

        wparts = [fit_on(0), fit_on(1)]
        res: dict[str, dict] = {}
        for mode in ("whole last", "shipped weights", "learned 2-fold"):
            per = {}
            for split in SPLITS:
                ranks, cov, tot = [], 0, 0
                for j, (sc, objs, lists, ev) in enumerate(rows[split]):
                    if mode == "whole last":
                        idx = list(range(len(objs)))
                    else:
                        w = objrank.DEFAULT_WEIGHTS if mode == "shipped weights" else wparts[1 - j % 2]
                        idx = objrank.order(ev, w)
                    idx = idx[: args.max_objects]
                    ps = score_photo(sc, [objs[i] for i in idx], [lists[i] for i in idx])
                    ranks += ps.ranks
                    cov, tot = cov + ps.covered, tot + ps.total
                per[split] = {"recall@1": recall_at(ranks, 1), "recall@10": recall_at(ranks, 10), "det@0.5": cov / max(1, tot)}
            per["mean_recall@1"] = float(np.mean([per[sp]["recall@1"] for sp in SPLITS]))
            res[mode] = per
        res["perfect boxes"] = {sp: {"recall@1": recall_at(oracle[sp], 1), "recall@10": recall_at(oracle[sp], 10)}
                                for sp in SPLITS}
        res["det@0.5 all candidates"] = {sp: c / max(1, t) for sp, (c, t) in cov_all.items()}
        xs, ys = [], []
        for split in SPLITS:
            for sc, _o, _l, ev in rows[split]:
                xs.append(objrank.features(ev))
                ys += labels(sc, ev)
        weights = objrank.fit_logistic(np.concatenate(xs), np.asarray(ys))
        report[name] = {"variant": spec, "head": str(head), "size_calibration": None if coef is None else coef.tolist(), "size": det.size, "stride": det.head.stride,
                        "projection": "hard views 0.4" if hard else "default", "catalog_views": proto, "adaptation": adapt, "refine_zoom": zoom, "refine_min_px": min_px,
                        "detect_ms_p50": 1000 * float(np.median(sum(t_det.values(), []))),
                        "detect_ms_p50_by_split": {sp: 1000 * float(np.median(v)) for sp, v in t_det.items()},
                        "results": res, "weights_all": [float(v) for v in weights], "elapsed_s": time.monotonic() - t0,
                        "load_average": os.getloadavg()}
        for mode in ("whole last", "shipped weights", "learned 2-fold", "perfect boxes"):
            print(f"{name:14s} {mode:16s} " + " ".join(f"{sp} {res[mode][sp]['recall@1']:.3f}/{res[mode][sp]['recall@10']:.3f}"
                                                     + (f"/{res[mode][sp]['det@0.5']:.2f}" if "det@0.5" in res[mode][sp] else "")
                                                     for sp in SPLITS), flush=True)
        print(f"{name:14s} det@0.5 of all {args.candidates} candidates: "
              + " ".join(f"{sp} {v:.3f}" for sp, v in res["det@0.5 all candidates"].items())
              + f"; detect p50 {report[name]['detect_ms_p50']:.0f} ms; {time.monotonic() - t0:.0f} s, load {os.getloadavg()[0]:.1f}",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = {"command": " ".join(["python", *sys.argv]), "validation_photos_per_split": args.queries,
           "strict_validation": args.strict, "unseen_backgrounds": args.unseen_bg, "size_calibration": args.calibrate, "candidates": args.candidates, "pad": args.pad, "pad2": args.pad2, "load_average_at_start": s.load_start,
           "load_average_at_end": os.getloadavg(), "cpu_count": os.cpu_count(), "variants": report}
    (args.out / "detround.json").write_text(json.dumps(out, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    names = list(report)
    x = np.arange(len(SPLITS))
    wdt = 0.8 / max(1, len(names))
    for j, n in enumerate(names):
        ax.bar(x + j * wdt - 0.4 + wdt / 2, [report[n]["results"]["learned 2-fold"][sp]["recall@1"] for sp in SPLITS],
               wdt, label=n)
    ax.axhline(0.90, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, SPLITS)
    ax.set_ylim(0, 1)
    ax.set_ylabel("validation recall@1, first n+1 objects")
    ax.set_title(f"detector variants, {args.queries} validation photos per split (learned order, 2-fold)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out / "detround.png", dpi=120)
    print(f"wrote {args.out / 'detround.json'} and detround.png")


if __name__ == "__main__":
    main()
