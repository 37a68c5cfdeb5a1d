"""The catalog-trained product detector: targets, composition, training, ordering, ONNX Runtime parity."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from embed.artifacts import ModelFileError
from embed.compose import STYLES, SceneStyle, compose, perspective_coeffs, product_cutout
from embed.config import EmbedSettings
from embed.detector import Detection, detect_objects
from embed.dethead import (
    STRIDE,
    DetHead,
    backbone_maps,
    cell_boxes,
    decode,
    detection_loss,
    encode_targets,
    generalized_iou,
)
from embed.detrain import DetTrainConfig, fit, save_head
from embed.errors import ModelConfigError
from embed.evalmetrics import box_recall
from embed.models import build_detector
from embed.productdet import ProductDetector, head_for_model, load_head, register_head
from embed.textures import load_textures, split_textures
from tests.embed.synth import background, product_image

SIZE = 256  # tiny input for tests (16x16 cells)


def test_targets_decode_back_to_the_boxes() -> None:
    boxes = np.array([[20, 30, 100, 90], [130, 140, 250, 200], [5, 180, 40, 250]], np.float32)
    hm, reg, mask = encode_targets(boxes, SIZE // STRIDE)
    assert mask.sum() == 3 and hm.max() == 1.0
    pred = np.concatenate([np.where(hm == 1.0, 8.0, -8.0)[None], reg]).astype(np.float32)
    got, scores = decode(pred, conf=0.5)
    assert len(got) == 3 and (scores > 0.99).all()
    order = np.argsort(got[:, 0])
    assert np.allclose(got[order], boxes[np.argsort(boxes[:, 0])], atol=1e-3)


def test_giou_box_loss_is_zero_for_the_true_box_and_grows_with_the_size_error() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]]).reshape(1, 4, 1, 1)
    assert generalized_iou(a, a).item() == pytest.approx(1.0)
    half = torch.tensor([[0.5, 0.5, 1.5, 1.5]]).reshape(1, 4, 1, 1)  # centred, a quarter of the area
    assert generalized_iou(half, a).item() == pytest.approx(0.25)
    far = torch.tensor([[4.0, 0.0, 6.0, 2.0]]).reshape(1, 4, 1, 1)  # disjoint: IoU 0, hull 12, union 8
    assert generalized_iou(far, a).item() == pytest.approx(-1 / 3)
    reg = torch.tensor([np.log(4.0), np.log(2.0), 0.5, 0.5]).reshape(1, 4, 1, 1)  # 4 x 2 cells at (0.5, 0.5)
    assert cell_boxes(reg).flatten().tolist() == pytest.approx([-1.5, -0.5, 2.5, 1.5])
    hm, mask = torch.ones(1, 1, 1), torch.ones(1, 1, 1)
    losses = []
    for shrink in (1.0, 0.8, 0.5):
        pred = torch.cat([torch.full((1, 1, 1, 1), 8.0), reg.clone()], 1)
        pred[:, 1:3] += float(np.log(shrink))
        losses.append(float(detection_loss(pred, hm, reg, mask, giou=1.0) - detection_loss(pred, hm, reg, mask)))
    assert losses[0] == pytest.approx(0.0, abs=1e-6) and 0 < losses[1] < losses[2]


def test_dense_targets_predict_the_whole_box_around_the_centre() -> None:
    boxes = np.array([[20, 30, 100, 90], [130, 140, 250, 200]], np.float32)
    g = SIZE // STRIDE
    hm, reg, mask = encode_targets(boxes, g, dense=0.3)
    hm0, reg0, mask0 = encode_targets(boxes, g)
    assert np.array_equal(hm, hm0)  # the heatmap is the same; only where size/offset are learned differs
    assert mask.sum() > mask0.sum() and ((mask == 1.0) == (mask0 == 1.0)).all()  # centres weigh 1, others less
    assert np.allclose(reg[:, mask0 > 0], reg0[:, mask0 > 0])
    # every weighted cell, decoded as if it were the peak, gives back its object's box
    ys, xs = np.nonzero(mask)
    for y, x in zip(ys, xs):
        w, h = np.exp(reg[0, y, x]), np.exp(reg[1, y, x])
        cx, cy = x + reg[2, y, x], y + reg[3, y, x]
        got = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * STRIDE
        assert np.isclose(np.abs(boxes - got).sum(axis=1), 0, atol=1e-3).any()
    # centre-only targets: the weighted loss is the old per-object mean
    pred = torch.zeros(1, 5, g, g)
    t = [torch.from_numpy(a)[None] for a in (hm0, reg0, mask0)]
    l1 = (torch.nn.functional.l1_loss(pred[:, 1:5], t[1], reduction="none").sum(1) * t[2]).sum() / 2
    assert torch.isclose(detection_loss(pred, *t) - detection_loss(torch.cat([pred[:, :1], t[1]], 1), *t), l1)


def test_stride8_targets_decode_back_and_the_head_runs_on_three_maps() -> None:
    boxes = np.array([[20, 30, 100, 90], [130, 140, 250, 200], [5, 180, 40, 250]], np.float32)
    hm, reg, mask = encode_targets(boxes, SIZE // 8, stride=8)
    pred = np.concatenate([np.where(hm == 1.0, 8.0, -8.0)[None], reg]).astype(np.float32)
    got, _ = decode(pred, conf=0.5, stride=8)
    assert np.allclose(got[np.argsort(got[:, 0])], boxes[np.argsort(boxes[:, 0])], atol=1e-3)
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0").eval()
    with torch.inference_mode():
        f16, f32, f8 = backbone_maps(net, torch.zeros(1, 3, SIZE, SIZE), with8=True)
        head = DetHead(f16.shape[1], f32.shape[1], 8, c8=f8.shape[1]).eval()
        assert head.stride == 8 and head(f16, f32, f8).shape == (1, 5, SIZE // 8, SIZE // 8)
        assert DetHead(width=8).stride == STRIDE


def test_perspective_coefficients_map_corners() -> None:
    src = [(0, 0), (100, 0), (100, 80), (0, 80)]
    dst = [(10, 5), (90, 0), (100, 70), (0, 80)]
    a, b, c, d, e, f, g, h = perspective_coeffs(src, dst)
    for (x, y), (u, v) in zip(dst, src):
        den = g * x + h * y + 1
        assert abs((a * x + b * y + c) / den - u) < 1e-6 and abs((d * x + e * y + f) / den - v) < 1e-6


def test_cutout_keeps_white_inside_the_product() -> None:
    img = Image.new("RGB", (60, 60), "white")
    img.paste((200, 0, 0), (10, 10, 50, 50))
    img.paste((255, 255, 255), (25, 25, 35, 35))  # white hole inside: part of the product
    cut = product_cutout(img)
    a = np.asarray(cut.getchannel("A"))
    assert cut.size[0] <= 42 and a[a.shape[0] // 2, a.shape[1] // 2] == 255


def test_compose_boxes_are_the_visible_products() -> None:
    products = [(f"P{i}", product_image(i)) for i in range(4)]
    textures = [background(s, 320, 240) for s in range(3)]
    for seed in range(6):
        sc = compose(products, random.Random(seed), STYLES["cluttered"], textures)
        w, h = sc.image.size
        assert sc.jpeg[:2] == b"\xff\xd8" and len(sc.boxes) == len(sc.product_ids) == len(sc.visible)
        assert set(sc.product_ids) <= {p for p, _ in products} and 1 <= len(sc.boxes) <= 4
        for (x0, y0, x1, y1), vis in zip(sc.boxes, sc.visible):
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and vis >= 0.5
    single = compose(products[:1], random.Random(0), STYLES["single"], textures)
    assert len(single.boxes) == 1


class _Fixed:
    detector_id = "fixed"

    def __init__(self, dets: list[Detection]) -> None:
        self.dets = dets

    def detect(self, img: Image.Image) -> list[Detection]:
        return list(self.dets)


def test_objects_by_confidence_whole_photo_last_as_fallback() -> None:
    img = Image.new("RGB", (200, 100))
    dets = [Detection((0, 0, 50, 50), "object", 0.3), Detection((60, 0, 120, 50), "object", 0.9),
            Detection((0, 0, 200, 100), "object", 0.95),  # the whole photo again: dropped
            Detection((130, 10, 190, 90), "object", 0.6)]
    objs = detect_objects(_Fixed(dets), img, max_objects=3)
    assert [o.score for o in objs[:-1]] == [0.9, 0.6]
    assert objs[-1].label == "image" and objs[-1].box == (0, 0, 200, 100) and len(objs) == 3
    first = detect_objects(_Fixed(dets), img, max_objects=3, whole="first")
    assert first[0].label == "image" and [o.score for o in first[1:]] == [0.9, 0.6]
    nothing = detect_objects(_Fixed([]), img, max_objects=5)
    assert len(nothing) == 1 and nothing[0].label == "image"


@pytest.fixture(scope="module")
def trained(lite0, tmp_path_factory):
    """A head trained in seconds on 40 scenes of 10 synthetic products at 256 px."""
    products = [(f"P{i}", product_image(i)) for i in range(10)]
    textures = [background(s, 400, 300) for s in range(6)]
    style = SceneStyle(products=(1, 3), scale=(0.3, 0.5), distractors=(0, 1), max_occlusion=0.1, jpeg=(60, 90),
                       sizes=((320, 240), (256, 256)))
    cfg = DetTrainConfig(scenes=40, steps=120, batch=8, lr=4e-3, size=SIZE, width=32, styles=((style, 1.0),))
    path = tmp_path_factory.mktemp("head") / "head.pt"
    head, stats = fit(lite0.backbone.net, products, textures, cfg, export_dir=path.parent)  # maps via onnxruntime
    save_head(head, path, cfg)
    return path, stats, style


def test_trained_head_finds_held_out_products_better_than_chance(lite0, trained) -> None:
    path, stats, style = trained
    assert stats["loss_last"] < stats["loss_first"]
    det = ProductDetector(path, lite0.backbone.net, runtime="torch", conf=0.05)
    rng = random.Random(99)
    unseen = [(f"Q{i}", product_image(100 + i)) for i in range(8)]  # products never seen in training
    textures = [background(50 + s, 400, 300) for s in range(3)]
    hit = tot = hit_chance = 0
    for _ in range(10):
        sc = compose(rng.sample(unseen, rng.randint(1, 2)), rng, style, textures)
        objs = detect_objects(det, sc.image, len(sc.boxes) + 1)[: len(sc.boxes)]  # n boxes, whole photo excluded
        c, t = box_recall(np.array([o.box for o in objs if o.label != "image"]), np.array(sc.boxes))
        hit, tot = hit + c, tot + t
        # chance: as many random boxes of product-like size
        w, h = sc.image.size
        rand = []
        for _ in range(len(sc.boxes)):
            s = rng.uniform(0.2, 0.5) * min(w, h)
            x, y = rng.uniform(0, w - s), rng.uniform(0, h - s)
            rand.append((x, y, x + s, y + s))
        hit_chance += box_recall(np.array(rand), np.array(sc.boxes))[0]
    assert hit / tot >= 0.5 and hit / tot >= hit_chance / tot + 0.3, (hit, hit_chance, tot)


def test_onnx_runtime_matches_torch(lite0, trained, tmp_path) -> None:
    path, _, style = trained
    img = compose([("P1", product_image(1))], random.Random(3), style, [background(1, 320, 240)]).image
    t = ProductDetector(path, lite0.backbone.net, runtime="torch")
    o = ProductDetector(path, lite0.backbone.net, runtime="onnx", export_dir=tmp_path)
    from embed.dethead import letterbox

    x, _ = letterbox(img, t.size)
    a, b = t.raw(x), o.raw(x)
    assert a.shape == b.shape == (5, SIZE // STRIDE, SIZE // STRIDE)
    assert np.abs(a - b).max() < 1e-3 * max(1.0, float(np.abs(a).max()))
    assert [round(d.score, 3) for d in t.detect(img)] == [round(d.score, 3) for d in o.detect(img)]
    # the exported embedder gives the torch vectors too
    from embed.embedder import Embedder, EmbedderSpec

    e = Embedder(EmbedderSpec(), batch_size=4, runtime="onnx", export_dir=tmp_path)
    crops = [product_image(i) for i in range(3)]
    assert np.abs(e.embed(crops) - lite0.embed(crops)).max() < 1e-4
    assert list(tmp_path.glob("*.onnx"))


def test_head_registry_and_detector_choice(lite0, trained, tmp_path) -> None:
    path, _, _ = trained
    s = EmbedSettings(cache_dir=tmp_path, runtime="torch")
    assert head_for_model(lite0.model_id, s.artifacts_dir) is None
    assert type(build_detector(s, lite0)).__name__ == "SaliencyDetector"  # auto without a head
    with pytest.raises(ModelConfigError, match="embed train"):
        build_detector(s.model_copy(update={"detector": "trained"}), lite0)
    register_head(lite0.model_id, path, s.artifacts_dir)
    assert head_for_model(lite0.model_id, s.artifacts_dir) == path.resolve()
    det = build_detector(s, lite0)
    assert isinstance(det, ProductDetector) and det.model.net is lite0.backbone.net  # one shared backbone
    assert head_for_model("lite0-256-other", s.artifacts_dir) is None


def test_bad_head_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "head.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(ModelFileError, match="head.pt"):
        load_head(bad)
    with pytest.raises(ModelFileError, match="not found"):
        load_head(tmp_path / "missing.pt")


def test_textures_from_wheels_split_into_disjoint_pools() -> None:
    tex = load_textures(use_package=False, max_side=256)
    assert len(tex) >= 4 and all(max(im.size) <= 256 and im.mode == "RGB" for _, im in tex)
    train, held = split_textures(tex)
    assert train and held and not {id(t) for t in train} & {id(h) for h in held}


def test_catalog_detector_trains_once_per_catalog_and_registers(tmp_path) -> None:
    from embed.catalog import read_catalog
    from embed.detrain import ensure_catalog_detector
    from tests.embed.synth import make_catalog

    cat = read_catalog(make_catalog(tmp_path / "cat", 5))
    s = EmbedSettings(cache_dir=tmp_path / "cache", det_scenes=6, det_steps=10, det_textures="", runtime="torch",
                      threads=1)
    p1 = ensure_catalog_detector(cat, s, "lite0-test-model", quiet=True)
    assert p1 is not None and p1.is_file() and head_for_model("lite0-test-model", s.artifacts_dir) == p1
    mtime = p1.stat().st_mtime_ns
    assert ensure_catalog_detector(cat, s, "lite0-test-model", quiet=True) == p1 and p1.stat().st_mtime_ns == mtime
    load_head(p1)  # a valid head file
    assert ensure_catalog_detector(cat, s.model_copy(update={"det_scenes": 0}), "m2", quiet=True) is None
    assert ensure_catalog_detector(cat, s.model_copy(update={"detector": "yolo"}), "m3", quiet=True) is None
