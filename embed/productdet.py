"""The trained product detector at query time, and where its head file is found for a model.

``ProductDetector`` runs the Lite0 backbone + trained head (``embed.dethead``) on the letterboxed
photo, through ONNX Runtime (backbone and head exported together, cached in the artifacts dir) or
eager torch, and returns class-agnostic boxes ordered by confidence. ``embed train`` records the head
of a catalog under the embedding model id it belongs with (``<artifacts>/detector-for-<model_id>.json``),
so the query side picks the right head for a collection.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from embed.artifacts import ModelFileError, file_sha256, load_state_dict
from embed.detector import Detection
from embed.dethead import DEFAULT_SIZE, DetHead, LetterboxInfo, backbone_maps, decode, letterbox, to_original

log = logging.getLogger(__name__)
CATALOG_HEAD_PREFIX = "catalog-head-"


def load_head(path: Path | str) -> tuple[DetHead, int]:
    """A head file -> (DetHead, input size). Clear errors that name the path."""
    sd = dict(load_state_dict(path))
    size = int(sd.pop("_meta.size", torch.tensor(DEFAULT_SIZE)))
    width = int(sd.pop("_meta.width", torch.tensor(48)))
    try:
        c8 = sd["lat8.weight"].shape[1] if "lat8.weight" in sd else 0
        head = DetHead(sd["lat16.weight"].shape[1], sd["lat32.weight"].shape[1], width, c8=c8)
        head.load_state_dict(sd, strict=True)
    except (KeyError, RuntimeError) as e:
        raise ModelFileError(path, f"not a product detector head ({e})") from e
    head.eval()
    return head, size


class _Detect(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, head: DetHead) -> None:
        super().__init__()
        self.net, self.head = net, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(*backbone_maps(self.net, x, self.head.c8 > 0))


class ProductDetector:
    """Class-agnostic product boxes from the catalog-trained head, best first."""

    def __init__(self, head_path: Path | str, backbone: torch.nn.Module | None = None, *, runtime: str = "onnx",
                 export_dir: Path | None = None, conf: float = 0.2, iou: float = 0.5, min_size: float = 16,
                 top_k: int = 20, threads: int = 0) -> None:
        self.head, self.size = load_head(head_path)
        if backbone is None:
            from efficientnet_lite_pytorch import EfficientNet

            from embed.artifacts import load_into
            from embed.embedder import lite0_default_weights

            backbone = EfficientNet.from_name("efficientnet-lite0")
            load_into(backbone, lite0_default_weights(), what="efficientnet-lite0")
            backbone.eval()
        self.model = _Detect(backbone, self.head).eval()
        self.conf, self.iou, self.min_size, self.top_k = conf, iou, min_size, top_k
        self.detector_id = f"{CATALOG_HEAD_PREFIX}{file_sha256(head_path)[:12]}"
        self.runtime = runtime
        self._ort = None
        if runtime == "onnx":
            from embed.onnxrt import OrtRunner, export, tensor_digest

            out_dir = export_dir or Path(head_path).parent
            name = f"detector-{tensor_digest(self.model, str(self.size))}-{self.size}.onnx"
            example = torch.zeros(1, 3, self.size, self.size)
            self._ort = OrtRunner(lambda: export(self.model, example, out_dir / name, output_names=["pred"]), threads)
        elif runtime != "torch":
            raise ValueError(f"unknown runtime {runtime!r} (onnx or torch)")

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Head output (5, G, G) for one letterboxed input (1, 3, S, S)."""
        if self._ort is not None:
            return self._ort(x)[0][0]
        with torch.inference_mode():
            return self.model(torch.from_numpy(x))[0].numpy()

    def detect(self, img: Image.Image) -> list[Detection]:
        x, lb = letterbox(img, self.size)
        return self.from_raw(self.raw(x), lb, img.width, img.height)

    def from_raw(self, pred: np.ndarray, lb: LetterboxInfo, w: int, h: int, *, conf: float | None = None,
                 iou: float | None = None) -> list[Detection]:
        """Boxes in the photo's pixels from the head output (thresholds default to the detector's)."""
        boxes, scores = decode(pred, top_k=self.top_k, conf=self.conf if conf is None else conf,
                               iou=self.iou if iou is None else iou, stride=self.head.stride)
        boxes = to_original(boxes, lb, w, h)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= self.min_size) & ((boxes[:, 3] - boxes[:, 1]) >= self.min_size)
        return [Detection(tuple(float(v) for v in b), "object", float(s))  # type: ignore[arg-type]
                for b, s in zip(boxes[keep], scores[keep])]


# ---- which head goes with which embedding model -----------------------------------------------

def _record(model_id: str, artifacts_dir: Path) -> Path:
    return artifacts_dir / f"detector-for-{model_id}.json"


def register_head(model_id: str, head_path: Path, artifacts_dir: Path) -> None:
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    p = _record(model_id, artifacts_dir)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"head": str(Path(head_path).resolve())}))
    tmp.replace(p)


def head_for_model(model_id: str, artifacts_dir: Path) -> Path | None:
    """The head registered for ``model_id``, if its file still exists."""
    p = _record(model_id, artifacts_dir)
    if not p.is_file():
        return None
    try:
        head = Path(json.loads(p.read_text())["head"])
    except (ValueError, KeyError, OSError):
        return None
    return head if head.is_file() else None

