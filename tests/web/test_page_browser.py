"""The shopper's page in a real browser (Debian's headless Chromium driven by Playwright): upload a
scene photo, wait for the boxes, find the pasted product among the matches of the box around it,
click the box, and read the message for a text file sent as an image. Screenshots are kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embed.synth import jpeg, paste_into_scene, product_image
from tests.web.conftest import PageEnv

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (a dev dependency) is not installed")
pytestmark = pytest.mark.timeout(2400)  # the first test also waits for the catalog import (model adaptation)


def on_truth(a: list[float], b: tuple[int, int, int, int]) -> float:
    """Share of box ``a`` that lies on the pasted canvas ``b``. The canvas includes the product's
    transparent margin, so a tight box around the visible product has a small IoU with it."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return ix * iy / area if area > 0 else 0.0


def iou(a: list[float], b: tuple[int, int, int, int]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[object]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, headless=True,
                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: object, page_env: PageEnv) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
    pg = ctx.new_page()
    pg.set_default_timeout(180_000)  # a search on a busy 2-core machine can take a while
    pg.goto(page_env.url + "/")
    pg.wait_for_selector(f"#collection option[value='{page_env.collection}']", state="attached")
    pg.select_option("#collection", page_env.collection)
    try:
        yield pg
    finally:
        ctx.close()


def test_upload_scene_boxes_matches_and_focus(page: object, page_env: PageEnv, tmp_path: Path,
                                              artifacts_dir: Path) -> None:
    pid = 9
    scene, truth = paste_into_scene(product_image(pid), seed=901, size=(640, 480), scale=0.45, angle=8)
    photo = tmp_path / "scene.jpg"
    photo.write_bytes(jpeg(scene, 75))
    page.set_input_files("#file", str(photo))  # type: ignore[attr-defined]
    page.wait_for_selector("#result[data-done='1']")  # type: ignore[attr-defined]
    res = page.evaluate("window.lastSearch.response")  # type: ignore[attr-defined]
    boxes = page.locator(".box")  # type: ignore[attr-defined]
    assert boxes.count() == len(res["objects"]) >= 1
    # the box the detector drew around the pasted product (best overlap), not the whole photo
    objs = [(i, o) for i, o in enumerate(res["objects"]) if o["label"] != "image"] or list(enumerate(res["objects"]))
    best, obj = max(objs, key=lambda io: iou(io[1]["box"], truth))
    assert iou(obj["box"], truth) > 0.2 and on_truth(obj["box"], truth) > 0.8, (obj["box"], truth)
    row = page.locator(f".object[data-index='{best}']")  # type: ignore[attr-defined]
    want = f"P{pid:03d}"
    assert row.locator(f".match[data-product='{want}']").count() == 1, row.inner_text()
    # every match tile shows product id, attributes and score
    first = row.locator(".match").first
    assert want in row.inner_text() and "score" in first.inner_text()
    assert "color: " in row.inner_text()  # a catalog attribute of the synthetic catalog
    # the timing table shows the browser-side time and the server stages
    timings = page.locator("#timings").inner_text()  # type: ignore[attr-defined]
    for stage in ("browser", "detect", "embed", "vector search", "gRPC"):
        assert stage in timings
    # clicking the box focuses its matches
    page.locator(f".box[data-index='{best}'] span").click(timeout=60_000)  # its numbered label  # type: ignore[attr-defined]
    assert "focused" in (row.get_attribute("class") or "")
    others = page.locator(".object.dimmed")  # type: ignore[attr-defined]
    assert others.count() == len(res["objects"]) - 1
    page.screenshot(path=str(artifacts_dir / "page-search.png"), full_page=True)  # type: ignore[attr-defined]
    assert not page.locator("#error").is_visible()  # type: ignore[attr-defined]


def test_text_file_as_image_shows_a_message(page: object, tmp_path: Path, artifacts_dir: Path) -> None:
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("this is a shopping list, not a photo\n" * 20)
    page.set_input_files("#file", str(bogus))  # type: ignore[attr-defined]
    err = page.locator("#error")  # type: ignore[attr-defined]
    err.wait_for(state="visible")
    text = err.inner_text()
    assert "not an image" in text
    assert "Traceback" not in page.content()  # type: ignore[attr-defined]
    page.screenshot(path=str(artifacts_dir / "page-not-an-image.png"))  # type: ignore[attr-defined]


def test_filter_that_excludes_everything_says_nothing_found(page: object, tmp_path: Path) -> None:
    scene, _ = paste_into_scene(product_image(3), seed=77, size=(480, 360))
    photo = tmp_path / "scene.jpg"
    photo.write_bytes(jpeg(scene, 80))
    page.fill("#filter", 'product_id == "no-such-product"')  # type: ignore[attr-defined]
    page.set_input_files("#file", str(photo))  # type: ignore[attr-defined]
    page.wait_for_selector("#result[data-done='1']")  # type: ignore[attr-defined]
    assert "Nothing found" in page.locator("#error").inner_text()  # type: ignore[attr-defined]


def test_catalog_page_lists_products_imports_and_nodes(page: object, page_env: PageEnv) -> None:
    page.goto(page_env.url + "/catalog")  # type: ignore[attr-defined]
    page.wait_for_selector("#products .match")  # type: ignore[attr-defined]
    assert page.locator("#products .match").count() == 18  # type: ignore[attr-defined]
    page.wait_for_selector("#nodes tbody tr")  # type: ignore[attr-defined]
    assert page.locator("#nodes tbody tr").count() == 3  # type: ignore[attr-defined]
    page.wait_for_selector("#imports tbody tr")  # type: ignore[attr-defined]
    assert page_env.collection in page.locator("#imports").inner_text()  # type: ignore[attr-defined]
    assert "18" in page.locator("#imports tbody tr").first.inner_text()  # type: ignore[attr-defined]
