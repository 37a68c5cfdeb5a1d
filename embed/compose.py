"""Synthetic scenes composed from catalog images (copy-paste augmentation) with exact boxes.

Used to train the product detector (``embed.dethead``) and to build the hard benchmark splits
(``bench/relevance.py``). A scene is a background (a real texture crop, or a plain backdrop), catalog
products cut out of their white background and pasted at random scale, rotation and perspective,
partly occluding each other, distractor shapes that are not products, a lighting gradient, blur and
JPEG. Boxes are the tight boxes of the visible part of every product.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter


@dataclass(frozen=True)
class SceneStyle:
    """How a scene is made. ``plain``: one product on a flat backdrop; otherwise a textured scene."""

    products: tuple[int, int] = (1, 2)  # inclusive range of products per scene
    scale: tuple[float, float] = (0.3, 0.6)  # object long side / short image side
    plain: bool = False
    distractors: tuple[int, int] = (0, 0)
    max_occlusion: float = 0.0  # fraction of a product another object may hide
    perspective: float = 0.0  # corner jitter, fraction of the object size
    rotation: float = 20.0  # degrees
    blur: tuple[float, float] = (0.0, 0.8)
    jpeg: tuple[int, int] = (60, 90)
    lighting: float = 0.15
    sizes: tuple[tuple[int, int], ...] = ((640, 480), (480, 640), (640, 640), (800, 600))


STYLES: dict[str, SceneStyle] = {
    "single": SceneStyle(products=(1, 1), scale=(0.45, 0.8), plain=True, rotation=10, blur=(0, 0.5), jpeg=(70, 92)),
    "scene": SceneStyle(products=(1, 2), scale=(0.3, 0.55), distractors=(0, 1), max_occlusion=0.1,
                        perspective=0.08, rotation=20, blur=(0, 1.0), jpeg=(50, 85)),
    "cluttered": SceneStyle(products=(3, 4), scale=(0.2, 0.4), distractors=(2, 4), max_occlusion=0.35,
                            perspective=0.15, rotation=30, blur=(0.3, 1.8), jpeg=(20, 45), lighting=0.3),
}
# training mixes all of these plus crowded scenes (5 products) so the head learns every case
TRAIN_STYLES: tuple[tuple[SceneStyle, float], ...] = (
    (STYLES["single"], 0.15),
    (STYLES["scene"], 0.3),
    (STYLES["cluttered"], 0.4),
    (SceneStyle(products=(4, 6), scale=(0.15, 0.32), distractors=(1, 5), max_occlusion=0.35, perspective=0.15,
                rotation=30, blur=(0, 1.5), jpeg=(25, 80), lighting=0.3), 0.15),
)


@dataclass
class Composed:
    image: Image.Image  # JPEG-decoded RGB
    jpeg: bytes
    boxes: list[tuple[int, int, int, int]]  # visible part of each product, x0 y0 x1 y1
    product_ids: list[str]
    visible: list[float] = field(default_factory=list)  # visible fraction of each product


def product_cutout(img: Image.Image) -> Image.Image:
    """RGBA cut-out of a catalog image: its alpha if it has one, else the near-white region that touches
    the border becomes transparent (white inside the product stays), cropped to the product."""
    if img.mode == "RGBA" and img.getchannel("A").getextrema()[0] < 255:
        out = img
    else:
        from scipy import ndimage

        rgb = img.convert("RGB")
        arr = np.asarray(rgb)
        white = (arr > 238).all(axis=2)
        lab, _ = ndimage.label(white)
        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        bg = np.isin(lab, border[border > 0])
        alpha = np.where(bg, 0, 255).astype(np.uint8)
        out = rgb.convert("RGBA")
        out.putalpha(Image.fromarray(alpha).filter(ImageFilter.MinFilter(3)))
    bbox = out.getchannel("A").point(lambda v: 255 if v > 127 else 0).getbbox()
    return out.crop(bbox) if bbox else out


def perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` back to input points ``src``."""
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.array([c for p in src for c in p], dtype=np.float64)
    return np.linalg.solve(np.array(a, dtype=np.float64), b).tolist()


