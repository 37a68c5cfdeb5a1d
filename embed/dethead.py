"""A class-agnostic product detector: a small CenterNet-style head on the embedder's own feature maps.

The EfficientNet-Lite0 backbone (frozen, the same weights the embedder uses) sees the photo letterboxed
to ``size`` px; its stride-16 (112 ch) and stride-32 (1280 ch) maps are merged FPN-style and a few convs
predict, per stride-16 cell, an object-centre heatmap, the box size (log, in cells) and the sub-cell
centre offset. A head built with ``c8 > 0`` also merges the stride-8 map (40 ch) and predicts per
stride-8 cell (finer centres and boxes for small, crowded products). Peaks of the heatmap are the
objects, ordered by confidence. Training data comes from the catalog itself (``embed.compose``); see ``embed.detrain``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from embed.boxes import nms

STRIDE = 16
DEFAULT_SIZE = 352
HEAD_VERSION = 1
_LITE_MEAN, _LITE_STD = 0.498, 0.502


class DetHead(nn.Module):
    def __init__(self, c16: int = 112, c32: int = 1280, width: int = 48, c8: int = 0) -> None:
        super().__init__()
        self.width, self.c8 = width, c8
        self.stride = 8 if c8 else STRIDE  # output grid stride in input pixels
        self.lat16 = nn.Conv2d(c16, width, 1)
        self.lat32 = nn.Conv2d(c32, width, 1)
        if c8:
            self.lat8 = nn.Conv2d(c8, width, 1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(width, 5, 1)  # heatmap logit, log w, log h, dx, dy
        nn.init.constant_(self.out.bias, 0.0)
        with torch.no_grad():
            self.out.bias[0] = -2.19  # prior 0.1

    def forward(self, f16: torch.Tensor, f32: torch.Tensor, f8: torch.Tensor | None = None) -> torch.Tensor:
        x = self.lat16(f16) + F.interpolate(self.lat32(f32), size=f16.shape[-2:], mode="nearest")
        if self.c8:
            assert f8 is not None, "a stride-8 head needs the stride-8 map"
            x = self.lat8(f8) + F.interpolate(x, size=f8.shape[-2:], mode="nearest")
        return self.out(self.body(x))


def backbone_maps(net: nn.Module, x: torch.Tensor, with8: bool = False) -> tuple[torch.Tensor, ...]:
    """Lite0 forward that also returns the last stride-16 map: (stride-16 map, stride-32 head map), and
    the last stride-8 map third when ``with8``."""
    h = x.shape[-1]
    y = net._swish(net._bn0(net._conv_stem(x))) if hasattr(net, "_swish") else net._relu(net._bn0(net._conv_stem(x)))
    f8 = f16 = None
    n = len(net._blocks)
    for idx, block in enumerate(net._blocks):
        rate = net._global_params.drop_connect_rate
        y = block(y, drop_connect_rate=rate * idx / n if rate else rate)
        if y.shape[-1] * STRIDE >= h and y.shape[-1] * STRIDE < h + STRIDE:
            f16 = y
        if y.shape[-1] * 8 >= h and y.shape[-1] * 8 < h + 8:
            f8 = y
    y = _head(net, y)
    assert f16 is not None and f8 is not None, "no stride-16 map (input size must be a multiple of 32)"
    return (f16, y, f8) if with8 else (f16, y)


def _head(net: nn.Module, y: torch.Tensor) -> torch.Tensor:
    act = net._swish if hasattr(net, "_swish") else net._relu
    return act(net._bn1(net._conv_head(y)))


class Lite0Maps(nn.Module):
    """Backbone wrapper for export: image tensor -> (stride-16 map, stride-32 map[, stride-8 map])."""

    def __init__(self, net: nn.Module, with8: bool = False) -> None:
        super().__init__()
        self.net, self.with8 = net, with8

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return backbone_maps(self.net, x, self.with8)


@dataclass(frozen=True)
class LetterboxInfo:
    scale: float
    size: int


def letterbox(img: Image.Image, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, LetterboxInfo]:
    """Scale the long side to ``size``, pad right/bottom with mid-grey; (1, 3, S, S) normalised for Lite0."""
    s = size / max(img.width, img.height)
    nw, nh = max(1, round(img.width * s)), max(1, round(img.height * s))
    canvas = np.full((size, size, 3), 127, np.uint8)
    canvas[:nh, :nw] = np.asarray(img.convert("RGB").resize((nw, nh), Image.BILINEAR))
    x = (canvas.astype(np.float32) / 255.0 - _LITE_MEAN) / _LITE_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), LetterboxInfo(s, size)


# ---- targets and loss -------------------------------------------------------------------------

def encode_targets(boxes: np.ndarray, grid: int, stride: int = STRIDE, dense: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 4) in input pixels -> heatmap (G, G), regression (4, G, G), regression weights (G, G)
    (G cells of ``stride`` px). The size and offset are learned at each object's centre cell; with
    ``dense`` > 0 also at the cells around it where its Gaussian is at least ``dense`` (weighted by
    it; a cell two objects claim belongs to the one whose centre is nearer), so a peak next to the
    centre still predicts the whole box (TTFNet-style)."""
    hm = np.zeros((grid, grid), np.float32)
    reg = np.zeros((4, grid, grid), np.float32)
    mask = np.zeros((grid, grid), np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float32)
    for x0, y0, x1, y1 in np.asarray(boxes, np.float32).reshape(-1, 4):
        w, h = (x1 - x0) / stride, (y1 - y0) / stride
        if w <= 0 or h <= 0:
            continue
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
        ix, iy = min(grid - 1, int(cx)), min(grid - 1, int(cy))
        sx, sy = max(0.5, w / 6), max(0.5, h / 6)
        g = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
        hm = np.maximum(hm, g)
        hm[iy, ix] = 1.0
        if dense > 0:
            take = (g >= dense) & (g > mask)
            reg[0][take], reg[1][take] = math.log(w), math.log(h)
            reg[2][take], reg[3][take] = cx - xs[take], cy - ys[take]
            mask[take] = g[take]
        reg[:, iy, ix] = (math.log(w), math.log(h), cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return hm, reg, mask


def detection_loss(pred: torch.Tensor, hm: torch.Tensor, reg: torch.Tensor, mask: torch.Tensor,
                   giou: float = 0.0) -> torch.Tensor:
    """CenterNet loss: penalty-reduced focal loss on the heatmap + L1 on size and offset where ``mask``
    weighs it (the centres; with dense targets also the cells around them), a weighted mean; with
    ``giou`` > 0 also ``giou`` x (1 - GIoU) of the decoded box against the true one there."""
    p = torch.sigmoid(pred[:, 0]).clamp(1e-4, 1 - 1e-4)
    pos = hm.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - hm) ** 4 * (1 - pos)).sum()
    npos = pos.sum().clamp_min(1)
    wsum = mask.sum().clamp_min(1)
    l1 = (F.l1_loss(pred[:, 1:5], reg, reduction="none").sum(1) * mask).sum() / wsum
    if giou > 0:
        l1 = l1 + giou * ((1 - generalized_iou(cell_boxes(pred[:, 1:5]), cell_boxes(reg))) * mask).sum() / wsum
    return (pos_loss + neg_loss) / npos + l1


