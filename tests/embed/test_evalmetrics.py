"""Shopper-view scoring: first n+1 objects, product ranks, detector recall at IoU 0.5."""

from __future__ import annotations

import numpy as np

from embed.evalmetrics import NOT_FOUND, box_recall, counted, product_ranks, rank_of, recall_at


def test_product_ranks_group_images_of_one_product() -> None:
    pids = ["a", "a", "b", "c"]
    sims = np.array([[0.9, 0.8, 0.85, 0.1], [0.1, 0.2, 0.3, 0.95]])
    assert product_ranks(sims, pids, k=10) == [["a", "b", "c"], ["c", "b", "a"]]
    assert product_ranks(sims, pids, k=2) == [["a", "b"], ["c", "b"]]


def test_only_the_first_n_plus_one_objects_count() -> None:
    per_object = [["x", "y"], ["z", "a"], ["a"], ["b"]]
    first = counted(per_object, 1)  # one product in the photo: two objects count
    assert first == [["x", "y"], ["z", "a"]]
    assert rank_of("a", first) == 2 and rank_of("b", first) == NOT_FOUND
    assert rank_of("a", per_object) == 1  # counting every object would find it at rank 1
    assert recall_at([1, 2, NOT_FOUND, 10], 1) == 0.25 and recall_at([1, 2, NOT_FOUND, 10], 10) == 0.75


def test_box_recall_at_iou_half() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 20, 40, 40]])
    assert box_recall(np.array([[0, 0, 10, 12]]), truth) == (1, 2)  # IoU 0.83 and 0
    assert box_recall(np.array([[0, 0, 20, 20], [20, 20, 40, 40]]), truth) == (1, 2)  # IoU 0.25 misses
    assert box_recall(np.zeros((0, 4)), truth) == (0, 2)
    assert box_recall(np.array([[1, 1, 2, 2]]), np.zeros((0, 4))) == (0, 0)