def warp(obj: Image.Image, rng: random.Random, style: SceneStyle) -> Image.Image:
    """Rotate and perspective-warp an RGBA object (transparent outside)."""
    obj = obj.rotate(rng.uniform(-style.rotation, style.rotation), expand=True, resample=Image.BILINEAR)
    if style.perspective > 0:
        w, h = obj.size
        j = style.perspective
        dst = [(rng.uniform(0, j) * w, rng.uniform(0, j) * h), (w - rng.uniform(0, j) * w, rng.uniform(0, j) * h),
               (w - rng.uniform(0, j) * w, h - rng.uniform(0, j) * h), (rng.uniform(0, j) * w, h - rng.uniform(0, j) * h)]
        src = [(0, 0), (w, 0), (w, h), (0, h)]
        obj = obj.transform((w, h), Image.PERSPECTIVE, perspective_coeffs(src, dst), Image.BILINEAR)
    bbox = obj.getchannel("A").getbbox()
    return obj.crop(bbox) if bbox else obj


def backdrop(rng: random.Random, w: int, h: int, textures: list[Image.Image], plain: bool) -> Image.Image:
    """A plain (flat or soft gradient) backdrop, or a random crop of a texture, scaled and recoloured."""
    if plain or not textures:
        c1 = np.array([rng.randrange(170, 256) for _ in range(3)], np.float32)
        c2 = c1 * rng.uniform(0.8, 1.0)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        arr = c1 * (1 - t) + c2 * t
        return Image.fromarray(np.broadcast_to(arr, (h, w, 3)).clip(0, 255).astype(np.uint8))
    tex = textures[rng.randrange(len(textures))]
    s = rng.uniform(0.35, 1.0) * min(tex.width / w, tex.height / h)
    cw, ch = max(16, int(w * s)), max(16, int(h * s))
    x, y = rng.randrange(0, tex.width - cw + 1), rng.randrange(0, tex.height - ch + 1)
    bg = tex.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        bg = bg.transpose(Image.FLIP_LEFT_RIGHT)
    bg = ImageEnhance.Color(bg).enhance(rng.uniform(0.5, 1.3))
    return ImageEnhance.Brightness(bg).enhance(rng.uniform(0.7, 1.2))


