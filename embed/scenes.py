"""Query photos made from catalog images: products pasted, scaled, rotated and recoloured into
room-like scenes, then JPEG-compressed. Used by the demo and the relevance benchmark; the scene
style (wall, floor, furniture) differs from the training augmentations on purpose."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from embed.augment import cutout


@dataclass
class Scene:
    image: Image.Image  # the JPEG-decoded query photo
    jpeg: bytes
    boxes: list[tuple[int, int, int, int]]
    product_ids: list[str]


def room(rng: random.Random, w: int, h: int) -> Image.Image:
    wall = np.array([rng.randrange(150, 245) for _ in range(3)], np.float32)
    floor = np.array([rng.randrange(60, 200) for _ in range(3)], np.float32)
    horizon = int(h * rng.uniform(0.45, 0.75))
    arr = np.zeros((h, w, 3), np.float32)
    shade = np.linspace(0.85, 1.05, h, dtype=np.float32)[:, None, None]
    arr[:horizon] = wall
    arr[horizon:] = floor
    arr *= shade
    # wood-like floor planks
    for x in range(0, w, rng.randrange(40, 90)):
        arr[horizon:, x : x + 2] *= 0.8
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 6, (h, w, 1))
    img = Image.fromarray((arr + noise).clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(rng.randrange(0, 3)):  # furniture / frames
        x0, y0 = rng.randrange(w), rng.randrange(h // 2)
        d.rectangle([x0, y0, x0 + rng.randrange(40, 160), y0 + rng.randrange(30, 120)],
                    fill=tuple(rng.randrange(40, 230) for _ in range(3)), outline=(40, 30, 20), width=3)
    return img.filter(ImageFilter.GaussianBlur(1.0))


def recolour(img: Image.Image, rng: random.Random) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.7, 1.3))


def make_scene(products: list[tuple[str, Image.Image]], seed: int, size: tuple[int, int] = (640, 480),
               scale: tuple[float, float] = (0.3, 0.55), quality: tuple[int, int] = (60, 85)) -> Scene:
    """Paste ``products`` (id, catalog image) side by side into a room; returns the JPEG query photo."""
    rng = random.Random(seed)
    w, h = size
    scene = room(rng, w, h)
    n = len(products)
    boxes, ids = [], []
    slot_w = w // n
    for k, (pid, img) in enumerate(products):
        obj = cutout(img)
        bbox = obj.getchannel("A").getbbox() or (0, 0, obj.width, obj.height)
        obj = obj.crop(bbox).rotate(rng.uniform(-20, 20), expand=True, resample=Image.BILINEAR)
        side = int(min(slot_w, h) * rng.uniform(*scale) * (1.6 if n > 1 else 1.0))
        side = min(side, slot_w - 4, h - 4)
        s = side / max(obj.width, obj.height)
        obj = obj.resize((max(8, int(obj.width * s)), max(8, int(obj.height * s))), Image.BILINEAR)
        rgb = recolour(obj.convert("RGB"), rng)
        x = k * slot_w + rng.randrange(0, max(1, slot_w - obj.width))
        y = rng.randrange(0, max(1, h - obj.height))
        scene.paste(rgb, (x, y), obj.getchannel("A"))
        tight = obj.getchannel("A").getbbox() or (0, 0, obj.width, obj.height)
        boxes.append((x + tight[0], y + tight[1], x + tight[2], y + tight[3]))
        ids.append(pid)
    buf = io.BytesIO()
    scene.save(buf, "JPEG", quality=rng.randrange(*quality))
    data = buf.getvalue()
    return Scene(Image.open(io.BytesIO(data)).convert("RGB"), data, boxes, ids)
