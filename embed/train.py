"""``embed train``: adapt the embedding projection to a catalog (metric learning, backbone frozen).

For every catalog image we render synthetic shopper views (``embed.augment``; a share of them crowded
by 1-3 other catalog products reaching into the product's box, ``EMBED_TRAIN_CROWDED``), cache the frozen
backbone's pooled features, and train a linear projection (features -> 256-d) with a symmetric
InfoNCE loss that pulls each view towards its own catalog image and away from the others. The
result is a projection file keyed by the catalog's fingerprint and the backbone, so importing the
same catalog again reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from embed.augment import crowded_view, synthetic_view
from embed.catalog import Catalog
from embed.config import EmbedSettings
from embed.embedder import Embedder, EmbedderSpec, random_projection
from embed.imageio import InvalidImage, read_image_file
from embed.models import spec_from_settings

log = logging.getLogger(__name__)


def _progress(console: Console | None, disable: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console or Console(stderr=True), disable=disable)


def info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of L2-normalised pairs: row i of ``q`` (a view) belongs with row i
    of ``k`` (its catalog image), every other row is a negative (other views of the same product are not
    in the batch: one view per image)."""
    logits = q @ k.T / temperature
    target = torch.arange(len(q))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def train_projection(
    anchors: np.ndarray, views: np.ndarray, dim: int, *, steps: int = 300, batch: int = 256,
    temperature: float = 0.05, lr: float = 2e-3, seed: int = 0, init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """InfoNCE on (anchor, view) pairs: anchors (N, D), views (N, V, D). Returns W (dim, D) and losses."""
    torch.manual_seed(seed)
    n, v, d = views.shape
    a = torch.from_numpy(anchors).float()
    x = torch.from_numpy(views).float()
    w = torch.nn.Parameter((init if init is not None else random_projection(d, dim)).clone())
    opt = torch.optim.Adam([w], lr=lr)
    losses: list[float] = []
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(n, generator=g)[: min(batch, n)]
        vi = torch.randint(0, v, (len(idx),), generator=g)
        loss = info_nce(F.normalize(x[idx, vi] @ w.T, dim=1), F.normalize(a[idx] @ w.T, dim=1), temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return w.detach(), losses


def _neighbours(cuts: list[Image.Image], i: int, rng: random.Random) -> list[Image.Image]:
    """1-3 other catalog products' cut-outs to crowd image ``i``'s view."""
    others = [rng.randrange(len(cuts) - 1) for _ in range(rng.randint(1, 3))]
    return [cuts[j + (j >= i)] for j in others]


def textures_digest(textures: Sequence[Image.Image]) -> str:
    h = hashlib.sha256()
    for t in textures:
        h.update(f"{t.size}".encode())
        h.update(t.tobytes())
    return h.hexdigest()[:16]


def adaptation_key(catalog: Catalog, base: EmbedderSpec, settings: EmbedSettings,
                   textures: Sequence[Image.Image] = ()) -> str:
    cfg = {"catalog": catalog.fingerprint(), "base": base.model_id(), "views": settings.train_views,
           "steps": settings.train_steps, "v": 1,
           **({"hard_views": settings.train_hard_views} if settings.train_hard_views else {}),
           **({"crowded": settings.train_crowded} if settings.train_crowded else {}),
           **({"textures": textures_digest(textures)} if textures else {})}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def adapt_to_catalog(catalog: Catalog, settings: EmbedSettings, *, console: Console | None = None,
                     force: bool = False, quiet: bool = False, textures: Sequence[Image.Image] | None = None) -> Path:
    """Train (or reuse) the catalog's projection; returns the projection file. With
    ``settings.train_textures`` the crowded views use ``textures`` as backgrounds (default: every
    texture the detector's training uses, ``embed.textures.load_textures``)."""
    tex: list[Image.Image] = []
    if settings.train_textures and settings.train_crowded:
        if textures is None:
            from embed.textures import load_textures

            textures = [im for _, im in load_textures(settings.cache_dir / "textures", package=settings.det_textures)]
        tex = list(textures)
    base = spec_from_settings(settings)
    base = EmbedderSpec(base.arch, base.weights, None, base.dim, base.input_size)
    out_dir = settings.artifacts_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    path = (out_dir / f"projection-{adaptation_key(catalog, base, settings, tex)}.pt").resolve()
    if path.is_file() and not force:
        log.info("catalog adaptation cached: %s", path)
        return path
    t0 = time.monotonic()
    emb = Embedder(base, batch_size=settings.batch_size, threads=settings.threads, runtime=settings.runtime,
                   export_dir=settings.artifacts_dir)
    rng = random.Random(0)
    images: list[Image.Image] = []
    for it in catalog.items:
        try:
            images.append(read_image_file(it.image_path, max_bytes=settings.max_image_bytes,
                                          max_pixels=settings.max_image_pixels))
        except InvalidImage as e:
            log.warning("adaptation skips %s: %s", it.image_path, e)
    if len(images) < 2:
        raise ValueError("catalog adaptation needs at least two readable images")
    nv = settings.train_views
    n_crowded = round(nv * settings.train_crowded)  # the last n_crowded views of each image are crowded
    cuts = []
    if n_crowded:
        from embed.compose import product_cutout

        cuts = [product_cutout(im) for im in images]
    anchors = np.zeros((len(images), emb.feature_dim), np.float32)
    views = np.zeros((len(images), nv, emb.feature_dim), np.float32)
    chunk = max(1, settings.batch_size // (nv + 1))
    with _progress(console, quiet) as prog:
        task = prog.add_task(f"adapting {emb.spec.arch} to {len(images)} catalog images", total=len(images))
        for s in range(0, len(images), chunk):
            batch = images[s : s + chunk]
            crops = []
            for i, im in enumerate(batch, start=s):
                crops.append(im)
                crops += [synthetic_view(im, rng, hard=settings.train_hard_views) for _ in range(nv - n_crowded)]
                crops += [crowded_view(cuts[i], _neighbours(cuts, i, rng), rng, backgrounds=tex) for _ in range(n_crowded)]
            f = emb.features(crops).reshape(len(batch), nv + 1, -1)
            anchors[s : s + len(batch)] = f[:, 0]
            views[s : s + len(batch)] = f[:, 1:]
            prog.update(task, advance=len(batch))
    w, losses = train_projection(anchors, views, settings.dim, steps=settings.train_steps,
                                 init=emb.projection)
    tmp = path.with_suffix(".tmp")
    torch.save({"weight": w.contiguous()}, tmp)
    tmp.replace(path)
    log.info("catalog adaptation: %d images x %d views, loss %.3f -> %.3f, %.0f s -> %s",
             len(images), nv, losses[0], losses[-1], time.monotonic() - t0, path)
    return path
