"""The learned object order (embed.objrank) and the query side's evidence from found objects."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from embed import objrank
from embed.detector import WHOLE_IMAGE_LABEL, Detection
from embed.query import FoundObject, evidence
from embed.store import Hit


def ev(det: float, sim1: float, sim2: float = 0.0, *, whole: bool = False, area: float = 0.1, top: str | None = "p"
       ) -> objrank.ObjectEvidence:
    return objrank.ObjectEvidence(det, whole, area, sim1, sim2, top)


def test_features_carry_photo_context_only_on_the_whole_photo() -> None:
    objs = [ev(0.9, 0.8, area=0.3, top="a"), ev(0.4, 0.6, area=0.1, top="b"), ev(0, 0.7, whole=True, area=1.0, top="a")]
    f = objrank.features(objs)
    assert f.shape == (3, len(objrank.FEATURES))
    col = {n: i for i, n in enumerate(objrank.FEATURES)}
    assert f[:, col["whole"]].tolist() == [0, 0, 1]
    assert f[2, col["whole_x_ndet"]] == 2 and f[0, col["whole_x_ndet"]] == 0
    assert f[2, col["whole_x_toparea"]] == pytest.approx(0.3)  # the area of the most confident detection
    assert f[:, col["margin"]] == pytest.approx([0.8, 0.6, 0.7])


def test_logistic_fit_separates_and_orders_by_similarity() -> None:
    rng = np.random.default_rng(0)
    objs = [ev(float(rng.uniform()), float(s)) for s in rng.uniform(0.2, 1.0, 400)]
    x = objrank.features(objs)
    y = np.array([1.0 if o.sim1 > 0.6 else 0.0 for o in objs])
    w = objrank.fit_logistic(x, y)
    p = objrank.scores(objs, w)
    assert ((p > 0.5) == (y > 0.5)).mean() > 0.95
    assert w[objrank.FEATURES.index("sim1")] > 0


def test_order_by_learned_score_then_duplicates_to_the_end() -> None:
    w = np.zeros(len(objrank.FEATURES))
    w[objrank.FEATURES.index("sim1")] = 10.0
    objs = [ev(0.9, 0.3, top="x"), ev(0.5, 0.9, top="a"), ev(0.4, 0.8, top="a"), ev(0.0, 0.7, whole=True, top="b")]
    assert objrank.order(objs, w, dedupe=False) == [1, 2, 3, 0]
    assert objrank.order(objs, w) == [1, 3, 0, 2]  # the second "a" after everything else
    assert objrank.order(objs, None, dedupe=False) == [0, 1, 2, 3]  # detector order as given
    assert objrank.order([], w) == []


def test_default_weights_match_the_features() -> None:
    assert len(objrank.DEFAULT_WEIGHTS) == len(objrank.FEATURES)


def test_crop_padding_widens_within_the_photo() -> None:
    img = Image.new("RGB", (100, 80))
    d = Detection((10.0, 10.0, 50.0, 30.0), "object", 0.9)
    assert d.crop(img).size == (40, 20)
    assert d.crop(img, 0.25).size == (60, 30)
    edge = Detection((0.0, 0.0, 100.0, 80.0), WHOLE_IMAGE_LABEL, 0.0)
    assert edge.crop(img, 0.5).size == (100, 80)


def test_query_evidence_from_grouped_matches() -> None:
    f = FoundObject((0.0, 0.0, 50.0, 40.0), "object", 0.7, [Hit(1, "a", 0.9), Hit(2, "b", 0.6)])
    e = evidence(f, 100, 80)
    assert (e.det_score, e.whole, e.sim1, e.sim2, e.top_product) == (0.7, False, 0.9, 0.6, "a")
    assert e.area == pytest.approx(0.25)
    w = evidence(FoundObject((0.0, 0.0, 100.0, 80.0), WHOLE_IMAGE_LABEL, 0.0, []), 100, 80)
    assert (w.whole, w.sim1, w.top_product, w.area) == (True, 0.0, None, 1.0)
