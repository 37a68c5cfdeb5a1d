"""Train the catalog's product detector: synthetic scenes -> frozen Lite0 maps (cached) -> head.

``train_catalog_detector`` composes ``scenes`` synthetic scenes from the catalog images (``embed.compose``,
backgrounds from ``embed.textures``), runs the frozen backbone once per scene, and trains the small
head (``embed.dethead``) on the cached maps with the CenterNet loss. The head file is keyed by the
catalog fingerprint, the backbone weights and the training config, so training the same catalog again
reuses it (like the embedding adaptation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console

from embed.artifacts import file_sha256
from embed.catalog import Catalog
from embed.compose import TRAIN_STYLES, SceneStyle, compose, pick_style, product_cutout
from embed.config import EmbedSettings
from embed.dethead import DEFAULT_SIZE, HEAD_VERSION, STRIDE, DetHead, backbone_maps, detection_loss, encode_targets, letterbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetTrainConfig:
    scenes: int = 900  # 300 / 300 until the sixth round of #15 (docs/embed.md)
    steps: int = 900
    batch: int = 16
    lr: float = 3e-3
    size: int = DEFAULT_SIZE
    width: int = 48
    seed: int = 0
    styles: tuple[tuple[SceneStyle, float], ...] = TRAIN_STYLES
    stride: int = STRIDE  # 16, or 8 for a head that also merges the stride-8 map
    dense: float = 0.0  # > 0: size/offset also learned around the centres (embed.dethead.encode_targets)
    giou: float = 0.0  # > 0: weight of a GIoU box loss next to the log-size L1 (embed.dethead.detection_loss)

    def key(self) -> dict[str, object]:
        k: dict[str, object] = {"scenes": self.scenes, "steps": self.steps, "batch": self.batch, "lr": self.lr,
                                "size": self.size, "width": self.width, "seed": self.seed, "styles": repr(self.styles),
                                "v": HEAD_VERSION}
        if self.stride != STRIDE:  # heads trained as before keep the keys (and caches) they had
            k["stride"] = self.stride
        if self.dense:
            k["dense"] = self.dense
        if self.giou:
            k["giou"] = self.giou
        return k


@dataclass
class Cached:
    f16: np.ndarray  # (N, 112, G, G) float16
    f32: np.ndarray  # (N, 1280, G/2, G/2) float16
    hm: np.ndarray  # (N, G, G)
    reg: np.ndarray  # (N, 4, G, G)
    mask: np.ndarray  # (N, G, G)
    f8: np.ndarray | None = None  # (N, 40, 2G, 2G) float16, for a stride-8 head


def scene_boxes_in_input(boxes: Sequence[tuple[int, int, int, int]], scale: float) -> np.ndarray:
    return np.asarray(boxes, np.float32).reshape(-1, 4) * scale


MapsFn = Callable[[np.ndarray], tuple[np.ndarray, ...]]


def torch_maps(net: torch.nn.Module, with8: bool = False) -> MapsFn:
    def run(x: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            out = backbone_maps(net, torch.from_numpy(x), with8)
        return tuple(t.numpy() for t in out)

    return run


def onnx_maps(net: torch.nn.Module, size: int, export_dir: Path, threads: int = 0, with8: bool = False) -> MapsFn:
    """The backbone's maps (stride 16, stride 32[, stride 8]) through ONNX Runtime (exported once into
    ``export_dir``)."""
    from embed.dethead import Lite0Maps
    from embed.onnxrt import OrtRunner, export, tensor_digest

    module = Lite0Maps(net, with8).eval()
    names = ["f16", "f32", "f8"] if with8 else ["f16", "f32"]
    path = export_dir / f"lite0-maps-{tensor_digest(module, str(size))}-{size}{'-s8' if with8 else ''}.onnx"
    runner = OrtRunner(lambda: export(module, torch.zeros(2, 3, size, size), path, output_names=names,
                                      dynamic_batch=True), threads)

    def run(x: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(runner(x))

    return run


def extract(maps: MapsFn, images: Sequence[Image.Image], boxes: Sequence[Sequence[tuple[int, int, int, int]]],
            size: int, batch: int = 8, advance: Callable[[int], None] | None = None, stride: int = STRIDE,
            dense: float = 0.0) -> Cached:
    """Frozen backbone maps and targets (on the ``stride`` grid) of each scene."""
    grid = size // stride
    f16s, f32s, f8s, hms, regs, masks = [], [], [], [], [], []
    for s in range(0, len(images), batch):
        xs, tg = [], []
        for img, bx in zip(images[s : s + batch], boxes[s : s + batch]):
            x, lb = letterbox(img, size)
            xs.append(x)
            tg.append(encode_targets(scene_boxes_in_input(bx, lb.scale), grid, stride, dense))
        a, b, *c = maps(np.concatenate(xs))
        f16s.append(a.astype(np.float16))
        f32s.append(b.astype(np.float16))
        if c and stride != STRIDE:
            f8s.append(c[0].astype(np.float16))
        for hm, reg, m in tg:
            hms.append(hm)
            regs.append(reg)
            masks.append(m)
        if advance:
            advance(len(xs))
    return Cached(np.concatenate(f16s), np.concatenate(f32s), np.stack(hms), np.stack(regs), np.stack(masks),
                  np.concatenate(f8s) if f8s else None)


def train_head(data: Cached, cfg: DetTrainConfig, advance: Callable[[int], None] | None = None
               ) -> tuple[DetHead, list[float]]:
    torch.manual_seed(cfg.seed)
    head = DetHead(data.f16.shape[1], data.f32.shape[1], cfg.width, c8=data.f8.shape[1] if data.f8 is not None else 0)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=1e-4)
    # one-cycle schedule; a handful of steps (tests) keeps the constant rate (OneCycleLR needs >= 20)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
             if cfg.steps >= 20 else None)
    g = torch.Generator().manual_seed(cfg.seed)
    n = len(data.f16)
    losses: list[float] = []
    head.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (min(cfg.batch, n),), generator=g).numpy()
        f8 = torch.from_numpy(data.f8[idx].astype(np.float32)) if data.f8 is not None else None
        pred = head(torch.from_numpy(data.f16[idx].astype(np.float32)), torch.from_numpy(data.f32[idx].astype(np.float32)), f8)
        loss = detection_loss(pred, torch.from_numpy(data.hm[idx]), torch.from_numpy(data.reg[idx]),
                              torch.from_numpy(data.mask[idx]), cfg.giou)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(float(loss.detach()))
        if advance and (step + 1) % 10 == 0:
            advance(10)
    head.eval()
    return head, losses


def compose_training_scenes(products: Sequence[tuple[str, Image.Image]], textures: Sequence[Image.Image], n: int,
                            seed: int, styles: tuple[tuple[SceneStyle, float], ...] = TRAIN_STYLES,
                            advance: Callable[[int], None] | None = None) -> tuple[list[Image.Image], list[list[tuple[int, int, int, int]]]]:
    """``n`` training scenes from ``products`` (cut-outs made once) on ``textures``."""
    rng = random.Random(seed)
    cut = [(pid, product_cutout(img)) for pid, img in products]
    images, boxes = [], []
    for _ in range(n):
        style = pick_style(rng, styles)
        k = rng.randint(*style.products)
        sc = compose(rng.sample(cut, min(k, len(cut))), rng, style, list(textures), cutouts=True)
        images.append(sc.image)
        boxes.append(sc.boxes)
        if advance:
            advance(1)
    return images, boxes


def detector_key(catalog_fingerprint: str, backbone_sha: str, cfg: DetTrainConfig, textures: Sequence[str]) -> str:
    blob = json.dumps({"catalog": catalog_fingerprint, "backbone": backbone_sha, "cfg": cfg.key(),
                       "textures": list(textures)}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_head(head: DetHead, path: Path, cfg: DetTrainConfig) -> None:
    sd = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    sd["_meta.size"] = torch.tensor(cfg.size)
    sd["_meta.width"] = torch.tensor(cfg.width)
    tmp = path.with_suffix(".tmp")
    torch.save(sd, tmp)
    tmp.replace(path)


def fit(net: torch.nn.Module, products: Sequence[tuple[str, Image.Image]], textures: Sequence[Image.Image],
        cfg: DetTrainConfig, *, console: Console | None = None, quiet: bool = True, export_dir: Path | None = None,
        threads: int = 0) -> tuple[DetHead, dict[str, float]]:
    """Compose, extract (ONNX Runtime when ``export_dir`` is given, else torch), train; returns the head
    and timings / losses."""
    from embed.train import _progress

    t0 = time.monotonic()
    with _progress(console, quiet) as prog:
        t = prog.add_task(f"detector: composing {cfg.scenes} scenes", total=cfg.scenes)
        images, boxes = compose_training_scenes(products, textures, cfg.scenes, cfg.seed, cfg.styles,
                                                advance=lambda k: prog.update(t, advance=k))
        t1 = time.monotonic()
        t = prog.add_task("detector: backbone maps", total=len(images))
        with8 = cfg.stride == 8
        maps = (onnx_maps(net, cfg.size, export_dir, threads, with8) if export_dir is not None
                else torch_maps(net, with8))
        data = extract(maps, images, boxes, cfg.size, advance=lambda k: prog.update(t, advance=k), stride=cfg.stride,
                       dense=cfg.dense)
        del images
        t2 = time.monotonic()
        t = prog.add_task(f"detector: training head ({cfg.steps} steps)", total=cfg.steps)
        head, losses = train_head(data, cfg, advance=lambda k: prog.update(t, advance=k))
    stats = {"compose_s": t1 - t0, "extract_s": t2 - t1, "train_s": time.monotonic() - t2,
             "loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-20:]))}
    log.info("detector trained: %s", stats)
    return head, stats


def train_catalog_detector(catalog: Catalog, settings: EmbedSettings, *, backbone: torch.nn.Module | None = None,
                           console: Console | None = None, force: bool = False, quiet: bool = False) -> Path:
    """Train (or reuse) the product detector of ``catalog``; returns the head file (cached per catalog)."""
    from embed.artifacts import load_into
    from embed.embedder import lite0_default_weights
    from embed.imageio import InvalidImage, read_image_file
    from embed.textures import load_textures

    if settings.embedder != "efficientnet-lite0":
        raise ValueError(f"the trained detector runs on EfficientNet-Lite0 maps, not {settings.embedder}")
    weights = settings.weights or lite0_default_weights()
    cfg = DetTrainConfig(scenes=settings.det_scenes, steps=settings.det_steps, stride=settings.det_stride,
                         width=settings.det_width, dense=settings.det_dense, giou=settings.det_giou)
    textures = load_textures(settings.cache_dir / "textures", package=settings.det_textures)
    key = detector_key(catalog.fingerprint(), file_sha256(weights), cfg, [n for n, _ in textures])
    out = settings.artifacts_dir
    out.mkdir(parents=True, exist_ok=True)
    path = (out / f"detector-head-{key}.pt").resolve()
    if path.is_file() and not force:
        log.info("catalog detector cached: %s", path)
        return path
    products: list[tuple[str, Image.Image]] = []
    for it in catalog.items:
        try:
            products.append((it.product_id, read_image_file(it.image_path, max_bytes=settings.max_image_bytes,
                                                             max_pixels=settings.max_image_pixels)))
        except InvalidImage as e:
            log.warning("detector training skips %s: %s", it.image_path, e)
    if not products:
        raise ValueError("detector training needs at least one readable catalog image")
    if backbone is None:
        from efficientnet_lite_pytorch import EfficientNet

        backbone = EfficientNet.from_name("efficientnet-lite0")
        load_into(backbone, weights, what="efficientnet-lite0")
        backbone.eval()
    head, stats = fit(backbone, products, [im for _, im in textures], cfg, console=console, quiet=quiet,
                      export_dir=out if settings.runtime == "onnx" else None, threads=settings.threads)
    save_head(head, path, cfg)
    log.info("catalog detector: %d products, %s -> %s", len(products), stats, path)
    return path


def ensure_catalog_detector(catalog: Catalog, settings: EmbedSettings, model_id: str, *,
                            console: Console | None = None, force: bool = False, quiet: bool = False) -> Path | None:
    """Train (cached) and register the catalog's detector for ``model_id``; None when not applicable
    (EMBED_DET_SCENES=0, another backbone, or a YOLO/saliency/none detector configured)."""
    from embed.productdet import register_head

    if settings.det_scenes <= 0 or settings.embedder != "efficientnet-lite0" or settings.detector not in ("auto", "trained"):
        return None
    path = train_catalog_detector(catalog, settings, console=console, force=force, quiet=quiet)
    register_head(model_id, path, settings.artifacts_dir)
    return path
