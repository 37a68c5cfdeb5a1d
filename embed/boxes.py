"""Pure box logic: letterbox math, YOLO output decoding (v5 / v8 / v11 layouts), NMS, components."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How an image of ``(w, h)`` was scaled by ``scale`` and padded by ``(pad_x, pad_y)`` into a square."""

    scale: float
    pad_x: float
    pad_y: float
    size: int

    @classmethod
    def fit(cls, w: int, h: int, size: int) -> Letterbox:
        scale = min(size / w, size / h)
        nw, nh = round(w * scale), round(h * scale)
        return cls(scale, (size - nw) / 2, (size - nh) / 2, size)

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image xyxy -> model-input xyxy."""
        b = np.asarray(boxes, dtype=np.float32).copy()
        b[..., [0, 2]] = b[..., [0, 2]] * self.scale + self.pad_x
        b[..., [1, 3]] = b[..., [1, 3]] * self.scale + self.pad_y
        return b

    def to_original(self, boxes: np.ndarray, w: int, h: int) -> np.ndarray:
        """Model-input xyxy -> original-image xyxy, clipped to the image."""
        b = np.asarray(boxes, dtype=np.float32).copy()
        b[..., [0, 2]] = (b[..., [0, 2]] - self.pad_x) / self.scale
        b[..., [1, 3]] = (b[..., [1, 3]] - self.pad_y) / self.scale
        b[..., [0, 2]] = b[..., [0, 2]].clip(0, w)
        b[..., [1, 3]] = b[..., [1, 3]].clip(0, h)
        return b


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    out = np.empty_like(b, dtype=np.float32)
    out[:, 0] = b[:, 0] - b[:, 2] / 2
    out[:, 1] = b[:, 1] - b[:, 3] / 2
    out[:, 2] = b[:, 0] + b[:, 2] / 2
    out[:, 3] = b[:, 1] + b[:, 3] / 2
    return out


def detect_layout(shape: tuple[int, ...]) -> str:
    """'v5' for (1, N, 5+C) outputs, 'v8' for (1, 4+C, N) outputs (v8 and v11 share it)."""
    if len(shape) != 3:
        raise ValueError(f"YOLO output must be 3-d (batch, a, b), got shape {shape}")
    return "v8" if shape[1] < shape[2] else "v5"


def decode_yolo(output: np.ndarray, layout: str = "auto", conf: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's raw YOLO output to (xyxy boxes in input pixels, scores, class ids).

    v5: (1, N, 5+C) rows of cx, cy, w, h, objectness, class probs; score = obj * class prob.
    v8 / v11: (1, 4+C, N) columns of cx, cy, w, h, class scores (no objectness).
    """
    out = np.asarray(output, dtype=np.float32)
    if layout == "auto":
        layout = detect_layout(out.shape)
    pred = out[0]
    if layout in ("v8", "v11"):
        pred = pred.T  # (N, 4+C)
        cls_scores = pred[:, 4:]
    elif layout == "v5":
        cls_scores = pred[:, 5:] * pred[:, 4:5]
    else:
        raise ValueError(f"unknown YOLO layout {layout!r} (v5, v8, v11 or auto)")
    if cls_scores.shape[1] == 0:
        raise ValueError(f"YOLO output {out.shape} has no class columns for layout {layout}")
    cls = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(cls)), cls]
    keep = score >= conf
    return xywh_to_xyxy(pred[keep, :4]), score[keep], cls[keep]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    boxes = np.asarray(boxes, np.float32)
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = iou_matrix(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou]
    return np.asarray(keep, dtype=np.int64)


def class_aware_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """NMS within each class only (boxes of different classes never suppress each other)."""
    keep: list[int] = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        keep.extend(idx[nms(boxes[idx], scores[idx], iou)].tolist())
    keep_arr = np.asarray(keep, dtype=np.int64)
    return keep_arr[np.argsort(-np.asarray(scores)[keep_arr], kind="stable")] if keep else keep_arr


def filter_boxes(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, keep_classes: list[int] | None, min_size: float
) -> np.ndarray:
    """Mask of boxes whose class is kept and whose both sides are at least ``min_size`` pixels."""
    mask = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    if keep_classes is not None:
        mask &= np.isin(classes, np.asarray(keep_classes))
    return mask


def connected_components(mask: np.ndarray) -> list[tuple[int, int, int, int, np.ndarray]]:
    """8-connected components of a small boolean grid: (row0, col0, row1, col1 exclusive, member mask)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    comps = []
    for r in range(h):
        for c in range(w):
            if not mask[r, c] or seen[r, c]:
                continue
            stack = [(r, c)]
            seen[r, c] = True
            member = np.zeros_like(mask, dtype=bool)
            while stack:
                y, x = stack.pop()
                member[y, x] = True
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            stack.append((ny, nx))
            rows, cols = np.nonzero(member)
            comps.append((int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1, member))
    return comps
