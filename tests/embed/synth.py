"""Synthetic products and scenes for tests: distinct shapes, colours and textures drawn with PIL."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter

_COLORS = [(220, 30, 30), (30, 140, 40), (30, 60, 210), (240, 180, 20), (150, 40, 170), (20, 170, 190),
           (120, 70, 20), (240, 110, 170), (60, 60, 60), (255, 120, 0)]


def product_image(i: int, size: int = 160) -> Image.Image:
    """Product ``i`` on white: a seeded composition of coloured shapes, a texture and a big label."""
    from PIL import ImageFont

    rng = random.Random(i * 7919 + 13)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    cols = rng.sample(_COLORS, 3)
    m = size // 10
    shape = rng.randrange(6)
    box = [m, m, size - m, size - m]
    if shape == 0:
        d.ellipse(box, fill=cols[0])
    elif shape == 1:
        d.rectangle([m, 2 * m, size - m, size - 2 * m], fill=cols[0])
    elif shape == 2:
        d.polygon([(size // 2, m), (m, size - m), (size - m, size - m)], fill=cols[0])
    elif shape == 3:
        d.rounded_rectangle([2 * m, m, size - 2 * m, size - m], radius=m, fill=cols[0])
    elif shape == 4:
        d.polygon([(size // 2, m), (size - m, size // 2), (size // 2, size - m), (m, size // 2)], fill=cols[0])
    else:
        d.pieslice(box, 30, 300, fill=cols[0])
    inside = img.convert("L").point(lambda v: 255 if v < 250 else 0)
    tex = Image.new("RGB", (size, size), cols[0])
    td = ImageDraw.Draw(tex)
    kind, step = rng.randrange(4), size // rng.choice([3, 4, 5])
    for k in range(-size, 2 * size, step):
        if kind == 0:
            td.rectangle([k, 0, k + step // 2, size], fill=cols[1])
        elif kind == 1:
            td.rectangle([0, k, size, k + step // 2], fill=cols[1])
        elif kind == 2:
            td.line([(k, 0), (k + size, size)], fill=cols[1], width=step // 3)
        else:
            td.ellipse([k, k, k + step, k + step], fill=cols[1])
    img.paste(tex, (0, 0), inside)
    font = ImageFont.load_default(size=size // 3)
    label = "ABCDEFGHJKLMNPRSTUVWXYZ23456789"[i % 31] + "ABCDEFGHJKLMNPRSTUVWXYZ"[(i // 31 + i * 7) % 23]
    d.text((size // 2, size // 2), label, fill=cols[2], font=font, anchor="mm", stroke_width=2, stroke_fill=(255, 255, 255))
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


def make_catalog(root, n: int, start: int = 0, bad: bool = False) -> "object":
    """Write ``n`` synthetic product PNGs and a catalog CSV under ``root``; returns the CSV path.

    With ``bad``, three unusable rows are added: a truncated PNG, a text file, a missing file.
    """
    from pathlib import Path

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = ["product_id,image_path,color,price"]
    for i in range(start, start + n):
        name = f"images/p{i:03d}.png"
        product_image(i).save(root / name)
        lines.append(f"P{i:03d},{name},{['red', 'green', 'blue'][i % 3]},{10 + i}.5")
    if bad:
        data = png(product_image(999))
        (root / "images" / "truncated.png").write_bytes(data[: len(data) // 3])
        (root / "images" / "notes.png").write_text("this is not an image")
        lines += ["BAD1,images/truncated.png,red,1.0", "BAD2,images/notes.png,red,1.0", "BAD3,images/missing.png,red,1.0"]
    csv = root / "catalog.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv
