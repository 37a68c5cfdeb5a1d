from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from embed.artifacts import ModelFileError
from embed.boxes import Letterbox, class_aware_nms, decode_yolo, iou_matrix, nms
from embed.detector import NoDetector, SaliencyDetector, YoloOnnxDetector, detect_objects
from tests.embed.synth import paste_into_scene, product_image

# boxes in model-input pixels (64x64 input): cx, cy, w, h, class, score
_ROWS = [
    (20, 32, 16, 16, 0, 0.90),  # A
    (21, 33, 16, 16, 0, 0.80),  # B: overlaps A, same class -> suppressed
    (20, 32, 16, 16, 1, 0.70),  # C: same place as A, other class -> kept
    (50, 40, 2, 20, 0, 0.95),   # D: 2 px wide -> under the minimum size
    (40, 20, 10, 10, 1, 0.10),  # E: under the confidence threshold
    (44, 46, 12, 12, 2, 0.60),  # F: class 2, runs into the bottom padding
]
_NC = 3
_ANCHORS = 16  # real exports have many more anchors than 4 + classes; zero rows score 0


def _raw(layout: str) -> np.ndarray:
    if layout == "v5":
        out = np.zeros((1, _ANCHORS, 5 + _NC), np.float32)
        for i, (cx, cy, w, h, c, s) in enumerate(_ROWS):
            out[0, i, :4] = (cx, cy, w, h)
            out[0, i, 4] = 0.5 if s > 0.2 else 1.0  # objectness * class prob = s
            out[0, i, 5 + c] = s / out[0, i, 4]
        return out
    out = np.zeros((1, 4 + _NC, _ANCHORS), np.float32)
    for i, (cx, cy, w, h, c, s) in enumerate(_ROWS):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + c, i] = s
    return out


def _build_onnx(path, raw: np.ndarray, size: int = 64) -> None:
    """A YOLO-layout ONNX model: input images (1,3,S,S), output = the fixed raw tensor + 0 * mean(input)."""
    const = numpy_helper.from_array(raw, name="raw")
    zero = numpy_helper.from_array(np.zeros((), np.float32), name="zero")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["raw", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "yolo_fixed",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))],
        initializer=[const, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.parametrize("layout", ["v5", "v8"])
def test_yolo_onnx_decode_nms_and_inverse_letterbox(tmp_path, layout: str) -> None:
    path = tmp_path / f"yolo_{layout}.onnx"
    _build_onnx(path, _raw(layout))
    det = YoloOnnxDetector(path, labels=["shirt", "shoe", "bag"], conf=0.25, iou=0.45, min_size=8)
    assert det.input_size == 64
    # a 128x64 photo: scale 0.5, padded 16 px top and bottom
    found = det.detect(Image.new("RGB", (128, 64), (90, 90, 90)))
    assert [d.label for d in found] == ["shirt", "shoe", "bag"]
    assert [round(d.score, 2) for d in found] == [0.9, 0.7, 0.6]
    # A: input (12, 24, 28, 40) -> original ((12-0)/.5, (24-16)/.5, 28/.5, (40-16)/.5)
    assert np.allclose(found[0].box, (24, 16, 56, 48), atol=1e-3)
    assert np.allclose(found[2].box, (76, 48, 100, 64), atol=1e-3)  # clipped at the bottom


def test_yolo_layout_v11_equals_v8_and_class_filter(tmp_path) -> None:
    path = tmp_path / "yolo11.onnx"
    _build_onnx(path, _raw("v8"))
    det = YoloOnnxDetector(path, keep_classes=[1, 2], layout="v11", min_size=8)
    found = det.detect(Image.new("RGB", (64, 64)))
    assert [d.label for d in found] == ["1", "2"]
    # without the minimum size, the thin box D (score .95) is found first
    det2 = YoloOnnxDetector(path, min_size=0)
    assert det2.detect(Image.new("RGB", (64, 64)))[0].score == pytest.approx(0.95)


def test_yolo_missing_or_corrupt_file(tmp_path) -> None:
    with pytest.raises(ModelFileError) as e:
        YoloOnnxDetector(tmp_path / "missing.onnx")
    assert "missing.onnx" in str(e.value)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelFileError) as e2:
        YoloOnnxDetector(bad)
    assert "bad.onnx" in str(e2.value)


def test_decode_yolo_layouts_agree() -> None:
    b5, s5, c5 = decode_yolo(_raw("v5"), "auto", 0.25)
    b8, s8, c8 = decode_yolo(_raw("v8"), "auto", 0.25)
    assert np.allclose(b5, b8) and np.allclose(s5, s8) and (c5 == c8).all()
    assert len(s5) == 5  # E under threshold


def test_nms_and_class_aware_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert class_aware_nms(boxes, scores, np.array([0, 0, 0, 1]), 0.5).tolist() == [0, 2, 3]


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(8, 3000), h=st.integers(8, 3000), size=st.sampled_from([64, 320, 640]),
    fx=st.floats(0, 0.5), fy=st.floats(0, 0.5), fw=st.floats(0.1, 0.5), fh=st.floats(0.1, 0.5),
)
def test_letterbox_round_trip(w: int, h: int, size: int, fx: float, fy: float, fw: float, fh: float) -> None:
    lb = Letterbox.fit(w, h, size)
    box = np.array([[fx * w, fy * h, (fx + fw) * w, (fy + fh) * h]], np.float32)
    inp = lb.to_input(box)
    assert (inp >= -1e-3).all() and (inp <= size + 1e-3).all()
    back = lb.to_original(inp, w, h)
    assert np.allclose(back, box, atol=1e-2 * max(w, h) / size + 1e-3)


def test_iou_matrix() -> None:
    m = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    assert np.allclose(m, [[1.0, 1 / 3, 0.0]])


def test_whole_photo_is_always_an_object() -> None:
    objs = detect_objects(NoDetector(), Image.new("RGB", (40, 30)))
    assert len(objs) == 1 and objs[0].label == "image" and objs[0].box == (0, 0, 40, 30)


@pytest.fixture(scope="module")
def saliency(lite0) -> SaliencyDetector:
    return SaliencyDetector(lite0.backbone.net)


def test_saliency_finds_pasted_products(saliency: SaliencyDetector) -> None:
    hits = 0
    for i in range(5):
        scene, box = paste_into_scene(product_image(i * 7), seed=i, scale=0.4)
        objs = detect_objects(saliency, scene, max_objects=6)
        assert objs[-1].label == "image"
        best = iou_matrix(np.array([o.box for o in objs[:-1]] or [[0, 0, 0, 0]]), np.array([box])).max()
        hits += best >= 0.3
    assert hits >= 4