def distractor(rng: random.Random, size: int, textures: list[Image.Image]) -> Image.Image:
    """An RGBA thing that is not a product: a filled shape (flat or textured), a stroke, or text."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    kind = rng.randrange(4)
    if kind == 0:
        pts = [(rng.uniform(0, size), rng.uniform(0, size)) for _ in range(rng.randrange(3, 7))]
        d.polygon(pts, fill=255)
    elif kind == 1:
        d.ellipse([rng.uniform(0, size / 3), rng.uniform(0, size / 3), size - rng.uniform(0, size / 3),
                   size - rng.uniform(0, size / 3)], fill=255)
    elif kind == 2:
        for _ in range(rng.randrange(1, 4)):
            d.line([(rng.uniform(0, size), rng.uniform(0, size)) for _ in range(3)], fill=255,
                   width=max(2, size // rng.randrange(8, 20)))
    else:
        from PIL import ImageFont

        font = ImageFont.load_default(size=max(10, size // 4))
        text = "".join(rng.choice("ABCDEFGHKMNPRSTWXYZ0123456789") for _ in range(rng.randrange(2, 5)))
        d.text((size / 2, size / 2), text, fill=255, font=font, anchor="mm")
    if textures and rng.random() < 0.5:
        tex = textures[rng.randrange(len(textures))]
        x, y = rng.randrange(0, max(1, tex.width - size)), rng.randrange(0, max(1, tex.height - size))
        fill = tex.crop((x, y, x + size, y + size)).resize((size, size))
    else:
        fill = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    img.paste(fill, (0, 0), mask)
    img.putalpha(mask)
    return img


def lighting(img: Image.Image, rng: random.Random, strength: float) -> Image.Image:
    if strength <= 0:
        return img
    w, h = img.size
    gx, gy = rng.uniform(-1, 1), rng.uniform(-1, 1)
    xs, ys = np.meshgrid(np.linspace(-0.5, 0.5, w, dtype=np.float32), np.linspace(-0.5, 0.5, h, dtype=np.float32))
    gain = 1 + strength * (gx * xs + gy * ys) + rng.uniform(-strength, strength) / 2
    cast = np.array([rng.uniform(1 - strength / 3, 1 + strength / 3) for _ in range(3)], np.float32)
    arr = np.asarray(img, np.float32) * gain[..., None] * cast
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def compose(products: list[tuple[str, Image.Image]], rng: random.Random, style: SceneStyle,
            textures: list[Image.Image], *, cutouts: bool = False) -> Composed:
    """One scene of ``products`` (id, catalog image; RGBA cut-outs when ``cutouts``) in ``style``."""
    w, h = style.sizes[rng.randrange(len(style.sizes))]
    scene = backdrop(rng, w, h, textures, style.plain).convert("RGB")
    owner = np.full((h, w), -1, np.int32)  # which pasted thing is on top at each pixel
    areas: list[int] = []
    placed: list[tuple[int, int, int, int]] = []
    pids: list[str] = []
    layers: list[tuple[Image.Image, int, int, int]] = []  # (rgba, x, y, product index or -1)
    for k, (pid, img) in enumerate(products):
        obj = warp(img if cutouts else product_cutout(img), rng, style)
        side = min(w, h) * rng.uniform(*style.scale)
        s = side / max(obj.width, obj.height)
        obj = obj.resize((max(8, int(obj.width * s)), max(8, int(obj.height * s))), Image.BILINEAR)
        obj = Image.merge("RGBA", (*ImageEnhance.Color(ImageEnhance.Brightness(obj.convert("RGB")).enhance(
            rng.uniform(0.8, 1.2))).enhance(rng.uniform(0.75, 1.25)).split(), obj.getchannel("A")))
        best = None
        for _ in range(30):  # place with at most max_occlusion overlap with what is already there
            x, y = rng.randrange(0, max(1, w - obj.width)), rng.randrange(0, max(1, h - obj.height))
            box = (x, y, x + obj.width, y + obj.height)
            worst = max((_overlap(box, b) for b in placed), default=0.0)
            if worst <= style.max_occlusion:
                best = (x, y)
                break
        if best is None:
            continue
        placed.append((best[0], best[1], best[0] + obj.width, best[1] + obj.height))
        layers.append((obj, best[0], best[1], len(pids)))
        pids.append(pid)
    for _ in range(rng.randint(*style.distractors)):
        dsize = int(min(w, h) * rng.uniform(0.1, 0.35))
        layers.insert(rng.randrange(len(layers) + 1),
                      (distractor(rng, dsize, textures), rng.randrange(0, w - dsize), rng.randrange(0, h - dsize), -1))
    areas = [0] * len(pids)
    for obj, x, y, idx in layers:
        a = np.asarray(obj.getchannel("A")) > 127
        scene.paste(obj.convert("RGB"), (x, y), obj.getchannel("A"))
        region = owner[y : y + obj.height, x : x + obj.width]
        region[a[: region.shape[0], : region.shape[1]]] = idx if idx >= 0 else -2
        if idx >= 0:
            areas[idx] = int(a.sum())
    boxes, ids, visible = [], [], []
    for i, pid in enumerate(pids):
        ys, xs = np.nonzero(owner == i)
        if len(xs) == 0:
            continue
        vis = len(xs) / max(1, areas[i])
        if vis < 0.5:  # mostly hidden: not a findable product
            continue
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
        ids.append(pid)
        visible.append(vis)
    scene = lighting(scene, rng, style.lighting)
    blur = rng.uniform(*style.blur)
    if blur > 0.2:
        scene = scene.filter(ImageFilter.GaussianBlur(blur))
    buf = io.BytesIO()
    scene.save(buf, "JPEG", quality=rng.randint(*style.jpeg))
    data = buf.getvalue()
    return Composed(Image.open(io.BytesIO(data)).convert("RGB"), data, boxes, ids, visible)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(1, small)


def pick_style(rng: random.Random, mix: tuple[tuple[SceneStyle, float], ...] = TRAIN_STYLES) -> SceneStyle:
    r, acc = rng.random() * sum(p for _, p in mix), 0.0
    for style, p in mix:
        acc += p
        if r <= acc:
            return style
    return mix[-1][0]
