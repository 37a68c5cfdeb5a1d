"""Catalog prototypes: a catalog image's vector is the normalised mean of its own vector and of K
synthetic shopper views of it (``embed.augment.synthetic_view``, a share ``hard`` of them degraded
like a cluttered photo: perspective, an occluder, lighting, strong blur and JPEG).

Only the catalog side changes; queries are embedded as before. A product photographed in clutter
is closer to the mean of its degraded views than to its clean studio shot (measured with perfect
boxes on the strict validation photos: cluttered recall@1 0.880 -> 0.903 at K=8, hard 1.0;
docs/embed.md, fifth round). The recipe (K, hard) is part of the model spec, so it is part of the
model id a collection records: every worker builds a collection's vectors the same way.

The views are seeded from the image's content hash, so re-importing an image gives the same vector
(upserts stay idempotent) on any worker.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import numpy as np
from PIL import Image

from embed.augment import synthetic_view


def view_seed(image_sha256: str) -> int:
    """A stable seed for an image's synthetic views (from its content hash)."""
    return int.from_bytes(hashlib.sha256(f"prototype\x00{image_sha256}".encode()).digest()[:8], "big")


def views(img: Image.Image, k: int, hard: float, seed: int) -> list[Image.Image]:
    rng = random.Random(seed)
    return [synthetic_view(img, rng, hard=hard) for _ in range(k)]


def combine(own: np.ndarray, view_vecs: np.ndarray) -> np.ndarray:
    """(n, d) own vectors and (n, k, d) view vectors -> (n, d) L2-normalised prototypes."""
    v = own + view_vecs.mean(axis=1)
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def catalog_vectors(embedder, images: Sequence[Image.Image], seeds: Sequence[int]) -> np.ndarray:
    """Catalog vectors under ``embedder.spec``'s recipe: plain vectors when ``catalog_views`` is 0,
    else prototypes (one embedding batch for the images and all their views)."""
    k = embedder.spec.catalog_views
    if k <= 0 or not images:
        return embedder.embed(list(images))
    if len(seeds) != len(images):
        raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
    crops: list[Image.Image] = []
    for img, seed in zip(images, seeds):
        crops += [img, *views(img, k, embedder.spec.catalog_hard, seed)]
    vecs = embedder.embed(crops).reshape(len(images), k + 1, -1)
    return combine(vecs[:, 0], vecs[:, 1:])
