"""Fine-tuning the top of the frozen backbone for the catalog, with PERFECT boxes (issue #15, seventh round).

Every round so far adapted only a linear projection on top of Lite0's pooled 1280-d features, and the
learned attention pooling of the sixth round did not help: the per-cell features themselves already mix
product and background. This asks whether training the backbone's last layers (``head``: the 1x1
``conv_head`` 320 -> 1280 and its BatchNorm affine; ``block+head``: also the last MBConv block) together
with the projection, on the adaptation's views (half crowded by other catalog products, on training
backgrounds half of the time), makes the embedding robust to what surrounds a product. The trunk below
the trained layers is frozen, so its maps are computed once (ONNX Runtime) and training runs on them.

Eighth round: ``--upto 8 --trainable top`` caches the trunk below block 8 and trains blocks 8-15 (the
upper half: stage 5 on), ``conv_head`` and the projection; ``--save DIR`` writes the result as an
EMBED_WEIGHTS / EMBED_PROJECTION pair (``bench/detround.py``'s ``+ft=DIR/top-upto8``); ``--negatives``
also trains projections on pooled features with the whole catalog as negatives.

Photo sets as in ``bench/bgdiag.py`` (validation only): strict validation, every product on the
validation backgrounds, every product on the unseen backgrounds of the larger pool.
Run: EMBED_THREADS=2 nice -n 5 python bench/headft.py --queries 150 [--scene-crops --trainable none,head]
     ... --upto 8 --batch 64 --trainable top --save .cache/models/headft --out bench/out/round8
Writes OUT/headft[-scenes][-negatives][-uptoN].json and .png, and with --scene-crops a few sample crops.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from embed.textures import LARGER_POOL  # noqa: E402

os.environ.setdefault("EMBED_DET_TEXTURES", LARGER_POOL)

from bench.embdiag import crops_of  # noqa: E402
from bench.relsetup import SPLITS, catalog_seeds, compose_photos, load_setup, strict_split, strict_validation_photos  # noqa: E402
from embed import prototypes  # noqa: E402
from embed.augment import crowded_view, synthetic_view  # noqa: E402
from embed.compose import compose, pick_style, product_cutout  # noqa: E402
from embed.evalmetrics import product_ranks, rank_of, recall_at  # noqa: E402
from embed.train import _neighbours, info_nce, train_projection  # noqa: E402


class Trunk(torch.nn.Module):
    """Lite0 from the stem up to block ``upto`` (exclusive)."""

    def __init__(self, net, upto: int) -> None:
        super().__init__()
        self.net, self.upto = net, upto

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        for block in n._blocks[: self.upto]:
            x = block(x)
        return x


class Top(torch.nn.Module):
    """The trainable rest: blocks ``upto``.., conv_head, bn1, swish, mean over cells."""

    def __init__(self, net, upto: int) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(copy.deepcopy(list(net._blocks[upto:])))
        self.conv_head, self.bn1, self.swish = copy.deepcopy(net._conv_head), copy.deepcopy(net._bn1), net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.swish(self.bn1(self.conv_head(x))).mean(dim=(2, 3))


def plot(results: dict[str, dict], path: Path) -> None:
    """Cluttered recall@1 per variant and photo set, as a bar chart (also bench/bgdiag.py's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(next(iter(results.values())))
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(results)
    for j, (label, res) in enumerate(results.items()):
        ax.bar([i + j * width for i in range(len(sets))], [res[k]["cluttered"]["recall@1"] for k in sets], width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sets))], sets)
    low = min(res[k]["cluttered"]["recall@1"] for res in results.values() for k in sets)
    ax.set_ylim(max(0.0, round(low - 0.05, 1)), 1.0)
    ax.set_ylabel("cluttered recall@1, perfect boxes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def scene_crops(cuts: list, per_image: int, textures: list, rng: random.Random) -> list[list]:
    """``per_image`` crops of each catalog image's product in composed scenes (the detector's training
    styles, ``textures`` as backgrounds): its visible box widened by the query path's padding (0.1) with
    a random jitter of each side (up to 10 % of the box), as a detector's box would be. Products
    less than half visible are skipped; scenes draw the products still short of crops; a product that
    10 x ``per_image`` scenes did not show gets crowded views instead."""
    out: list[list] = [[] for _ in cuts]
    tries = [0] * len(cuts)
    while True:
        need = [i for i in range(len(cuts)) if len(out[i]) < per_image and tries[i] < 10 * per_image]
        if not need:
            for i in range(len(cuts)):  # a product no scene shows at least half visible: crowded views
                out[i] += [crowded_view(cuts[i], _neighbours(cuts, i, rng), rng, backgrounds=textures)
                           for _ in range(per_image - len(out[i]))]
            return out
        style = pick_style(rng)
        k = min(len(need), rng.randint(*style.products))
        chosen = rng.sample(need, k)
        for i in chosen:
            tries[i] += 1
        sc = compose([(str(i), cuts[i]) for i in chosen], rng, style, textures, cutouts=True)
        for pid, (x0, y0, x1, y1), vis in zip(sc.product_ids, sc.boxes, sc.visible):
            i = int(pid)
            if vis < 0.5 or len(out[i]) >= per_image:
                continue
            w, h = x1 - x0, y1 - y0
            box = [x0 - w * (0.1 + rng.uniform(-0.1, 0.1)), y0 - h * (0.1 + rng.uniform(-0.1, 0.1)),
                   x1 + w * (0.1 + rng.uniform(-0.1, 0.1)), y1 + h * (0.1 + rng.uniform(-0.1, 0.1))]
            box = [max(0, box[0]), max(0, box[1]), min(sc.image.width, box[2]), min(sc.image.height, box[3])]
            out[i].append(sc.image.crop(tuple(int(round(v)) for v in box)))


def save(out: Path, name: str, net, top: Top, w: torch.Tensor) -> None:
    """The whole backbone with ``top``'s layers in place, and the projection, as the embedder loads them."""
    whole = copy.deepcopy(net)
    upto = len(whole._blocks) - len(top.blocks)
    for i, b in enumerate(top.blocks):
        whole._blocks[upto + i] = b
    whole._conv_head, whole._bn1 = top.conv_head, top.bn1
    out.mkdir(parents=True, exist_ok=True)
    torch.save(whole.state_dict(), out / f"{name}-upto{upto}-lite0.pth")
    torch.save({"weight": w.contiguous()}, out / f"{name}-upto{upto}-projection.pt")
    print(f"saved {out / f'{name}-upto{upto}-lite0.pth'} and its projection", flush=True)


def pooled_variants(args, top: Top, w0: torch.Tensor, cat_m, proto_m, tv_m, k: int, evaluate) -> None:
    """Projection-only training on pooled features (the frozen top run once), in-batch negatives
    against whole-catalog negatives, with the catalog images or their stored prototypes as anchors."""
    top.eval()

    def pool(m: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([top(torch.from_numpy(m[i: i + 256].astype(np.float32)))
                              for i in range(0, len(m), 256)]).numpy()

    t = time.monotonic()
    cat_p, proto_p = pool(cat_m), pool(proto_m).reshape(len(cat_m), k, -1)
    tv_p = pool(tv_m.reshape(-1, *tv_m.shape[2:])).reshape(len(cat_m), tv_m.shape[1], -1)
    print(f"pooled features: {time.monotonic() - t:.0f} s", flush=True)
    n = len(cat_p)
    cat_t, proto_t, tv_t = torch.from_numpy(cat_p), torch.from_numpy(proto_p), torch.from_numpy(tv_p)

    def anchors(w: torch.Tensor, proto: bool) -> torch.Tensor:
        own = F.normalize(cat_t @ w.T, dim=1)
        if not proto:
            return own
        return F.normalize(own + F.normalize(proto_t @ w.T, dim=-1).mean(dim=1), dim=1)

    # in-batch negatives: the adaptation's own training, on these pooled features
    w_in, losses = train_projection(cat_p, tv_p, w0.shape[0], steps=args.steps, batch=args.batch, init=w0)
    print(f"projection, in-batch negatives (pooled): loss {np.mean(losses[:20]):.3f} -> {np.mean(losses[-20:]):.3f}",
          flush=True)
    evaluate("projection, in-batch negatives (pooled)", top, w_in)
    for label, proto in (("projection, whole-catalog negatives", False),
                         ("projection, whole catalog, prototype anchors", True)):
        torch.manual_seed(0)
        w = torch.nn.Parameter(w0.clone())
        opt = torch.optim.Adam([w], lr=2e-3)
        g = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(args.steps):
            idx = torch.randperm(n, generator=g)[: args.batch]
            vi = torch.randint(0, tv_t.shape[1], (len(idx),), generator=g)
            q = F.normalize(tv_t[idx, vi] @ w.T, dim=1)
            loss = F.cross_entropy(q @ anchors(w, proto).T / 0.05, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        print(f"{label}: loss {np.mean(losses[:20]):.3f} -> {np.mean(losses[-20:]):.3f}", flush=True)
        evaluate(label, top, w.detach())


def main() -> None:  # noqa: C901 (a benchmark script reads top to bottom)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr-top", type=float, default=1e-4)
    ap.add_argument("--scene-crops", action="store_true",
                    help="the second half of each image's views are crops of its box in composed training scenes "
                         "(embed.compose, the detector's training styles, training backgrounds) instead of crowded views")
    ap.add_argument("--trainable", default="none,head,block+head",
                    help="variants to train (comma-separated): none, head, block+head, or top (every block from --upto on)")
    ap.add_argument("--upto", type=int, default=0,
                    help="first block above the cached trunk (0: the last block, as in round 7; 8: stride-16 stage 5 on)")
    ap.add_argument("--negatives", action="store_true",
                    help="also train projections on pooled features against the whole catalog as negatives "
                         "(anchors: the catalog images, or their prototypes as stored)")
    ap.add_argument("--save", type=Path,
                    help="write each trained variant's whole Lite0 state_dict and projection here "
                         "(<label>-lite0.pth, <label>-projection.pt: an EMBED_WEIGHTS / EMBED_PROJECTION pair)")
    ap.add_argument("--replot", type=Path, help="only draw the plot of a JSON this script wrote")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "round7")
    args = ap.parse_args()
    if args.replot:
        plot(json.loads(args.replot.read_text())["results"], args.replot.with_suffix(".png"))
        return
    t0 = time.monotonic()
    torch.set_num_threads(max(1, int(os.environ.get("EMBED_THREADS", "2"))))
    s = load_setup()
    emb = s.emb
    net = emb.backbone.net.eval()
    _, fit_tex, _, tex_val = strict_split(s)
    every = list(range(len(s.pids)))
    n = args.queries
    sets = {"strict val": strict_validation_photos(s, n),
            "all, val bg": compose_photos(s, n, 50_000, [every], tex_val),
            "all, unseen bg": compose_photos(s, n, 60_000, [every], s.tex_extra_held)}
    rows = {k: crops_of(v, 0.0) for k, v in sets.items()}
    from embed.onnxrt import OrtRunner, export, tensor_digest

    upto = args.upto or len(net._blocks) - 1  # blocks from here on are above the cached trunk
    trunk = Trunk(net, upto).eval()
    name = f"lite0-trunk{upto}-{tensor_digest(trunk)}-224.onnx"
    ort = OrtRunner(lambda: export(trunk, torch.zeros(2, 3, 224, 224), s.settings.artifacts_dir / name,
                                   output_names=["maps"], dynamic_batch=True), s.settings.threads)

    def maps(images) -> np.ndarray:
        return np.concatenate([ort(emb.preprocess(images[i: i + 32]).numpy())[0].astype(np.float16)
                               for i in range(0, len(images), 32)])

    t = time.monotonic()
    seeds = catalog_seeds(s)
    k = emb.spec.catalog_views or 8
    cat_m = maps(s.images)
    proto_m = maps([v for im, sd in zip(s.images, seeds) for v in prototypes.views(im, k, emb.spec.catalog_hard, sd)])
    q_m = {name: {sp: [maps(c) for _, c in r[sp]] for sp in SPLITS} for name, r in rows.items()}
    print(f"trunk maps for catalog, prototypes and queries: {time.monotonic() - t:.0f} s", flush=True)

    t = time.monotonic()
    rng = random.Random(0)
    cuts = [product_cutout(im) for im in s.images]
    nc = args.views // 2
    views = []
    scene = scene_crops(cuts, nc, fit_tex, rng) if args.scene_crops else None
    for i, im in enumerate(s.images):
        views += [synthetic_view(im, rng) for _ in range(args.views - nc)]
        if scene is not None:
            views += scene[i]
        else:
            views += [crowded_view(cuts[i], _neighbours(cuts, i, rng), rng, backgrounds=fit_tex) for _ in range(nc)]
    if scene is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for j in range(12):
            scene[j][0].save(args.out / f"scene-crop-{j:02d}.jpg")
    tv_m = maps(views)
    tv_m = tv_m.reshape(len(s.images), args.views, *tv_m.shape[1:])
    print(f"{len(views)} training views rendered and mapped: {time.monotonic() - t:.0f} s", flush=True)

    results: dict[str, dict] = {}

    def evaluate(label: str, top: Top, w: torch.Tensor) -> None:
        top.eval()

        def vec(m: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = [F.normalize(top(torch.from_numpy(m[i: i + 256].astype(np.float32))) @ w.T, dim=1)
                       for i in range(0, len(m), 256)]
            return torch.cat(out).numpy()

        cat = prototypes.combine(vec(cat_m), vec(proto_m).reshape(len(s.images), k, -1))
        res: dict[str, dict] = {}
        for name, r in rows.items():
            res[name] = {}
            for sp in SPLITS:
                ranks = []
                for (pids, _), m in zip(r[sp], q_m[name][sp]):
                    lists = product_ranks(vec(m) @ cat.T, s.pids)
                    ranks += [rank_of(p, lists) for p in pids]
                res[name][sp] = {"recall@1": recall_at(ranks, 1), "recall@10": recall_at(ranks, 10), "products": len(ranks)}
            print(f"{label:30s} {name:15s}", " | ".join(f"{sp} {v['recall@1']:.3f}/{v['recall@10']:.3f}"
                                                        for sp, v in res[name].items()), flush=True)
        results[label] = res

    w0 = emb.projection.clone().float()
    evaluate("shipped", Top(net, upto), w0)

    def train(label: str, trainable: str, lr_top: float) -> None:
        torch.manual_seed(0)
        top = Top(net, upto)
        for p in top.parameters():
            p.requires_grad_(False)
        params = []
        if trainable != "none":
            blocks = {"head": [], "block+head": list(top.blocks)[-1:], "top": list(top.blocks)}[trainable]
            mods = [top.conv_head, top.bn1, *blocks]
            params = [p for m in mods for p in m.parameters()]
            for p in params:
                p.requires_grad_(True)
        w = torch.nn.Parameter(w0.clone())
        opt = torch.optim.Adam([{"params": [w], "lr": 2e-3}] + ([{"params": params, "lr": lr_top}] if params else []))
        g = torch.Generator().manual_seed(0)
        losses = []
        t = time.monotonic()
        for _ in range(args.steps):
            top.eval()  # BatchNorm keeps its running statistics; only its affine trains
            idx = torch.randperm(len(s.images), generator=g)[: args.batch]
            vi = torch.randint(0, args.views, (len(idx),), generator=g)
            xv = torch.from_numpy(tv_m[idx.numpy(), vi.numpy()].astype(np.float32))
            xa = torch.from_numpy(cat_m[idx.numpy()].astype(np.float32))
            loss = info_nce(F.normalize(top(xv) @ w.T, dim=1), F.normalize(top(xa) @ w.T, dim=1), 0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if len(losses) % 100 == 0:
                print(f"  {label}: step {len(losses)}, {time.monotonic() - t:.0f} s, loss {np.mean(losses[-20:]):.3f}", flush=True)
        print(f"{label}: {args.steps} steps in {time.monotonic() - t:.0f} s, loss {np.mean(losses[:20]):.3f} -> "
              f"{np.mean(losses[-20:]):.3f}", flush=True)
        evaluate(label, top, w.detach())
        if args.save:
            save(args.save, trainable, net, top, w.detach())

    labels = {"none": "projection only", "head": "head + projection", "block+head": "block + head + projection",
              "top": f"blocks {upto}-{len(net._blocks) - 1} + head + projection"}
    for tr in filter(None, args.trainable.split(",")):
        train(labels[tr] + (" (scene crops)" if args.scene_crops else ""), tr, args.lr_top)

    if args.negatives:
        pooled_variants(args, Top(net, upto), w0, cat_m, proto_m, tv_m, k, evaluate)

    args.out.mkdir(parents=True, exist_ok=True)
    out = {"command": "python bench/headft.py " + " ".join(sys.argv[1:]), "queries_per_split": n, "steps": args.steps,
           "upto": upto,
           "batch": args.batch, "lr_top": args.lr_top, "views": args.views, "training_backgrounds": len(fit_tex),
           "load_average_at_start": s.load_start, "load_average_at_end": os.getloadavg(),
           "cpu_count": os.cpu_count(), "elapsed_s": time.monotonic() - t0, "results": results}
    path = args.out / (("headft-scenes" if args.scene_crops else "headft") + ("-negatives" if args.negatives else "") + (f"-upto{args.upto}" if args.upto else "") + ".json")
    path.write_text(json.dumps(out, indent=2))
    plot(results, path.with_suffix(".png"))
    print(f"wrote {path} and its plot ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
