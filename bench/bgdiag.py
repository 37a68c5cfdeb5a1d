"""How much the background costs the embedder, with PERFECT boxes (issue #15, seventh round).

The sixth round saw perfect boxes reach cluttered recall@1 0.953 on strict validation but 0.892 on the
test photos and put it down to the test split's held-out backgrounds. Strict validation differs in two
ways: 4 background photos instead of 6, and its photos show only the ~58 validation products, while the
test photos show the whole catalog. This script separates the two and asks whether more, and more
varied, backgrounds in training help:

* photo sets (every product's true box plus the whole photo, 150 photos per split, searched against the
  whole catalog): ``strict val`` (validation products on validation backgrounds, as detround);
  ``all, val bg`` (every product on the validation backgrounds); ``val, test bg`` and ``all, test bg``
  (diagnostic only: the test split's backgrounds, nothing is chosen on them); ``all, unseen bg`` (every
  product on every 4th background of the extra packages, never used in training);
* variants: ``shipped`` (the default projection and catalog prototypes); ``proto bg P`` (a share P of
  each catalog image's K prototype views set on a training background instead of a synthetic one);
  ``adapt bg`` (the adaptation's crowded views on the training backgrounds, ``EMBED_TRAIN_TEXTURES=1``
  with the larger pool) and ``adapt bg + proto bg 1.0``.

The extra backgrounds come from ``EMBED_DET_TEXTURES`` (default here: ukui-wallpapers,
mate-backgrounds, gimp-data). Writes bench/out/round7/bgdiag.{json,png}.
Run: EMBED_THREADS=2 nice -n 5 python bench/bgdiag.py --queries 150
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
from embed.textures import LARGER_POOL  # noqa: E402

os.environ.setdefault("EMBED_DET_TEXTURES", LARGER_POOL)

import embed.augment as augment  # noqa: E402
from bench.embdiag import crops_of  # noqa: E402
from bench.headft import plot  # noqa: E402
from bench.relsetup import SPLITS, catalog_seeds, compose_photos, load_setup, strict_split, strict_validation_photos  # noqa: E402
from embed import prototypes  # noqa: E402
from embed.compose import backdrop  # noqa: E402
from embed.embedder import Embedder  # noqa: E402
from embed.evalmetrics import product_ranks, rank_of, recall_at  # noqa: E402
from embed.models import spec_from_settings  # noqa: E402
from embed.train import adapt_to_catalog  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "round7")
    args = ap.parse_args()
    t0 = time.monotonic()
    s = load_setup()
    _, fit_tex, val_idx, tex_val = strict_split(s)
    if not s.tex_extra_held:
        raise SystemExit("EMBED_DET_TEXTURES names no extra package: nothing to hold out as unseen backgrounds")
    every = list(range(len(s.pids)))
    n = args.queries
    sets = {"strict val": strict_validation_photos(s, n),
            "all, val bg": compose_photos(s, n, 50_000, [every], tex_val),
            "val, test bg": compose_photos(s, n, 50_000, [val_idx], s.tex_held),
            "all, test bg": compose_photos(s, n, 50_000, [every], s.tex_held),
            "all, unseen bg": compose_photos(s, n, 60_000, [every], s.tex_extra_held)}
    rows = {k: crops_of(v, 0.0) for k, v in sets.items()}
    plain_background = augment.random_background
    results: dict[str, dict] = {}

    def evaluate(label: str, emb: Embedder, proto_bg: float) -> None:
        def background(rng, w, h):
            return backdrop(rng, w, h, fit_tex, False) if rng.random() < proto_bg else plain_background(rng, w, h)

        augment.random_background = background if proto_bg > 0 else plain_background
        try:
            cat = prototypes.catalog_vectors(emb, s.images, catalog_seeds(s))
        finally:
            augment.random_background = plain_background
        res: dict[str, dict] = {}
        for name, r in rows.items():
            res[name] = {}
            for sp in SPLITS:
                ranks = []
                for pids, crops in r[sp]:
                    lists = product_ranks(emb.embed(crops) @ cat.T, s.pids)
                    ranks += [rank_of(p, lists) for p in pids]
                res[name][sp] = {"recall@1": recall_at(ranks, 1), "recall@10": recall_at(ranks, 10), "products": len(ranks)}
            print(f"{label:24s} {name:15s}", " | ".join(f"{sp} {v['recall@1']:.3f}/{v['recall@10']:.3f}"
                                                        for sp, v in res[name].items()), flush=True)
        results[label] = res

    evaluate("shipped", s.emb, 0.0)
    evaluate("proto bg 0.5", s.emb, 0.5)
    evaluate("proto bg 1.0", s.emb, 1.0)
    st = s.settings.model_copy(update={"train_textures": True})
    t = time.monotonic()
    proj = adapt_to_catalog(s.catalog, st, textures=fit_tex)
    adapt_s = time.monotonic() - t
    emb = Embedder(spec_from_settings(st, projection=proj), batch_size=32, runtime="onnx",
                   export_dir=st.artifacts_dir, threads=st.threads)
    evaluate("adapt bg", emb, 0.0)
    evaluate("adapt bg + proto bg 1.0", emb, 1.0)

    args.out.mkdir(parents=True, exist_ok=True)
    out = {"command": "python bench/bgdiag.py " + " ".join(sys.argv[1:]), "queries_per_split": n,
           "textures": os.environ["EMBED_DET_TEXTURES"], "training_backgrounds": len(fit_tex),
           "unseen_backgrounds": len(s.tex_extra_held), "adapt_bg_s": adapt_s,
           "load_average_at_start": s.load_start, "load_average_at_end": os.getloadavg(),
           "cpu_count": os.cpu_count(), "elapsed_s": time.monotonic() - t0, "results": results}
    (args.out / "bgdiag.json").write_text(json.dumps(out, indent=2))
    plot(results, args.out / "bgdiag.png")
    print(f"wrote {args.out / 'bgdiag.json'} and bgdiag.png ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
