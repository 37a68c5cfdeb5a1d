"""Catalog prototypes (embed/prototypes.py): pure parts without a model, the recipe in the model id,
the model store carrying it, and the import worker's vectors with the real Lite0 embedder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from embed import prototypes
from embed.artifactstore import ArtifactStore
from embed.embedder import Embedder, EmbedderSpec
from embed.worker import Worker


def product(seed: int) -> Image.Image:
    img = Image.new("RGB", (160, 120), "white")
    d = ImageDraw.Draw(img)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(10, 90, 2))
        d.rectangle([x, y, x + 40, y + 25], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


def test_combine_is_the_normalised_mean() -> None:
    own = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    views = np.array([[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]], np.float32)
    got = prototypes.combine(own, views)
    assert np.allclose(got[0], np.array([1.0, 1.0]) / np.sqrt(2))
    assert np.allclose(got[1], np.array([0.5, 1.5]) / np.linalg.norm([0.5, 1.5]))
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0)


def test_views_are_seeded_by_content() -> None:
    img = product(1)
    a = prototypes.views(img, 3, 1.0, prototypes.view_seed("ab" * 32))
    b = prototypes.views(img, 3, 1.0, prototypes.view_seed("ab" * 32))
    c = prototypes.views(img, 3, 1.0, prototypes.view_seed("cd" * 32))
    assert [np.asarray(x).tobytes() for x in a] == [np.asarray(x).tobytes() for x in b]
    assert [np.asarray(x).tobytes() for x in a] != [np.asarray(x).tobytes() for x in c]


def test_recipe_is_part_of_the_model_id() -> None:
    plain = EmbedderSpec()
    assert dataclasses.replace(plain, catalog_hard=0.5).model_id() == plain.model_id()  # no views: unchanged id
    k8 = dataclasses.replace(plain, catalog_views=8)
    assert k8.model_id() != plain.model_id()
    assert dataclasses.replace(k8, catalog_hard=0.5).model_id() != k8.model_id()


def test_store_carries_the_recipe(redis_url: str, tmp_path: Path) -> None:
    spec = EmbedderSpec(catalog_views=8, catalog_hard=0.5)
    store = ArtifactStore(redis_url)
    got = store.fetch(store.publish(spec), tmp_path)
    assert got is not None and (got.catalog_views, got.catalog_hard) == (8, 0.5)


def test_catalog_vectors_and_the_worker(lite0: Embedder) -> None:
    imgs = [product(i) for i in range(3)]
    plain = prototypes.catalog_vectors(lite0, imgs, [1, 2, 3])
    assert np.allclose(plain, lite0.embed(imgs))  # no views in the recipe: the plain vectors
    k2 = Embedder(dataclasses.replace(lite0.spec, catalog_views=2), batch_size=16)
    seeds = [prototypes.view_seed(f"{i:064x}") for i in range(3)]
    got = prototypes.catalog_vectors(k2, imgs, seeds)
    assert got.shape == plain.shape and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(got, plain, atol=1e-3)
    assert np.allclose(got, prototypes.catalog_vectors(k2, imgs, seeds), atol=1e-6)  # deterministic
    with pytest.raises(ValueError, match="3 images but 2 seeds"):
        prototypes.catalog_vectors(k2, imgs, seeds[:2])
    # the worker: the whole image (object 0) gets the prototype, a detected part its plain vector
    meta = [(None, f"{0:064x}", 0), (None, f"{0:064x}", 1), (None, f"{1:064x}", 0)]
    crops = [imgs[0], imgs[0].crop((0, 0, 80, 60)), imgs[1]]
    vecs = Worker._vectors(k2, crops, meta)  # type: ignore[arg-type]
    assert np.allclose(vecs[[0, 2]], got[:2], atol=1e-5)
    assert np.allclose(vecs[1], lite0.embed([crops[1]])[0], atol=1e-5)
