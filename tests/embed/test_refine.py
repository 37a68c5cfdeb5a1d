"""Box refinement (embed.refine): the zoom window, the crop <-> photo mapping, the pick, and the pass
over a photo's objects with an in-memory head double (pure logic; the real head runs in bench/detround.py
and in the query tests)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from embed.detector import WHOLE_IMAGE_LABEL, Detection
from embed.dethead import LetterboxInfo, letterbox
from embed.refine import crop_to_photo, crop_window, photo_to_crop, pick, refine_objects, window


def test_window_is_a_square_zoom_around_the_box_shifted_inside_the_photo_or_centred_past_it() -> None:
    # 40 x 20 box centred at (120, 100) in a 640 x 480 photo: side 3 x 40 = 120, centred
    assert window((100, 90, 140, 110), 640, 480, 3.0) == (60, 40, 180, 160)
    # near the top-left corner the window keeps its side and moves inside the photo
    assert window((0, 0, 40, 40), 640, 480, 3.0) == (0, 0, 120, 120)
    # near the bottom-right corner too
    assert window((600, 440, 640, 480), 640, 480, 3.0) == (520, 360, 640, 480)
    # side 600: fits across (shifted inside), not down (centred on the box, reaching past the photo)
    assert window((300, 200, 500, 260), 640, 480, 3.0) == (40, -70, 640, 530)
    # larger than the photo both ways: centred on the box (a zoom out)
    assert window((300, 200, 520, 260), 640, 480, 3.0) == (80, -100, 740, 560)
    with pytest.raises(ValueError):
        window((0, 0, 10, 10), 100, 100, 0.0)


def test_crop_window_pads_past_the_photo_with_grey() -> None:
    img = Image.new("RGB", (100, 80), (10, 200, 30))
    img.putpixel((0, 0), (255, 0, 0))
    crop = crop_window(img, (-20, -10, 130, 140))
    assert crop.size == (150, 150)
    assert crop.getpixel((20, 10)) == (255, 0, 0)  # the photo's corner lands at its offset
    assert crop.getpixel((21, 11)) == (10, 200, 30)
    assert crop.getpixel((5, 5)) == (127, 127, 127) and crop.getpixel((140, 100)) == (127, 127, 127)
    assert crop_window(img, (10, 10, 50, 50)).size == (40, 40)


def test_crop_coordinates_round_trip_through_the_letterboxed_zoom() -> None:
    img_w, img_h = 800, 600
    box = (410.0, 250.0, 470.0, 330.0)
    win = window(box, img_w, img_h, 2.5)
    cw, ch = win[2] - win[0], win[3] - win[1]
    _, lb = letterbox(Image.new("RGB", (cw, ch)), 352)
    assert lb.scale == pytest.approx(352 / max(cw, ch))
    zoomed = photo_to_crop(np.array([box]), win, lb.scale)
    # the box is in the middle of the zoomed input and 352 / 2.5 px on its long side
    assert (zoomed[0, :2] + zoomed[0, 2:]).tolist() == pytest.approx([352, 352], abs=1.5)
    assert max(zoomed[0, 2] - zoomed[0, 0], zoomed[0, 3] - zoomed[0, 1]) == pytest.approx(352 / 2.5, abs=1.0)
    back = crop_to_photo(zoomed, win, lb.scale)
    assert back[0].tolist() == pytest.approx(list(box), abs=1e-6)
    # outside the window is clipped to it, and to the photo when its size is given
    far = crop_to_photo(np.array([[-50.0, -50.0, 1000.0, 1000.0]]), win, lb.scale)
    assert far[0].tolist() == pytest.approx([win[0], win[1], win[2], win[3]])
    past = (-100, -50, 300, 350)
    assert crop_to_photo(np.array([[50.0, 20.0, 500.0, 500.0]]), past, 1.0, 250, 200)[0].tolist() == \
        pytest.approx([0.0, 0.0, 250.0, 200.0])
    assert crop_to_photo(np.array([[150.0, 100.0, 200.0, 180.0]]), past, 1.0, 250, 200)[0].tolist() == \
        pytest.approx([50.0, 50.0, 100.0, 130.0])


def test_pick_takes_the_most_confident_detection_centred_on_the_box() -> None:
    box = (100.0, 100.0, 140.0, 160.0)  # centre (120, 130), 40 x 60
    cands = np.array([
        [100, 90, 150, 170],  # centre (125, 130): near
        [200, 200, 260, 260],  # far away, most confident
        [90, 80, 160, 190],  # centre (125, 135): near, more confident than the first
    ], np.float64)
    assert pick(cands, np.array([0.4, 0.9, 0.6]), box) == 2
    assert pick(cands, np.array([0.7, 0.9, 0.6]), box) == 0
    assert pick(cands[1:2], np.array([0.9]), box) is None
    assert pick(np.zeros((0, 4)), np.zeros(0), box) is None
    # a shift of 0.4 box widths is within 0.5, 0.6 is not
    assert pick(np.array([[116, 100, 156, 160]]), np.array([0.5]), box) == 0
    assert pick(np.array([[124, 100, 164, 160]]), np.array([0.5]), box) is None


class _Head:
    """A head double: 'finds' the true box wherever it lies in the crop it is shown, plus a decoy."""

    size = 352

    def __init__(self, truth: tuple[float, float, float, float]) -> None:
        self.truth = truth
        self.shown: list[tuple[int, int]] = []
        self.crop_origin: tuple[int, int] = (0, 0)

    def raw(self, x: np.ndarray) -> np.ndarray:
        assert x.shape == (1, 3, self.size, self.size)
        return x

    def from_raw(self, pred: np.ndarray, lb: LetterboxInfo, w: int, h: int, *, conf: float | None = None,
                 iou: float | None = None) -> list[Detection]:
        self.shown.append((w, h))
        ox, oy = self.crop_origin
        x0, y0, x1, y1 = self.truth
        return [Detection((x0 - ox, y0 - oy, x1 - ox, y1 - oy), "object", 0.8),
                Detection((0.0, 0.0, 10.0, 10.0), "object", 0.95)]  # a confident decoy in the crop's corner


def test_refine_objects_replaces_boxes_with_the_crops_detection_in_photo_pixels() -> None:
    img = Image.new("RGB", (640, 480), (90, 90, 90))
    truth = (250.0, 150.0, 370.0, 290.0)
    small = Detection((280.0, 190.0, 340.0, 250.0), "object", 0.3)  # too small, same centre
    whole = Detection((0.0, 0.0, 640.0, 480.0), WHOLE_IMAGE_LABEL, 0.0)
    for zoom in (3.0, 6.0):  # inside the photo; past it (a zoom out)
        head = _Head(truth)
        win = window(small.box, 640, 480, zoom)
        head.crop_origin = win[:2]
        out = refine_objects(head, img, [small, whole], zoom)
        assert out[0].box == pytest.approx(truth)
        assert (out[0].label, out[0].score) == ("object", 0.3)  # the first pass's score stays
        assert out[1] == whole
        assert head.shown == [(win[2] - win[0], win[3] - win[1])]  # one head pass, on the zoomed crop only
    head = _Head((500.0, 400.0, 560.0, 460.0))  # nothing near the box's centre: the box is kept
    head.crop_origin = window(small.box, 640, 480, 3.0)[:2]
    assert refine_objects(head, img, [small], 3.0) == [small]


def test_refine_objects_leaves_boxes_under_min_px_of_the_first_pass_alone() -> None:
    img = Image.new("RGB", (704, 480), (90, 90, 90))  # first pass: 352 / 704 = 0.5 input px per photo px
    small = Detection((300.0, 200.0, 380.0, 260.0), "object", 0.3)  # 80 photo px long = 40 input px
    large = Detection((100.0, 100.0, 340.0, 300.0), "object", 0.6)  # 240 photo px = 120 input px
    head = _Head((90.0, 80.0, 360.0, 330.0))
    head.crop_origin = window(large.box, 704, 480, 6.0)[:2]
    out = refine_objects(head, img, [large, small], 6.0, min_px=41.0)
    assert out[1] == small and out[0].box == pytest.approx((90.0, 80.0, 360.0, 330.0))
    assert len(head.shown) == 1  # the small box was not re-run
    head.shown.clear()
    refine_objects(head, img, [large, small], 6.0, min_px=39.0)
    assert len(head.shown) == 2
