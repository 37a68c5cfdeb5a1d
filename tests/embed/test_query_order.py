"""QueryEngine against a real milvus-lite with a catalog-trained head: the learned order after the
search (embed.objrank), crop padding, candidates, and the plain detector order it replaces."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from embed import objrank
from embed.compose import compose, product_cutout
from embed.config import EmbedSettings
from embed.detector import WHOLE_IMAGE_LABEL
from embed.embedder import EmbedderSpec
from embed.models import register
from embed.query import QueryEngine, evidence
from embed.store import connect, ensure_collection, image_key, upsert
from tests.embed.synth import background, product_image
from tests.embed.test_dethead import trained  # noqa: F401 (fixture)

N_PRODUCTS = 10


@pytest.fixture(scope="module")
def engine_setup(lite0, trained, milvus_uri, tmp_path_factory):  # noqa: F811
    head, _stats, style = trained
    cache = tmp_path_factory.mktemp("qcache")
    settings = EmbedSettings(cache_dir=cache, detector="trained", detector_head=head, threads=1, max_objects=4)
    spec = EmbedderSpec()
    model_id = register(spec, settings.artifacts_dir)
    client = connect(milvus_uri)
    ensure_collection(client, "qorder", model_id, spec.dim, {})
    images = [product_image(i) for i in range(N_PRODUCTS)]
    vecs = lite0.embed(images)
    upsert(client, "qorder", [{"image_id": image_key(f"P{i}", f"{i:064x}", 0), "product_id": f"P{i}", "image_path": "",
                               "object_index": 0, "vector": v.tolist()} for i, v in enumerate(vecs)])
    client.flush("qorder")
    client.load_collection("qorder")
    rng = random.Random(7)
    textures = [background(s, 400, 300) for s in range(6)]
    photos = []
    for k in range(3):
        sc = compose([(f"P{i}", product_cutout(images[i])) for i in rng.sample(range(N_PRODUCTS), 3)], rng, style,
                     textures, cutouts=True)
        photos.append(sc.jpeg)
    one = Image.new("RGB", (320, 240), (235, 235, 235))
    one.paste(images[3].convert("RGB").resize((150, 150)), (80, 45))
    buf = io.BytesIO()
    one.save(buf, "JPEG", quality=90)
    photos.append(buf.getvalue())
    return settings, milvus_uri, photos


def test_learned_order_is_the_objrank_order_of_the_found_objects(engine_setup) -> None:
    settings, uri, photos = engine_setup
    eng = QueryEngine(settings.model_copy(update={"det_candidates": 5}), uri)
    plain = QueryEngine(settings.model_copy(update={"rank": "detector"}), uri)
    for data in photos:
        res = eng.search_image(data, "qorder", top_k=3)
        assert 1 <= len(res.objects) <= settings.max_objects
        assert all(len(o.matches) <= 3 for o in res.objects)
        ev = [evidence(o, res.width, res.height) for o in res.objects]
        # shown best first: no object outranks an earlier one (duplicates of a shown product come last)
        s = objrank.scores(ev, objrank.DEFAULT_WEIGHTS)
        firsts = [i for i, e in enumerate(ev) if e.top_product not in {x.top_product for x in ev[:i]}]
        assert all(s[a] >= s[b] - 1e-9 for a, b in zip(firsts, firsts[1:]))
        base = plain.search_image(data, "qorder", top_k=3)
        assert base.objects[-1].label == WHOLE_IMAGE_LABEL  # detector order: the whole photo is the fallback, last
        assert [o.score for o in base.objects[:-1]] == sorted((o.score for o in base.objects[:-1]), reverse=True)


def test_single_product_photo_finds_it_first(engine_setup) -> None:
    settings, uri, photos = engine_setup
    res = QueryEngine(settings, uri).search_image(photos[-1], "qorder", top_k=3)
    assert res.objects[0].matches[0].product_id == "P3"


def test_crop_padding_changes_the_vectors_not_the_boxes(engine_setup) -> None:
    settings, uri, photos = engine_setup
    a = QueryEngine(settings.model_copy(update={"rank": "detector", "crop_pad": 0.0}), uri).search_image(photos[0], "qorder")
    b = QueryEngine(settings.model_copy(update={"rank": "detector", "crop_pad": 0.3}), uri).search_image(photos[0], "qorder")
    assert [o.box for o in a.objects] == [o.box for o in b.objects]
    sa = np.array([o.matches[0].score for o in a.objects if o.label != WHOLE_IMAGE_LABEL])
    sb = np.array([o.matches[0].score for o in b.objects if o.label != WHOLE_IMAGE_LABEL])
    assert len(sa) and not np.allclose(sa, sb)


def test_refinement_moves_boxes_and_keeps_the_detector_order(engine_setup) -> None:
    settings, uri, photos = engine_setup
    plain = QueryEngine(settings.model_copy(update={"rank": "detector"}), uri)
    refined = QueryEngine(settings.model_copy(update={"rank": "detector", "det_refine": True}), uri)
    moved = 0
    for data in photos:
        a, b = plain.search_image(data, "qorder"), refined.search_image(data, "qorder")
        assert [(o.label, o.score) for o in a.objects] == [(o.label, o.score) for o in b.objects]
        for oa, ob in zip(a.objects, b.objects):
            x0, y0, x1, y1 = ob.box
            assert 0 <= x0 < x1 <= b.width and 0 <= y0 < y1 <= b.height
            if oa.label == WHOLE_IMAGE_LABEL:
                assert ob.box == oa.box
            moved += ob.box != oa.box
    assert moved > 0  # the zoomed second look changed at least one box
