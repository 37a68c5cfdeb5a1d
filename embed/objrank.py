"""Ordering the objects of a query photo after the search: detector confidence and how well each object
matches the catalog, learned (pure functions over plain data).

The detector's score alone says "something is here", not "a catalog product is here": a distractor can
outscore a product, and the whole photo (the fallback) has no detector score at all although it is the
best query when the photo shows one product. After the catalog search every object also has its top
match's cosine similarity and the margin to the next product, so a small logistic model over


    det score, top-1 similarity, margin, box area, "is the whole photo" (and its interactions with the
    number of detections and the top detection's area)

estimates the probability that an object's top match is a product in the photo; objects are shown in
that order, and an object whose top product an earlier one already shows moves to the end. The
weights are fitted by ``bench/rankfit.py`` on validation compositions (catalog products and textures the
test split never uses) and shipped as ``DEFAULT_WEIGHTS``; ``EMBED_RANK=detector`` keeps plain detector
order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FEATURES = ("bias", "det", "whole", "sim1", "margin", "area", "whole_x_ndet", "whole_x_toparea")


@dataclass(frozen=True)
class ObjectEvidence:
    """What is known about one object of a query photo after the search."""

    det_score: float  # detector confidence; the whole photo has none (0)
    whole: bool  # the whole-photo fallback
    area: float  # box area / photo area
    sim1: float  # cosine similarity of the best catalog product
    sim2: float  # ... of the second-best product (0 when there is none)
    top_product: str | None  # the best product's id


def features(objs: Sequence[ObjectEvidence]) -> np.ndarray:
    """(N, len(FEATURES)) feature rows of a photo's objects (photo-level context included)."""
    dets = [o for o in objs if not o.whole]
    ndet = float(len(dets))
    top_area = max((o.area for o in dets if o.det_score == max(d.det_score for d in dets)), default=0.0) if dets else 0.0
    rows = []
    for o in objs:
        w = 1.0 if o.whole else 0.0
        rows.append([1.0, 0.0 if o.whole else o.det_score, w, o.sim1, o.sim1 - o.sim2, o.area,
                     w * min(ndet, 6.0), w * top_area])
    return np.asarray(rows, np.float64).reshape(-1, len(FEATURES))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Logistic-regression weights by Newton's method (L2 on all but the bias)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    w = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[0] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + reg * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def scores(objs: Sequence[ObjectEvidence], weights: Sequence[float]) -> np.ndarray:
    if not objs:
        return np.zeros(0)
    return 1 / (1 + np.exp(-(features(objs) @ np.asarray(weights, np.float64))))


def order(objs: Sequence[ObjectEvidence], weights: Sequence[float] | None, *, dedupe: bool = True) -> list[int]:
    """Indices of ``objs`` in the order to show them: by learned score (or as given when ``weights`` is
    None); with ``dedupe``, an object whose top product an earlier object already shows goes to the end."""
    idx = list(range(len(objs)))
    if weights is not None:
        s = scores(objs, weights)
        idx.sort(key=lambda i: (-s[i], i))
    if not dedupe:
        return idx
    seen: set[str] = set()
    first, later = [], []
    for i in idx:
        p = objs[i].top_product
        (later if p is not None and p in seen else first).append(i)
        if p is not None:
            seen.add(p)
    return first + later


# fitted by bench/rankfit.py on validation photos (40 per split; threshold 0.1, NMS IoU 0.5, padding 0.1,
# 8 candidates; bench/out/rankfit.json); order as FEATURES
DEFAULT_WEIGHTS: tuple[float, ...] = (-7.5688, 2.4618, -3.4012, 11.5322, 11.3818, 4.9106, -0.2161, 1.9144)
