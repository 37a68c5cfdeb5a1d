from __future__ import annotations

import random

import numpy as np
import pytest

from embed.augment import cutout, synthetic_view
from embed.catalog import read_catalog
from embed.config import EmbedSettings
from embed.train import adapt_to_catalog, train_projection
from tests.embed.synth import make_catalog, product_image


def _recall1(w, anchors, views) -> float:
    a = anchors @ w.numpy().T
    v = views[:, 0] @ w.numpy().T
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return float(((v @ a.T).argmax(1) == np.arange(len(a))).mean())


def test_infonce_projection_learns_to_match_views() -> None:
    rng = np.random.default_rng(0)
    n, d = 64, 48
    # anchors share a strong nuisance direction; views = anchor + noise mostly along nuisance dims
    anchors = rng.normal(size=(n, d)).astype(np.float32)
    nuisance = rng.normal(size=(n, 4, d)).astype(np.float32)
    nuisance[:, :, 8:] *= 0.05
    views = anchors[:, None, :] + 3.0 * nuisance
    import torch

    init = torch.randn(16, d, generator=torch.Generator().manual_seed(0))
    before = _recall1(init, anchors, views)
    w, losses = train_projection(anchors, views, 16, steps=150, batch=64, init=init)
    after = _recall1(w, anchors, views)
    assert losses[-1] < losses[0]
    assert after > before + 0.1 and after >= 0.8


def test_synthetic_view_is_a_changed_jpeg_of_the_product() -> None:
    img = product_image(3)
    v = synthetic_view(img, random.Random(0))
    assert v.mode == "RGB" and min(v.size) >= 16
    assert v.size != img.size or np.abs(np.asarray(v, float) - np.asarray(img, float)).mean() > 1
    assert cutout(img).getchannel("A").getextrema() == (0, 255)


def test_adapt_to_catalog_trains_once_and_caches(tmp_path) -> None:
    csv = make_catalog(tmp_path / "cat", 6)
    settings = EmbedSettings(cache_dir=tmp_path / "cache", train_views=1, train_steps=5, batch_size=8)
    cat = read_catalog(csv)
    p1 = adapt_to_catalog(cat, settings, quiet=True)
    mtime = p1.stat().st_mtime_ns
    assert p1.is_file() and p1.parent == settings.artifacts_dir
    p2 = adapt_to_catalog(read_catalog(csv), settings, quiet=True)
    assert p2 == p1 and p2.stat().st_mtime_ns == mtime
    # another catalog gets another projection
    csv2 = make_catalog(tmp_path / "cat2", 7)
    assert adapt_to_catalog(read_catalog(csv2), settings, quiet=True) != p1


def test_adaptation_needs_images(tmp_path) -> None:
    (tmp_path / "c.csv").write_text("product_id,image_path\na,missing.png\n")
    with pytest.raises(ValueError, match="at least two"):
        adapt_to_catalog(read_catalog(tmp_path / "c.csv"), EmbedSettings(cache_dir=tmp_path), quiet=True)


def test_hard_views_are_degraded_like_cluttered_photos() -> None:
    """EMBED_TRAIN_HARD_VIEWS: views blurred, lit and compressed like the cluttered split carry less detail;
    with the option off the views are exactly the ones without it."""
    from embed.augment import synthetic_view
    from tests.embed.synth import product_image

    def detail(h: float) -> float:
        rng = random.Random(1)
        out = []
        for i in range(20):
            a = np.asarray(synthetic_view(product_image(i), rng, hard=h).convert("L"), float)
            out.append(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())
        return float(np.mean(out))

    assert detail(1.0) < detail(0.0)
    a, b = random.Random(3), random.Random(3)
    assert np.array_equal(np.asarray(synthetic_view(product_image(4), a)),
                          np.asarray(synthetic_view(product_image(4), b, hard=0.0)))


def _square(colour: tuple[int, int, int], size: int = 80):
    from PIL import Image

    img = Image.new("RGBA", (size, size), (*colour, 255))
    return img


def _share(view, channel: int) -> float:
    a = np.asarray(view.convert("RGB"), int)
    others = [c for c in range(3) if c != channel]
    return float(((a[..., channel] > a[..., others[0]] + 60) & (a[..., channel] > a[..., others[1]] + 60)).mean())


def test_crowded_view_keeps_the_product_central_with_neighbours_reaching_in() -> None:
    """EMBED_TRAIN_CROWDED: the product fills most of the view; other products reach into it (far more
    of their colour than the random backgrounds alone bring); the same seed gives the same view."""
    from embed.augment import crowded_view

    red, blue = _square((230, 20, 20)), _square((20, 20, 230))
    crowded = [crowded_view(red, [blue, blue], random.Random(i)) for i in range(40)]
    alone = [crowded_view(red, [], random.Random(i)) for i in range(40)]
    reds = [_share(v, 0) for v in crowded]
    assert min(reds) > 0.2 and np.mean(reds) > 0.35
    assert np.mean([_share(v, 2) for v in crowded]) > np.mean([_share(v, 2) for v in alone]) + 0.08
    assert all(v.mode == "RGB" and min(v.size) >= 32 for v in crowded)
    same = crowded_view(red, [blue, blue], random.Random(5))
    assert np.array_equal(np.asarray(same), np.asarray(crowded[5]))


def test_adaptation_with_crowded_views_is_its_own_cached_projection(tmp_path) -> None:
    from embed.embedder import EmbedderSpec
    from embed.train import adaptation_key

    csv = make_catalog(tmp_path / "cat", 6)
    cat = read_catalog(csv)
    plain = EmbedSettings(cache_dir=tmp_path / "cache", train_views=2, train_steps=5, batch_size=8, train_crowded=0.0)
    crowded = plain.model_copy(update={"train_crowded": 0.5})
    spec = EmbedderSpec()
    assert adaptation_key(cat, spec, plain) != adaptation_key(cat, spec, crowded)
    p1, p2 = adapt_to_catalog(cat, plain, quiet=True), adapt_to_catalog(cat, crowded, quiet=True)
    assert p1 != p2 and p1.is_file() and p2.is_file()


def test_crowded_views_on_real_backgrounds_when_given() -> None:
    """EMBED_TRAIN_TEXTURES: about half the crowded views sit on the given photos (here pure green);
    without backgrounds the random sequence is the one without the option."""
    from PIL import Image

    from embed.augment import crowded_view

    red, blue = _square((230, 20, 20)), _square((20, 20, 230))
    green = [Image.new("RGB", (500, 400), (20, 200, 20))]
    on = [_share(crowded_view(red, [blue], random.Random(i), backgrounds=green), 1) for i in range(40)]
    off = [_share(crowded_view(red, [blue], random.Random(i)), 1) for i in range(40)]
    assert sum(g > 0.2 for g in on) >= 10 and sum(g > 0.2 for g in on) > sum(g > 0.2 for g in off) + 8
    a = crowded_view(red, [blue], random.Random(2), backgrounds=[])
    assert np.array_equal(np.asarray(a), np.asarray(crowded_view(red, [blue], random.Random(2))))
