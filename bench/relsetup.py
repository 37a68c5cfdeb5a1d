"""What bench/relevance.py and bench/rankfit.py share: the catalog, its held-out split, the adapted
embedder, the trained head, the evaluation photos, and scoring one photo the way a shopper looks.

Splits (never mixed): the **test** photos use held-out textures and half held-out products
(``test_photos``); the **validation** photos, used to fit and tune, use only detector-training products
on training textures with other seeds (``validation_photos``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from embed.catalog import Catalog, read_catalog  # noqa: E402
from embed.compose import STYLES, compose, product_cutout  # noqa: E402
from embed.config import EmbedSettings  # noqa: E402
from embed.detrain import DetTrainConfig, detector_key, fit, save_head  # noqa: E402
from embed.embedder import Embedder  # noqa: E402
from embed.evalmetrics import box_recall, counted, product_ranks, rank_of  # noqa: E402
from embed.imageio import read_image_file  # noqa: E402
from embed.models import spec_from_settings  # noqa: E402
from embed.sample_catalog import build_sample_catalog  # noqa: E402
from embed.textures import PACKAGE, load_textures, package_list, split_textures  # noqa: E402

SPLITS = ("single", "scene", "cluttered")


@dataclass
class Setup:
    settings: EmbedSettings
    catalog: Catalog
    images: list
    pids: list[str]
    held: set[int]
    train_idx: list[int]
    textures: list
    tex_train: list
    tex_held: list
    emb: Embedder
    adapt_s: float
    load_start: tuple[float, float, float]
    tex_base_train: list = field(default_factory=list)  # the training pool of the base textures (strict split)
    tex_extra_held: list = field(default_factory=list)  # every 4th extra-package texture: unseen backgrounds
    cut: dict[int, object] = field(default_factory=dict)

    @property
    def tex_names(self) -> list[str]:
        return [n for n, _ in self.textures]

    def cutout(self, i: int):
        if i not in self.cut:
            self.cut[i] = product_cutout(self.images[i])
        return self.cut[i]


def load_setup() -> Setup:
    load_start = os.getloadavg()
    settings = EmbedSettings(cache_dir=ROOT / ".cache")
    catalog = read_catalog(build_sample_catalog(ROOT / ".cache" / "tuxpaint"))
    images = [read_image_file(it.image_path) for it in catalog.items]
    pids = [it.product_id for it in catalog.items]
    rng = random.Random(2026)
    held = set(rng.sample(range(len(pids)), len(pids) // 4))
    train_idx = [i for i in range(len(pids)) if i not in held]
    # The test and strict-validation backgrounds come from the base pool (ukui-wallpapers and the wheels'
    # photos) as in every round; other packages in EMBED_DET_TEXTURES only add training backgrounds, and
    # every 4th of them is held out as a further validation pool (unseen backgrounds).
    textures = load_textures(ROOT / ".cache" / "textures", package=PACKAGE)
    tex_train, tex_held = split_textures(textures)
    base_train = list(tex_train)
    extras = ",".join(p for p in package_list(settings.det_textures) if p != PACKAGE)
    extra = load_textures(ROOT / ".cache" / "textures", package=extras, wheels=False) if extras else []
    extra_train, extra_held = split_textures(extra) if extra else ([], [])
    textures, tex_train = textures + extra, tex_train + extra_train
    print(f"catalog {len(pids)} products ({len(held)} held out of detector training); textures {len(tex_train)} "
          f"train ({len(extra_train)} from {extras or 'no extra packages'}) / {len(tex_held)} held out; "
          f"load {load_start}", flush=True)
    from embed.train import adapt_to_catalog

    t0 = time.monotonic()
    proj = adapt_to_catalog(catalog, settings, textures=tex_train)  # with EMBED_TRAIN_TEXTURES: never held-out ones
    adapt_s = time.monotonic() - t0
    emb = Embedder(spec_from_settings(settings, projection=proj), batch_size=32, runtime="onnx",
                   export_dir=settings.artifacts_dir, threads=settings.threads)
    return Setup(settings, catalog, images, pids, held, train_idx, textures, tex_train, tex_held, emb, adapt_s,
                 load_start, base_train, extra_held)


def catalog_seeds(s: Setup) -> list[int]:
    """Each catalog image's prototype seed, as the import worker derives it (its file's sha256)."""
    from embed.prototypes import view_seed

    return [view_seed(hashlib.sha256(Path(it.image_path).read_bytes()).hexdigest()) for it in s.catalog.items]


def train_or_load(s: Setup, name: str, cfg: DetTrainConfig, textures: list | None = None,
                  product_idx: list[int] | None = None) -> tuple[Path, dict]:
    """The bench head ``name`` for ``cfg`` (cached); trained on ``product_idx`` (default: the detector-training
    products) on ``textures`` (default: the training textures). ``name`` must tell other pools apart."""
    tex = s.tex_train if textures is None else textures
    names = s.tex_names if textures is None or textures else []
    path = s.settings.artifacts_dir / f"bench-head-{name}-{detector_key(s.catalog.fingerprint(), 'lite0', cfg, names)}.pt"
    if path.is_file():
        return path, json.loads(path.with_suffix(".json").read_text())
    products = [(s.pids[i], s.images[i]) for i in (s.train_idx if product_idx is None else product_idx)]
    head, stats = fit(s.emb.backbone.net, products, tex, cfg, quiet=False, export_dir=s.settings.artifacts_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_head(head, path, cfg)
    path.with_suffix(".json").write_text(json.dumps(stats))
    return path, stats


def compose_photos(s: Setup, n: int, seed: int, pools: list[list[int]], textures: list) -> dict[str, list]:
    """Per split, ``n`` photos composed from ``pools`` of product indices (taken in turn) on ``textures``:
    (Composed, drawn from the first of several pools?)."""
    out: dict[str, list] = {}
    for s_i, split in enumerate(SPLITS):
        style = STYLES[split]
        r = random.Random(seed + s_i)
        photos = []
        for q in range(n):
            pool = pools[q % len(pools)]
            chosen = r.sample(pool, r.randint(*style.products))
            sc = compose([(s.pids[i], s.cutout(i)) for i in chosen], r, style, textures, cutouts=True)
            if sc.boxes:
                photos.append((sc, pool is pools[0] and len(pools) > 1))
        out[split] = photos
    return out


def test_photos(s: Setup, n: int) -> dict[str, list]:
    """Held-out textures; even photos of held-out products: (Composed, unseen products?) per split."""
    return compose_photos(s, n, 10_000, [sorted(s.held), s.train_idx], s.tex_held)


def validation_photos(s: Setup, n: int, seed: int = 20_000) -> dict[str, list]:
    """Detector-training products on training textures, other compositions (tuning only)."""
    return compose_photos(s, n, seed, [s.train_idx], s.tex_train)


def strict_split(s: Setup) -> tuple[list[int], list, list[int], list]:
    """A validation split held out of detector training like the test split is, disjoint from it:
    (training products, training textures, validation products, validation textures). Every 7th
    detector-training product and every 5th training texture are kept for validation; heads for it
    are trained on the rest (``train_or_load(..., textures=, product_idx=)``)."""
    val_idx = s.train_idx[6::7]
    keep = set(val_idx)
    base = s.tex_base_train or s.tex_train
    tex_val = base[4::5]
    tex_fit = [t for k, t in enumerate(base) if k % 5 != 4] + s.tex_train[len(base):]
    return [i for i in s.train_idx if i not in keep], tex_fit, val_idx, tex_val


def strict_validation_photos(s: Setup, n: int, seed: int = 30_000) -> dict[str, list]:
    """Validation products (held out of the strict heads' training) on validation textures."""
    _, _, val_idx, tex_val = strict_split(s)
    return compose_photos(s, n, seed, [val_idx], tex_val)


@dataclass
class PhotoScore:
    ranks: list[int]  # per product: best rank in the first n+1 objects
    ranks_all: list[int]  # ... in all objects
    covered: int
    total: int
    objects: int


def score_photo(sc, objs, lists: list[list[str]]) -> PhotoScore:
    """``objs`` (Detections in the order shown) with their product lists."""
    n = len(sc.product_ids)
    first = counted(lists, n)
    c, t = box_recall(np.array([o.box for o in counted(objs, n)]), np.array(sc.boxes))
    return PhotoScore([rank_of(p, first) for p in sc.product_ids], [rank_of(p, lists) for p in sc.product_ids],
                      c, t, len(objs))


def product_lists(vecs: np.ndarray, cat_vecs: np.ndarray, pids: list[str]) -> tuple[list[list[str]], np.ndarray]:
    """Per object: top-10 products, and (top-1, top-2 product similarity) rows."""
    sims = vecs @ cat_vecs.T
    lists = product_ranks(sims, pids)
    best = []
    for row, lst in zip(np.atleast_2d(sims), lists):
        per = {}
        for j in np.argsort(-row)[:64]:
            per.setdefault(pids[j], float(row[j]))
        top = sorted(per.values(), reverse=True) + [0.0, 0.0]
        best.append((top[0], top[1]))
    return lists, np.asarray(best, np.float32).reshape(-1, 2)
