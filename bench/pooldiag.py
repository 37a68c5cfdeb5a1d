"""How the backbone's 7x7 feature map is pooled, with PERFECT boxes on strict validation (issue #15, round 6).

Lite0's embedding today is the plain mean of its 1280x7x7 map. In a cluttered photo the box around a
product also holds parts of its neighbours, the occluder and the background: the mean counts them as
much as the product. This asks whether a pooling that weighs the map's cells does better:

* ``centre s``: a fixed Gaussian over the 7x7 grid (sigma ``s`` cells), no training;
* ``attention``: a small learned attention (1280 -> 64 -> 1 per cell, plus a learned per-cell bias,
  softmax over the cells), trained jointly with the projection by the adaptation's InfoNCE on the same
  synthetic views (backbone frozen, maps cached), starting from the mean (zero logits).

``--crowded`` makes half of the training views crowded by 1-3 other catalog products
(``embed.augment.crowded_view``; the recorded run used this script's first copy of it, the same recipe
with one random draw fewer per neighbour). Every variant scores with catalog prototypes (K=8, hard 1.0)
as import builds them. Validation only; results in bench/out/round6/pooldiag*.json.
Run: EMBED_THREADS=2 nice -n 19 python bench/pooldiag.py --queries 150 [--crowded]
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
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.embdiag import crops_of  # noqa: E402
from bench.relsetup import SPLITS, catalog_seeds, load_setup, strict_validation_photos  # noqa: E402
from embed import prototypes  # noqa: E402
from embed.augment import crowded_view, synthetic_view  # noqa: E402
from embed.evalmetrics import product_ranks, rank_of, recall_at  # noqa: E402
from embed.train import info_nce  # noqa: E402


class MapNet(torch.nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


class AttnPool(torch.nn.Module):
    def __init__(self, c: int = 1280, hidden: int = 64, cells: int = 49) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(c, hidden)
        self.fc2 = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.fc2.weight)
        torch.nn.init.zeros_(self.fc2.bias)
        self.bias = torch.nn.Parameter(torch.zeros(cells))

    def forward(self, m: torch.Tensor) -> torch.Tensor:  # m: (B, C, HW)
        t = m.transpose(1, 2)  # (B, HW, C)
        logit = self.fc2(F.relu(self.fc1(t))).squeeze(-1) + self.bias
        w = torch.softmax(logit, dim=1)
        return (t * w.unsqueeze(-1)).sum(dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--views", type=int, default=12, help="training views per catalog image")
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--crowded", action="store_true", help="half the training views crowded by other products")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "round6")
    args = ap.parse_args()
    t0 = time.monotonic()
    s = load_setup()
    emb = s.emb
    from embed.onnxrt import OrtRunner, export, tensor_digest

    mapnet = MapNet(emb.backbone.net).eval()
    name = f"lite0-maps-{tensor_digest(mapnet)}-224.onnx"
    ort = OrtRunner(lambda: export(mapnet, torch.zeros(2, 3, 224, 224), s.settings.artifacts_dir / name,
                                   output_names=["maps"], dynamic_batch=True), s.settings.threads)

    def maps(images) -> np.ndarray:
        out = [ort(emb.preprocess(images[i: i + 32]).numpy())[0].reshape(-1, 1280, 49).astype(np.float16)
               for i in range(0, len(images), 32)]
        return np.concatenate(out)

    t = time.monotonic()
    cat_m = maps(s.images)
    seeds = catalog_seeds(s)
    k = emb.spec.catalog_views or 8
    proto_views = [v for im, sd in zip(s.images, seeds) for v in prototypes.views(im, k, 1.0, sd)]
    proto_m = maps(proto_views).reshape(len(s.images), k, 1280, 49)
    photos = strict_validation_photos(s, args.queries)
    rows = crops_of(photos, 0.0)
    q_m = {sp: [maps(crops) for _, crops in rows[sp]] for sp in SPLITS}
    print(f"maps for catalog, prototypes and queries: {time.monotonic() - t:.0f} s", flush=True)

    t = time.monotonic()
    rng = random.Random(0)
    if args.crowded:
        from embed.compose import product_cutout

        cuts = [product_cutout(im) for im in s.images]
        train_views = []
        for i in range(len(s.images)):
            for j in range(args.views):
                if j % 2 == 0:
                    train_views.append(synthetic_view(s.images[i], rng))
                else:
                    nbs = [cuts[rng.randrange(len(cuts))] for _ in range(rng.randint(1, 3))]
                    train_views.append(crowded_view(cuts[i], nbs, rng))
        args.out.mkdir(parents=True, exist_ok=True)
        for j, v in enumerate(train_views[:24]):
            v.save(args.out / f"view-{j:02d}.jpg")
    else:
        train_views = [synthetic_view(im, rng) for im in s.images for _ in range(args.views)]
    tv_m = maps(train_views).reshape(len(s.images), args.views, 1280, 49)
    print(f"maps for {len(train_views)} training views: {time.monotonic() - t:.0f} s", flush=True)

    w0 = emb.projection.clone()
    results: dict[str, dict] = {}

    def evaluate(name: str, pool, w: torch.Tensor) -> None:
        def vec(m: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                f = pool(torch.from_numpy(m.astype(np.float32)).reshape(-1, 1280, 49))
                return F.normalize(f @ w.T, dim=1).numpy()

        own = vec(cat_m)
        pv = vec(proto_m.reshape(-1, 1280, 49)).reshape(len(s.images), k, -1)
        cat = prototypes.combine(own, pv)
        res = {}
        for sp in SPLITS:
            ranks = []
            for (pids, _), m in zip(rows[sp], q_m[sp]):
                lists = product_ranks(vec(m) @ cat.T, s.pids)
                ranks += [rank_of(p, lists) for p in pids]
            res[sp] = {"recall@1": recall_at(ranks, 1), "recall@10": recall_at(ranks, 10), "products": len(ranks)}
        results[name] = res
        print(name, {sp: (round(r["recall@1"], 3), round(r["recall@10"], 3)) for sp, r in res.items()}, flush=True)

    def mean_pool(m: torch.Tensor) -> torch.Tensor:
        return m.mean(dim=2)

    def centre(sigma: float):
        yy, xx = np.mgrid[0:7, 0:7] - 3.0
        g = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2)).reshape(-1)
        gw = torch.from_numpy((g / g.sum()).astype(np.float32))
        return lambda m: (m * gw).sum(dim=2)

    evaluate("mean (shipped)", mean_pool, w0)
    for sg in (1.5, 2.5, 3.5):
        evaluate(f"centre {sg}", centre(sg), w0)

    def train(pool_mod: AttnPool | None, lr_pool: float = 1e-3, seed: int = 0, temperature: float = 0.05):
        torch.manual_seed(seed)
        w = torch.nn.Parameter(w0.clone())
        params = [{"params": [w], "lr": 2e-3}]
        if pool_mod is not None:
            params.append({"params": list(pool_mod.parameters()), "lr": lr_pool})
        opt = torch.optim.Adam(params)
        pool = pool_mod if pool_mod is not None else mean_pool
        g = torch.Generator().manual_seed(seed)
        n = len(s.images)
        losses = []
        for _ in range(args.steps):
            idx = torch.randperm(n, generator=g)[:256]
            vi = torch.randint(0, args.views, (len(idx),), generator=g)
            xv = torch.from_numpy(tv_m[idx.numpy(), vi.numpy()].astype(np.float32))
            xa = torch.from_numpy(cat_m[idx.numpy()].astype(np.float32))
            loss = info_nce(F.normalize(pool(xv) @ w.T, dim=1), F.normalize(pool(xa) @ w.T, dim=1), temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return w.detach(), losses

    t = time.monotonic()
    w_more, l1 = train(None)
    print(f"projection only, {args.steps} more steps from the shipped one: {time.monotonic() - t:.0f} s, "
          f"loss {l1[0]:.3f} -> {l1[-1]:.3f}", flush=True)
    evaluate("mean + projection trained further", mean_pool, w_more)
    t = time.monotonic()
    ap_mod = AttnPool()
    w_att, l2 = train(ap_mod)
    print(f"attention + projection: {time.monotonic() - t:.0f} s, loss {l2[0]:.3f} -> {l2[-1]:.3f}", flush=True)
    ap_mod.eval()
    evaluate("attention + projection", ap_mod, w_att)
    with torch.no_grad():
        print("learned cell bias (7x7):\n", np.round(ap_mod.bias.numpy().reshape(7, 7), 2), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    out = {"command": "python bench/pooldiag.py " + " ".join(sys.argv[1:]), "queries_per_split": args.queries,
           "load_average_at_start": s.load_start, "load_average_at_end": os.getloadavg(),
           "cpu_count": os.cpu_count(), "elapsed_s": time.monotonic() - t0, "results": results}
    (args.out / f"pooldiag{'-crowded' if args.crowded else ''}.json").write_text(json.dumps(out, indent=2))
    print(json.dumps({k_: v for k_, v in out.items() if k_ != "results"}), flush=True)


if __name__ == "__main__":
    main()
