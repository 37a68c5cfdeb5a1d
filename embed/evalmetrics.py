"""Scoring search-by-image results the way a shopper sees them (pure functions over plain data).

A photo of ``n`` products returns objects in order; the shopper looks at the first ``n + 1`` only.
A product is found at rank ``r`` when one of those objects lists it at rank ``r`` among its matches
(grouped by product). Detector recall counts a product as found when one of the counted boxes covers
it at IoU >= 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embed.boxes import iou_matrix

NOT_FOUND = 10**6


def product_ranks(sims: np.ndarray, catalog_pids: Sequence[str], k: int = 10) -> list[list[str]]:
    """For each query row of cosine similarities to the catalog vectors: the top-``k`` distinct products."""
    out = []
    for row in np.atleast_2d(sims):
        top: list[str] = []
        for j in np.argsort(-row, kind="stable"):
            p = catalog_pids[j]
            if p not in top:
                top.append(p)
                if len(top) >= k:
                    break
        out.append(top)
    return out


def rank_of(target: str, per_object: Sequence[Sequence[str]]) -> int:
    """Best (1-based) rank of ``target`` over the objects' product lists; NOT_FOUND if absent."""
    best = NOT_FOUND
    for products in per_object:
        if target in products:
            best = min(best, products.index(target) + 1)
    return best


def counted(objects: Sequence[object], n_products: int) -> Sequence[object]:
    """The objects a shopper looks at: the first ``n + 1``."""
    return objects[: n_products + 1]


def box_recall(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> tuple[int, int]:
    """(truth boxes covered by some predicted box at >= ``iou``, truth boxes)."""
    truth = np.asarray(truth, np.float32).reshape(-1, 4)
    pred = np.asarray(pred, np.float32).reshape(-1, 4)
    if len(truth) == 0:
        return 0, 0
    if len(pred) == 0:
        return 0, len(truth)
    return int((iou_matrix(truth, pred).max(axis=1) >= iou).sum()), len(truth)


def recall_at(ranks: Sequence[int], k: int) -> float:
    r = np.asarray(ranks)
    return float((r <= k).mean()) if len(r) else float("nan")
