"""Synthetic products and scenes for tests: distinct shapes, colours and textures drawn with PIL."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter

_COLORS = [(220, 30, 30), (30, 140, 40), (30, 60, 210), (240, 180, 20), (150, 40, 170), (20, 170, 190),
           (120, 70, 20), (240, 110, 170), (60, 60, 60), (255, 120, 0)]


def product_image(i: int, size: int = 160) -> Image.Image:
    """Product ``i``: a shape with a colour and a texture pattern on white (distinct for i < 60)."""
    rng = random.Random(i * 7919 + 13)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    c = _COLORS[i % len(_COLORS)]
    c2 = _COLORS[(i * 3 + 1) % len(_COLORS)]
    shape = (i // len(_COLORS)) % 6
    m = size // 8
    box = [m, m, size - m, size - m]
    if shape == 0:
        d.ellipse(box, fill=c)
    elif shape == 1:
        d.rectangle([m, 2 * m, size - m, size - 2 * m], fill=c)
    elif shape == 2:
        d.polygon([(size // 2, m), (m, size - m), (size - m, size - m)], fill=c)
    elif shape == 3:
        d.rounded_rectangle([2 * m, m, size - 2 * m, size - m], radius=m, fill=c)
    elif shape == 4:
        d.polygon([(size // 2, m), (size - m, size // 2), (size // 2, size - m), (m, size // 2)], fill=c)
    else:
        d.pieslice(box, 30, 300, fill=c)
    pattern = rng.randrange(4)
    step = max(4, size // rng.choice([6, 8, 10]))
    mask = Image.new("L", (size, size), 0)
    md = ImageDraw.Draw(mask)
    if pattern == 0:
        for x in range(0, size, step * 2):
            md.rectangle([x, 0, x + step - 1, size], fill=255)
    elif pattern == 1:
        for y in range(0, size, step * 2):
            md.rectangle([0, y, size, y + step - 1], fill=255)
    elif pattern == 2:
        for x in range(0, size, step):
            for y in range(0, size, step):
                if (x // step + y // step) % 2 == 0:
                    md.rectangle([x, y, x + step - 1, y + step - 1], fill=255)
    else:
        for _ in range(12):
            x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(3, max(4, size // 10))
            md.ellipse([x - r, y - r, x + r, y + r], fill=255)
    inside = Image.new("L", (size, size), 0)
    # texture only inside the shape: shape pixels differ from white
    gray = img.convert("L").point(lambda v: 255 if v < 250 else 0)
    inside.paste(mask, (0, 0), gray)
    img.paste(Image.new("RGB", (size, size), c2), (0, 0), inside)
    return img


def background(seed: int, w: int, h: int) -> Image.Image:
    """A scene backdrop: a soft two-colour gradient with blurred blobs."""
    rng = random.Random(seed)
    a = [rng.randrange(120, 255) for _ in range(3)]
    b = [rng.randrange(120, 255) for _ in range(3)]
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    for y in range(h):
        t = y / max(1, h - 1)
        d.line([(0, y), (w, y)], fill=tuple(int(a[k] * (1 - t) + b[k] * t) for k in range(3)))
    for _ in range(6):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(20, 80)
        d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(100, 255) for _ in range(3)))
    return img.filter(ImageFilter.GaussianBlur(8))


def jpeg(img: Image.Image, quality: int = 80) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def paste_into_scene(product: Image.Image, seed: int, size: tuple[int, int] = (480, 360), scale: float = 0.55,
                     angle: float = 8.0) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Paste ``product`` (white removed), scaled and rotated, into a backdrop; returns scene and box."""
    rng = random.Random(seed)
    w, h = size
    side = int(min(w, h) * scale)
    p = product.convert("RGB").resize((side, side))
    alpha = p.convert("L").point(lambda v: 0 if v > 245 else 255)
    p = p.rotate(angle, expand=True, fillcolor=(255, 255, 255))
    alpha = alpha.rotate(angle, expand=True, fillcolor=0)
    scene = background(seed, w, h)
    x = rng.randrange(0, max(1, w - p.width))
    y = rng.randrange(0, max(1, h - p.height))
    scene.paste(p, (x, y), alpha)
    return scene, (x, y, x + p.width, y + p.height)
