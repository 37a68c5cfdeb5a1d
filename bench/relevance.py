"""Relevance benchmark: find every product in a photo, counted the way a shopper looks (first n+1 objects).

Catalog: Debian's tuxpaint stamps (``embed.sample_catalog``). A quarter of the products are held out
of detector training; the detector is trained (``embed.detrain``) on scenes of the other products on
the training textures only. Evaluation photos are new compositions on held-out textures, half of them
of held-out products, in three splits (``embed.compose.STYLES``): ``single`` (one product on a plain
backdrop), ``scene`` (1-2 products, a distractor, a little occlusion), ``cluttered`` (3-4 products,
2-4 distractors, occlusion up to 35 %, perspective, blur, JPEG quality 20-45).

For a photo of n products only the first n+1 returned objects count: a product is found at rank r
when one of them lists it at rank r (exact cosine search over the catalog vectors, grouped by
product: what a FLAT index returns). Detector recall: a product covered by a counted box at IoU 0.5.

Run: python bench/relevance.py [--queries N] [--ablate]; writes bench/out/relevance.{json,png,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from bench.relsetup import SPLITS, catalog_seeds, load_setup, product_lists, test_photos, train_or_load  # noqa: E402
from embed import objrank, prototypes  # noqa: E402
from embed.compose import STYLES  # noqa: E402
from embed.detector import WHOLE_IMAGE_LABEL, Detection, SaliencyDetector, detect_objects  # noqa: E402
from embed.detrain import DetTrainConfig  # noqa: E402
from embed.embedder import Embedder  # noqa: E402
from embed.evalmetrics import box_recall, counted, rank_of, recall_at  # noqa: E402
from embed.models import spec_from_settings  # noqa: E402
from embed.productdet import ProductDetector  # noqa: E402
from embed.query import FoundObject, evidence  # noqa: E402
from embed.refine import refine_objects  # noqa: E402
from embed.store import Hit  # noqa: E402

LEARNED = "learned order"


def whole(img) -> Detection:
    return Detection((0.0, 0.0, float(img.width), float(img.height)), WHOLE_IMAGE_LABEL, 1.0)


def main() -> None:  # noqa: C901 (a benchmark script reads top to bottom)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=150, help="photos per split")
    ap.add_argument("--scenes", type=int, default=DetTrainConfig.scenes, help="detector training scenes")
    ap.add_argument("--steps", type=int, default=DetTrainConfig.steps, help="detector training steps")
    ap.add_argument("--ablate", action="store_true", help="also train the ablation heads (no clutter, no textures)")
    ap.add_argument("--only", default="", help="comma-separated variant numbers to run (0-based; default all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    s = load_setup()
    settings, pids, images, emb, load_start = s.settings, s.pids, s.images, s.emb, s.load_start
    shipped = Embedder(spec_from_settings(settings), batch_size=32, runtime="onnx", export_dir=settings.artifacts_dir,
                       threads=settings.threads)
    net = emb.backbone.net
    cfg = DetTrainConfig(scenes=args.scenes, steps=args.steps, width=settings.det_width, dense=settings.det_dense,
                         stride=settings.det_stride)  # EMBED_DET_WIDTH / _DENSE / _STRIDE as `embed train` reads them
    heads: dict[str, tuple[Path, dict]] = {"full": train_or_load(s, "full", cfg)}
    if args.ablate:
        plain_mix = ((STYLES["single"], 0.3), (STYLES["scene"], 0.7))
        heads["no-clutter"] = train_or_load(s, "noclutter", DetTrainConfig(scenes=args.scenes, steps=args.steps,
                                                                          styles=plain_mix))
        heads["no-textures"] = train_or_load(s, "notex", cfg, textures=[])
    dets = {k: ProductDetector(p, net, runtime="onnx", export_dir=settings.artifacts_dir, conf=settings.det_conf,
                               min_size=settings.min_box_size, threads=settings.threads) for k, (p, _) in heads.items()}
    saliency = SaliencyDetector(net, min_size=settings.min_box_size)
    held = s.held
    splits = test_photos(s, args.queries)

    # the adapted catalog as `embed import` indexes it (prototypes when EMBED_CATALOG_VIEWS > 0)
    cat_vecs = {"adapted": prototypes.catalog_vectors(emb, images, catalog_seeds(s)), "shipped": shipped.embed(images)}
    t_obj: dict[str, list[float]] = {}

    def objects_for(variant: str, img, sc) -> list[Detection]:
        t = time.perf_counter()
        if variant == "saliency, whole photo first (shipped)":
            objs = detect_objects(saliency, img, 8, whole="first")
        elif variant == "oracle boxes":
            objs = [Detection(tuple(map(float, b)), "object", 1.0) for b in sc.boxes] + [whole(img)]
        else:
            name = variant.split(":")[1].split(",")[0].strip() if ":" in variant else "full"
            n_obj = (settings.det_candidates or settings.max_objects - 1) + 1 if LEARNED in variant else settings.max_objects
            objs = detect_objects(dets[name], img, max(n_obj, settings.max_objects),
                                  whole="first" if "whole photo first" in variant else "last")
            if "whole photo ranked at" in variant:  # the whole photo as one more candidate with a fixed score
                at = float(variant.rsplit(" ", 1)[1])
                k = next((i for i, o in enumerate(objs[:-1]) if o.score < at), len(objs) - 1)
                objs = [*objs[:k], objs[-1], *objs[k:-1]]
            if "refined" in variant:  # EMBED_DET_REFINE: the head again on a zoomed crop around each box
                objs = refine_objects(dets[name], img, objs, settings.det_refine_zoom)
        t_obj.setdefault(variant, []).append(time.perf_counter() - t)
        return objs

    variants = [("saliency, whole photo first (shipped)", "adapted"), ("head:full, whole photo last", "adapted"),
                ("head:full, whole photo first", "adapted"), (f"head:full, {LEARNED}", "adapted"),
                ("oracle boxes", "adapted"), (f"head:full, {LEARNED}", "shipped"),
                (f"head:full, {LEARNED}, refined", "adapted")]
    if args.ablate:
        variants += [("head:no-clutter", "adapted"), ("head:no-textures", "adapted")]
    if args.only:
        variants = [variants[int(i)] for i in args.only.split(",")]
    results: dict[str, dict] = {}
    t_embed: list[float] = []
    for variant, proj_name in variants:
        e = emb if proj_name == "adapted" else shipped
        key = f"{variant} [{proj_name}]"
        results[key] = {}
        for split, photos in splits.items():
            ranks_n1, ranks_all, unseen_n1, seen_n1, nobj = [], [], [], [], []
            cov, tot = 0, 0
            for sc, unseen in photos:
                objs = objects_for(variant, sc.image, sc)
                t = time.perf_counter()
                pad = settings.crop_pad if variant.startswith("head:") else 0.0
                vecs = e.embed([o.crop(sc.image, 0.0 if o.label == WHOLE_IMAGE_LABEL else pad) for o in objs])
                t_embed.append((time.perf_counter() - t) / max(1, len(objs)))
                lists, sims = product_lists(vecs, cat_vecs[proj_name], pids)
                if LEARNED in variant:  # what QueryEngine does after the search
                    ev = [evidence(FoundObject(o.box, o.label, o.score, [Hit(0, p, float(v)) for p, v in
                                                                         zip(lst[:2], sm)]), sc.image.width,
                                   sc.image.height) for o, lst, sm in zip(objs, lists, sims)]
                    idx = objrank.order(ev, objrank.DEFAULT_WEIGHTS)[: settings.max_objects]
                    objs, lists = [objs[i] for i in idx], [lists[i] for i in idx]
                n = len(sc.product_ids)
                first = counted(lists, n)
                c, tt = box_recall(np.array([o.box for o in counted(objs, n)]), np.array(sc.boxes))
                cov, tot = cov + c, tot + tt
                nobj.append(len(objs))
                for pid in sc.product_ids:
                    r1 = rank_of(pid, first)
                    ranks_n1.append(r1)
                    ranks_all.append(rank_of(pid, lists))
                    (unseen_n1 if unseen else seen_n1).append(r1)
            res = {"photos": len(photos), "products": len(ranks_n1),
                   "recall@1": recall_at(ranks_n1, 1), "recall@10": recall_at(ranks_n1, 10),
                   "recall@1_all_objects": recall_at(ranks_all, 1), "recall@10_all_objects": recall_at(ranks_all, 10),
                   "recall@1_heldout_products": recall_at(unseen_n1, 1), "recall@1_seen_products": recall_at(seen_n1, 1),
                   "detector_recall_iou0.5": cov / max(1, tot), "objects_per_photo": float(np.mean(nobj))}
            results[key][split] = res
            print(f"{key:58s} {split:9s} r@1 {res['recall@1']:.3f} r@10 {res['recall@10']:.3f} "
                  f"(all objects {res['recall@1_all_objects']:.3f}/{res['recall@10_all_objects']:.3f}) "
                  f"det@0.5 {res['detector_recall_iou0.5']:.3f} unseen r@1 {res['recall@1_heldout_products']:.3f} "
                  f"obj/photo {res['objects_per_photo']:.1f}", flush=True)
    report = {
        "command": " ".join(["python", *sys.argv]), "catalog_products": len(pids), "held_out_products": len(held),
        "photos_per_split": args.queries, "detector_train": {k: {**v[1], "head": v[0].name} for k, v in heads.items()},
        "detector_config": cfg.key(), "adaptation_s": s.adapt_s, "textures": s.tex_names,
        "query_settings": {"det_conf": settings.det_conf, "crop_pad": settings.crop_pad, "det_candidates": settings.det_candidates,
                           "max_objects": settings.max_objects, "det_refine_zoom": settings.det_refine_zoom,
                           "rank_weights": list(objrank.DEFAULT_WEIGHTS)},
        "detect_ms_mean": {k: 1000 * float(np.mean(v)) for k, v in t_obj.items()},
        "embed_ms_per_object_mean": 1000 * float(np.mean(t_embed)),
        "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(), "cpu_count": os.cpu_count(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "relevance.json").write_text(json.dumps(report, indent=2))
    md = ["| variant | " + " | ".join(f"{s} r@1 / r@10 / det@0.5" for s in SPLITS) + " |",
          "|---|" + "---|" * len(SPLITS)]
    for key, per in results.items():
        md.append(f"| {key} | " + " | ".join(f"{per[s]['recall@1']:.3f} / {per[s]['recall@10']:.3f} / "
                                             f"{per[s]['detector_recall_iou0.5']:.2f}" for s in SPLITS) + " |")
    (args.out / "relevance.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    keys = list(results)
    x = np.arange(len(SPLITS))
    wdt = 0.8 / len(keys)
    for j, key in enumerate(keys):
        ax.bar(x + j * wdt - 0.4 + wdt / 2, [results[key][s]["recall@1"] for s in SPLITS], wdt, label=key)
    ax.axhline(0.90, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, SPLITS)
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall@1, first n+1 objects")
    ax.set_title(f"tuxpaint catalog ({len(pids)} products), {args.queries} photos per split")
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out / "relevance.png", dpi=120)
    print(f"wrote {args.out / 'relevance.json'}, relevance.md and relevance.png")


if __name__ == "__main__":
    main()
