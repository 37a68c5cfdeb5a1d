"""Synthetic shopper views of a catalog image: cut out, rotate, scale, recolour, paste on a background,
loose crop, blur, JPEG; or crowded by other products. Used by ``embed train`` (catalog adaptation)."""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter


def cutout(img: Image.Image) -> Image.Image:
    """RGBA cut-out: real alpha if present, else near-white pixels become transparent."""
    if img.mode == "RGBA":
        return img
    rgb = img.convert("RGB")
    arr = np.asarray(rgb)
    alpha = np.where((arr > 245).all(axis=2), 0, 255).astype(np.uint8)
    out = rgb.convert("RGBA")
    out.putalpha(Image.fromarray(alpha))
    return out


def random_background(rng: random.Random, w: int, h: int) -> Image.Image:
    kind = rng.randrange(4)
    c1 = tuple(rng.randrange(256) for _ in range(3))
    c2 = tuple(rng.randrange(256) for _ in range(3))
    if kind == 0:  # solid
        bg = Image.new("RGB", (w, h), c1)
    elif kind == 1:  # horizontal gradient
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        arr = np.asarray(c1, np.float32) * (1 - t) + np.asarray(c2, np.float32) * t
        bg = Image.fromarray(np.repeat(arr, h, axis=0).astype(np.uint8))
    elif kind == 2:  # noise texture
        arr = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        bg = Image.fromarray(arr).resize((w, h), Image.BICUBIC)
    else:  # shapes
        bg = Image.new("RGB", (w, h), c1)
        d = ImageDraw.Draw(bg)
        for _ in range(rng.randrange(3, 10)):
            x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(10, max(11, w // 3))
            col = tuple(rng.randrange(256) for _ in range(3))
            (d.ellipse if rng.random() < 0.5 else d.rectangle)([x - r, y - r, x + r, y + r], fill=col)
    return bg.filter(ImageFilter.GaussianBlur(rng.uniform(0, 4)))


def colour_jitter(img: Image.Image, rng: random.Random, strength: float = 0.3) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(1 - strength, 1 + strength))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(1 - strength, 1 + strength))
    img = ImageEnhance.Color(img).enhance(rng.uniform(1 - strength, 1 + strength))
    return img


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def synthetic_view(img: Image.Image, rng: random.Random, out_size: int = 224, hard: float = 0.0) -> Image.Image:
    """One shopper-like view of a catalog image (object crop with some of a random scene around it); a
    ``hard`` share of the views is degraded like a cluttered photo (perspective, an occluder, lighting,
    strong blur and JPEG). With ``hard`` 0 the random sequence is exactly the one without the option."""
    obj = cutout(img)
    bbox = obj.getchannel("A").getbbox() or (0, 0, obj.width, obj.height)
    obj = obj.crop(bbox)
    if rng.random() < 0.5:
        obj = obj.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.3 else obj
    hard = hard > 0 and rng.random() < hard
    obj = obj.rotate(rng.uniform(-30, 30), expand=True, resample=Image.BILINEAR)
    if hard:
        from embed.compose import SceneStyle, warp

        obj = warp(obj, rng, SceneStyle(perspective=0.15, rotation=0.0))
    # object size in the view: from a tight crop to a loose one
    canvas = out_size
    side = int(canvas * rng.uniform(0.55, 0.95))
    s = side / max(obj.width, obj.height)
    obj = obj.resize((max(1, int(obj.width * s)), max(1, int(obj.height * s))), Image.BILINEAR)
    rgb = colour_jitter(obj.convert("RGB"), rng)
    bg = random_background(rng, canvas, canvas) if rng.random() < 0.85 else Image.new("RGB", (canvas, canvas), "white")
    x = rng.randrange(0, max(1, canvas - obj.width + 1))
    y = rng.randrange(0, max(1, canvas - obj.height + 1))
    bg.paste(rgb, (x, y), obj.getchannel("A"))
    if hard and rng.random() < 0.6:  # something in front of the product, hiding up to about a third
        from embed.compose import distractor

        d = distractor(rng, max(8, int(max(obj.width, obj.height) * rng.uniform(0.3, 0.6))), [])
        bg.paste(d.convert("RGB"), (x + rng.randrange(-d.width // 2, max(1, obj.width - d.width // 2)),
                                    y + rng.randrange(-d.height // 2, max(1, obj.height - d.height // 2))), d.getchannel("A"))
    # loose crop around the object
    m = rng.uniform(0.0, 0.25) * side
    box = (max(0, x - m), max(0, y - m), min(canvas, x + obj.width + m), min(canvas, y + obj.height + m))
    view = bg.crop(tuple(int(v) for v in box))
    if hard:
        from embed.compose import lighting

        view = lighting(view, rng, 0.3).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.8)))
        return jpeg_roundtrip(view, rng.randrange(20, 50))
    if rng.random() < 0.3:
        view = view.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    return jpeg_roundtrip(view, rng.randrange(40, 95))


def crowded_view(obj: Image.Image, neighbours: list[Image.Image], rng: random.Random, out_size: int = 224,
                 backgrounds: list[Image.Image] | None = None) -> Image.Image:
    """A product in a crowd: other products (``neighbours``) reach into its box from the sides, behind it
    or (a quarter of them) in front of it; then a loose crop around the product, lighting, blur and JPEG.
    This is what a detector's box holds in a crowded photo (copy-paste augmentation with the catalog's own
    products). ``obj`` and ``neighbours`` are RGBA cut-outs cropped to the product
    (``embed.compose.product_cutout``). With ``backgrounds`` (real photos), half the views are set on a
    random crop of one of them instead of a synthetic background."""
    from embed.compose import SceneStyle, backdrop, lighting, warp

    c = int(out_size * 1.8)
    if backgrounds and rng.random() < 0.5:
        bg = backdrop(rng, c, c, backgrounds, plain=False)
    else:
        bg = random_background(rng, c, c)

    def place(o: Image.Image, side: float) -> tuple[Image.Image, Image.Image]:
        o = warp(o, rng, SceneStyle(perspective=0.12, rotation=25.0))
        s = side / max(o.width, o.height)
        o = o.resize((max(1, int(o.width * s)), max(1, int(o.height * s))), Image.BILINEAR)
        return colour_jitter(o.convert("RGB"), rng), o.getchannel("A")

    side = c * rng.uniform(0.35, 0.5)
    rgb, alpha = place(obj, side)
    x, y = (c - rgb.width) // 2 + rng.randrange(-8, 9), (c - rgb.height) // 2 + rng.randrange(-8, 9)
    x0, y0, x1, y1 = x, y, x + rgb.width, y + rgb.height
    front = []
    for nb in neighbours:
        nrgb, na = place(nb, side * rng.uniform(0.5, 1.1))
        edge, reach = rng.randrange(4), rng.uniform(0.0, 0.35)  # how far into the product's box it reaches
        along_x = rng.randrange(x0 - nrgb.width // 2, x1 - nrgb.width // 2 + 1)
        along_y = rng.randrange(y0 - nrgb.height // 2, y1 - nrgb.height // 2 + 1)
        pos = [(int(x0 - nrgb.width + reach * rgb.width), along_y), (int(x1 - reach * rgb.width), along_y),
               (along_x, int(y0 - nrgb.height + reach * rgb.height)), (along_x, int(y1 - reach * rgb.height))][edge]
        if rng.random() < 0.25:
            front.append((nrgb, na, pos))
        else:
            bg.paste(nrgb, pos, na)
    bg.paste(rgb, (x, y), alpha)
    for nrgb, na, pos in front:
        bg.paste(nrgb, pos, na)
    m = rng.uniform(0.0, 0.2) * side
    view = bg.crop((int(max(0, x0 - m)), int(max(0, y0 - m)), int(min(c, x1 + m)), int(min(c, y1 + m))))
    view = lighting(view, rng, 0.3).filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.5)))
    return jpeg_roundtrip(view, rng.randrange(25, 90))
