"""Box refinement (opt-in, ``EMBED_DET_REFINE``): the trained head looks again at a crop around each
candidate box, scaled so the product appears at a size the head measures well, and the box is
replaced by the crop's detection that best matches it.

Why: the head's box sizes regress towards a mean size *in input pixels* (docs/embed.md, third and
fourth rounds): products over about 100 input pixels get boxes much too small, under 60 slightly too
large. A zoom *in* (a crop of 2-3x the box) makes that worse (boxes half the true size at 2x); a crop
of ``zoom`` = 6x the box's long side, letterboxed to the head's 352 px input, shows the product at about
352 / 6 = 59 px, where the sizes are right on average. The window is square, centred on the box and
shifted to stay inside the photo where it fits; where it does not, it reaches past the photo and the
outside is mid-grey (a zoom out). Of the crop's detections, the most confident one whose centre is
within ``max_shift`` of the box's size from the box's centre wins; without one the box is kept. The
score stays the first pass's (the learned order was fitted on it). Measured on strict validation
photos it fixes large single products' boxes but loses cluttered recall at every zoom (docs/embed.md,
fourth round), hence off by default.

Pure mapping (``window``, ``crop_to_photo``, ``photo_to_crop``, ``pick``) is separate from running the
head (``refine_objects``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from embed.detector import WHOLE_IMAGE_LABEL, Detection
from embed.dethead import LetterboxInfo, letterbox

Box = tuple[float, float, float, float]
Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in photo pixels (x1, y1 exclusive)


def window(box: Box, w: int, h: int, zoom: float) -> Window:
    """Square crop of side ``zoom`` x the box's long side around the box: shifted inside the photo
    (``w`` x ``h``) on an axis where the side fits, centred on the box (reaching past the photo, which
    ``crop_window`` pads) where it does not."""
    if zoom <= 0:
        raise ValueError(f"zoom must be > 0, got {zoom}")
    x0, y0, x1, y1 = box
    side = max(1, int(round(zoom * max(x1 - x0, y1 - y0, 1.0))))
    out = []
    for c, limit in (((x0 + x1) / 2, w), ((y0 + y1) / 2, h)):
        lo = c - side / 2 if side >= limit else min(max(c - side / 2, 0.0), limit - side)
        a = int(round(lo))
        out.append((a, a + side))
    (wx0, wx1), (wy0, wy1) = out
    return wx0, wy0, wx1, wy1


def crop_window(img: Image.Image, win: Window, fill: int = 127) -> Image.Image:
    """The photo's pixels in ``win``; where the window reaches past the photo, mid-grey (the letterbox fill)."""
    x0, y0, x1, y1 = win
    if x0 >= 0 and y0 >= 0 and x1 <= img.width and y1 <= img.height:
        return img.crop(win)
    out = Image.new("RGB", (x1 - x0, y1 - y0), (fill, fill, fill))
    inner = (max(x0, 0), max(y0, 0), min(x1, img.width), min(y1, img.height))
    if inner[2] > inner[0] and inner[3] > inner[1]:
        out.paste(img.convert("RGB").crop(inner), (inner[0] - x0, inner[1] - y0))
    return out


def photo_to_crop(boxes: np.ndarray, win: Window, scale: float = 1.0) -> np.ndarray:
    """Photo xyxy -> the crop's letterboxed input xyxy (the crop scaled by ``scale``, padded right/bottom)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] -= win[0]
    b[:, [1, 3]] -= win[1]
    return b * scale


def crop_to_photo(boxes: np.ndarray, win: Window, scale: float = 1.0, w: int | None = None,
                  h: int | None = None) -> np.ndarray:
    """The crop's letterboxed input xyxy (``scale`` 1: the crop's own pixels) -> photo xyxy, clipped to
    the window and, given the photo's ``w`` x ``h``, to the photo."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4) / scale
    x1 = win[2] if w is None else min(win[2], w)
    y1 = win[3] if h is None else min(win[3], h)
    b[:, [0, 2]] = (b[:, [0, 2]] + win[0]).clip(max(win[0], 0) if w is not None else win[0], x1)
    b[:, [1, 3]] = (b[:, [1, 3]] + win[1]).clip(max(win[1], 0) if h is not None else win[1], y1)
    return b


def pick(boxes: np.ndarray, scores: np.ndarray, box: Box, max_shift: float = 0.5) -> int | None:
    """Index of the most confident of ``boxes`` (photo xyxy) whose centre lies within ``max_shift`` of
    ``box``'s width / height from ``box``'s centre (normalised per axis, Euclidean); None if none does."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(b) == 0:
        return None
    x0, y0, x1, y1 = box
    size = np.maximum([x1 - x0, y1 - y0], 1.0)
    d = np.hypot(*((((b[:, :2] + b[:, 2:]) / 2) - ((x0 + x1) / 2, (y0 + y1) / 2)) / size).T)
    ok = np.flatnonzero(d <= max_shift)
    if ok.size == 0:
        return None
    return int(ok[np.argmax(np.asarray(scores)[ok])])


class HeadRunner(Protocol):
    """What refinement needs of ``embed.productdet.ProductDetector``."""

    size: int

    def raw(self, x: np.ndarray) -> np.ndarray: ...

    def from_raw(self, pred: np.ndarray, lb: LetterboxInfo, w: int, h: int, *, conf: float | None = None,
                 iou: float | None = None) -> list[Detection]: ...


def refine_objects(det: HeadRunner, img: Image.Image, objects: list[Detection], zoom: float, *,
                   min_px: float = 0.0, conf: float = 0.05, max_shift: float = 0.5) -> list[Detection]:
    """``objects`` with each detector box replaced by its refined box (same order, label and score); the
    whole photo, and boxes whose long side is under ``min_px`` pixels of the head's input in the first
    pass, are kept as they are. One head forward per refined box."""
    out = []
    first_scale = det.size / max(img.width, img.height)
    for o in objects:
        x0, y0, x1, y1 = o.box
        if o.label == WHOLE_IMAGE_LABEL or max(x1 - x0, y1 - y0) * first_scale < min_px:
            out.append(o)
            continue
        win = window(o.box, img.width, img.height, zoom)
        crop = crop_window(img, win)
        x, lb = letterbox(crop, det.size)
        found = det.from_raw(det.raw(x), lb, crop.width, crop.height, conf=conf)
        if not found:
            out.append(o)
            continue
        boxes = crop_to_photo(np.asarray([f.box for f in found]), win, 1.0, img.width, img.height)
        j = pick(boxes, np.asarray([f.score for f in found]), o.box, max_shift)
        out.append(o if j is None else Detection(tuple(float(v) for v in boxes[j]), o.label, o.score))  # type: ignore[arg-type]
    return out
