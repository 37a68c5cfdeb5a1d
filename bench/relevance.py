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
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from embed.catalog import read_catalog  # noqa: E402
from embed.compose import STYLES, SceneStyle, compose, product_cutout  # noqa: E402
from embed.config import EmbedSettings  # noqa: E402
from embed.detector import WHOLE_IMAGE_LABEL, Detection, SaliencyDetector, detect_objects  # noqa: E402
from embed.detrain import DetTrainConfig, detector_key, fit, save_head  # noqa: E402
from embed.embedder import Embedder  # noqa: E402
from embed.evalmetrics import box_recall, counted, product_ranks, rank_of, recall_at  # noqa: E402
from embed.imageio import read_image_file  # noqa: E402
from embed.models import spec_from_settings  # noqa: E402
from embed.productdet import ProductDetector  # noqa: E402
from embed.sample_catalog import build_sample_catalog  # noqa: E402
from embed.textures import load_textures, split_textures  # noqa: E402

SPLITS = ("single", "scene", "cluttered")


def whole(img) -> Detection:
    return Detection((0.0, 0.0, float(img.width), float(img.height)), WHOLE_IMAGE_LABEL, 1.0)


def train_or_load(name: str, net, products, textures, cfg: DetTrainConfig, fingerprint: str, tex_names: list[str],
                  cache: Path) -> tuple[Path, dict]:
    path = cache / f"bench-head-{name}-{detector_key(fingerprint, 'lite0', cfg, tex_names)}.pt"
    if path.is_file():
        return path, json.loads(path.with_suffix(".json").read_text())
    head, stats = fit(net, products, textures, cfg, quiet=False, export_dir=cache)
    cache.mkdir(parents=True, exist_ok=True)
    save_head(head, path, cfg)
    path.with_suffix(".json").write_text(json.dumps(stats))
    return path, stats


def main() -> None:  # noqa: C901 (a benchmark script reads top to bottom)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=150, help="photos per split")
    ap.add_argument("--scenes", type=int, default=DetTrainConfig.scenes, help="detector training scenes")
    ap.add_argument("--steps", type=int, default=DetTrainConfig.steps, help="detector training steps")
    ap.add_argument("--ablate", action="store_true", help="also train the ablation heads (no clutter, no textures)")
    ap.add_argument("--only", default="", help="comma-separated variant numbers to run (0-based; default all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    load_start = os.getloadavg()
    settings = EmbedSettings(cache_dir=ROOT / ".cache")
    csv = build_sample_catalog(ROOT / ".cache" / "tuxpaint")
    catalog = read_catalog(csv)
    images = [read_image_file(it.image_path) for it in catalog.items]
    pids = [it.product_id for it in catalog.items]
    rng = random.Random(2026)
    held = set(rng.sample(range(len(pids)), len(pids) // 4))
    train_idx = [i for i in range(len(pids)) if i not in held]
    textures = load_textures(ROOT / ".cache" / "textures")
    tex_train, tex_held = split_textures(textures)
    tex_names = [n for n, _ in textures]
    print(f"catalog {len(pids)} products ({len(held)} held out of detector training); textures {len(tex_train)} "
          f"train / {len(tex_held)} held out; load {load_start}", flush=True)

    from embed.train import adapt_to_catalog

    t0 = time.monotonic()
    proj = adapt_to_catalog(catalog, settings)
    adapt_s = time.monotonic() - t0
    emb = Embedder(spec_from_settings(settings, projection=proj), batch_size=32, runtime="onnx",
                   export_dir=settings.artifacts_dir, threads=settings.threads)
    shipped = Embedder(spec_from_settings(settings), batch_size=32, runtime="onnx", export_dir=settings.artifacts_dir,
                       threads=settings.threads)
    net = emb.backbone.net
    products = [(pids[i], images[i]) for i in train_idx]
    cfg = DetTrainConfig(scenes=args.scenes, steps=args.steps)
    heads: dict[str, tuple[Path, dict]] = {"full": train_or_load("full", net, products, tex_train, cfg, catalog.fingerprint(),
                                                                  tex_names, settings.artifacts_dir)}
    if args.ablate:
        plain_mix = ((STYLES["single"], 0.3), (STYLES["scene"], 0.7))
        heads["no-clutter"] = train_or_load("noclutter", net, products, tex_train,
                                            DetTrainConfig(scenes=args.scenes, steps=args.steps, styles=plain_mix),
                                            catalog.fingerprint(), tex_names, settings.artifacts_dir)
        heads["no-textures"] = train_or_load("notex", net, products, [], cfg, catalog.fingerprint(), [],
                                             settings.artifacts_dir)
    dets = {k: ProductDetector(p, net, runtime="onnx", export_dir=settings.artifacts_dir, conf=settings.det_conf,
                               threads=settings.threads) for k, (p, _) in heads.items()}
    saliency = SaliencyDetector(net, min_size=settings.min_box_size)

    # evaluation photos: new compositions, held-out textures, half of them of held-out products
    cut = {i: product_cutout(images[i]) for i in range(len(pids))}
    held_l, seen_l = sorted(held), train_idx
    splits: dict[str, list] = {}
    for s_i, split in enumerate(SPLITS):
        style: SceneStyle = STYLES[split]
        r = random.Random(10_000 + s_i)
        photos = []
        for q in range(args.queries):
            pool = held_l if q % 2 == 0 else seen_l
            k = r.randint(*style.products)
            chosen = r.sample(pool, k)
            sc = compose([(pids[i], cut[i]) for i in chosen], r, style, tex_held, cutouts=True)
            if sc.boxes:
                photos.append((sc, q % 2 == 0))
        splits[split] = photos

    cat_vecs = {"adapted": emb.embed(images), "shipped": shipped.embed(images)}
    t_obj: dict[str, list[float]] = {}

    def objects_for(variant: str, img, sc) -> list[Detection]:
        t = time.perf_counter()
        if variant == "saliency, whole photo first (shipped)":
            objs = detect_objects(saliency, img, 8, whole="first")
        elif variant == "oracle boxes":
            objs = [Detection(tuple(map(float, b)), "object", 1.0) for b in sc.boxes] + [whole(img)]
        else:
            name = variant.split(":")[1].split(",")[0].strip() if ":" in variant else "full"
            objs = detect_objects(dets[name], img, settings.max_objects,
                                  whole="first" if "whole photo first" in variant else "last")
            if "whole photo ranked at" in variant:  # the whole photo as one more candidate with a fixed score
                at = float(variant.rsplit(" ", 1)[1])
                k = next((i for i, o in enumerate(objs[:-1]) if o.score < at), len(objs) - 1)
                objs = [*objs[:k], objs[-1], *objs[k:-1]]
        t_obj.setdefault(variant, []).append(time.perf_counter() - t)
        return objs

    variants = [("saliency, whole photo first (shipped)", "adapted"), ("head:full", "adapted"),
                ("head:full, whole photo first", "adapted"), ("head:full", "shipped"), ("oracle boxes", "adapted"),
                ("head:full, whole photo ranked at 0.4", "adapted")]
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
                vecs = e.embed([o.crop(sc.image) for o in objs])
                t_embed.append((time.perf_counter() - t) / max(1, len(objs)))
                lists = product_ranks(vecs @ cat_vecs[proj_name].T, pids)
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
        "detector_config": cfg.key(), "adaptation_s": adapt_s, "textures": tex_names,
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