def cell_boxes(reg: torch.Tensor) -> torch.Tensor:
    """(B, 4, G, G) log w, log h, dx, dy (cells) -> (B, 4, G, G) x0, y0, x1, y1 relative to each cell
    (log sizes clamped to [-4, 4] so an untrained head cannot overflow)."""
    w, h = reg[:, 0].clamp(-4, 4).exp(), reg[:, 1].clamp(-4, 4).exp()
    cx, cy = reg[:, 2], reg[:, 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of boxes (..., 4, ...) along dim 1 (x0, y0, x1, y1): IoU minus the share of the enclosing box
    that neither covers; 1 for equal boxes, towards -1 for far apart ones."""
    ix = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp_min(0)
    iy = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp_min(0)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = (area_a + area_b - inter).clamp_min(1e-9)
    hull = ((torch.maximum(a[:, 2], b[:, 2]) - torch.minimum(a[:, 0], b[:, 0]))
            * (torch.maximum(a[:, 3], b[:, 3]) - torch.minimum(a[:, 1], b[:, 1]))).clamp_min(1e-9)
    return inter / union - (hull - union) / hull


# ---- decoding ---------------------------------------------------------------------------------

def decode(pred: np.ndarray, *, top_k: int = 20, conf: float = 0.1, iou: float = 0.5, stride: int = STRIDE
           ) -> tuple[np.ndarray, np.ndarray]:
    """Raw head output (5, G, G) -> (boxes (K, 4) in input pixels, scores (K,)), best first."""
    logits = torch.from_numpy(np.ascontiguousarray(pred[0:1]))[None]
    heat = torch.sigmoid(logits)
    peaks = (heat == F.max_pool2d(heat, 3, stride=1, padding=1)).float() * heat
    flat = peaks.flatten()
    k = min(top_k, flat.numel())
    scores, idx = flat.topk(k)
    keep = scores >= conf
    scores, idx = scores[keep].numpy(), idx[keep].numpy()
    grid_w = pred.shape[2]
    iy, ix = idx // grid_w, idx % grid_w
    w, h = np.exp(pred[1, iy, ix]), np.exp(pred[2, iy, ix])
    cx, cy = ix + pred[3, iy, ix], iy + pred[4, iy, ix]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32) * stride
    if len(boxes) == 0:
        return boxes.reshape(0, 4), scores.astype(np.float32)
    order = nms(boxes, scores, iou)
    return boxes[order], scores[order].astype(np.float32)


def to_original(boxes: np.ndarray, lb: LetterboxInfo, w: int, h: int) -> np.ndarray:
    b = np.asarray(boxes, np.float32) / lb.scale
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    return b
