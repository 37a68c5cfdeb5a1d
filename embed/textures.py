"""Real background textures for synthetic training scenes, from packages (nothing downloaded at run time).

First choice: Debian packages (``apt-get download`` + ``dpkg -x`` into a cache dir, no root needed, like the
tuxpaint sample catalog), by default the photographic wallpapers of ``ukui-wallpapers``. ``package``
(``EMBED_DET_TEXTURES``) takes a comma-separated list; ``LARGER_POOL`` adds ``mate-backgrounds`` (nature,
abstract and desktop photos) and the surface patterns of ``gimp-data`` (wood, stone, fabric, paper,
leather, water: GIMP ``.pat`` tiles, tiled up to half of ``max_side``); measured no better in the
seventh round (docs/embed.md), so not the default. Always added, and the fallback when apt is not
available: the sample photos that ship inside the ``scikit-image`` and ``scikit-learn`` wheels.
Images are downscaled to at most ``max_side`` pixels and split deterministically into a training pool
and a held-out pool, so benchmark scenes use backgrounds the detector never saw.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

PACKAGE = "ukui-wallpapers"
LARGER_POOL = "ukui-wallpapers,mate-backgrounds,gimp-data"  # 115 backgrounds instead of 27 (opt-in)
# where each package keeps its images (others: usr/share/backgrounds)
_IMAGE_DIRS = {"gimp-data": "usr/share/gimp/2.0/patterns"}
_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".pat")
DEFAULT_CACHE = Path(".cache/textures")
_SKIMAGE = ("astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel", "rocket", "text",
            "immunohistochemistry", "logo", "motorcycle_left", "retina", "moon", "page", "colorwheel")


def fetch_package(package: str, cache_dir: Path) -> Path | None:
    """Extract a Debian package into ``cache_dir/<package>`` once; None when apt is unavailable or fails."""
    root = cache_dir / package
    if root.is_dir():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            r = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True, timeout=600)
            debs = list(Path(tmp).glob(f"{package}_*.deb"))
            if r.returncode != 0 or not debs:
                log.warning("apt-get download %s failed: %s", package, r.stderr.strip()[-300:])
                return None
            out = Path(tmp) / "x"
            subprocess.run(["dpkg", "-x", str(debs[0]), str(out)], check=True, timeout=600)
            out.rename(root)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("cannot extract %s: %s", package, e)
        return None
    return root


def _wheel_images() -> list[tuple[str, Image.Image]]:
    out: list[tuple[str, Image.Image]] = []
    try:
        import skimage.data as skd

        for name in _SKIMAGE:
            try:
                arr = np.asarray(getattr(skd, name)())
            except Exception as e:  # a loader that needs a download, or a missing optional file
                log.debug("skimage.data.%s unavailable: %s", name, e)
                continue
            if arr.ndim == 2:
                arr = np.stack([arr] * 3, axis=2)
            if arr.dtype != np.uint8:
                arr = (255 * (arr - arr.min()) / max(1e-6, float(arr.max() - arr.min()))).astype(np.uint8)
            out.append((f"skimage:{name}", Image.fromarray(arr[..., :3])))
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_images

        for i, arr in enumerate(load_sample_images().images):
            out.append((f"sklearn:{i}", Image.fromarray(arr)))
    except ImportError:
        pass
    return out


def read_gimp_pattern(path: Path) -> Image.Image:
    """A GIMP pattern file (``.pat``: big-endian header size, version, width, height, bytes per pixel,
    ``GPAT``, name; then the pixels) as an RGB image."""
    data = path.read_bytes()
    if len(data) < 24 or data[20:24] != b"GPAT":
        raise OSError(f"{path}: not a GIMP pattern")
    header, _, w, h, bpp = struct.unpack(">5I", data[:20])
    if bpp not in (1, 2, 3, 4) or w * h * bpp > len(data) - header or w == 0 or h == 0:
        raise OSError(f"{path}: bad GIMP pattern header")
    arr = np.frombuffer(data, np.uint8, w * h * bpp, header).reshape(h, w, bpp)
    arr = arr[..., :1 if bpp < 3 else 3]
    return Image.fromarray(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr)


def tiled(im: Image.Image, side: int) -> Image.Image:
    """A small seamless tile repeated until both sides reach ``side`` pixels."""
    if min(im.size) >= side:
        return im
    reps = (-(-side // im.height), -(-side // im.width), 1)
    return Image.fromarray(np.tile(np.asarray(im), reps)[:max(side, im.height), :max(side, im.width)])


def _package_images(package: str, root: Path, max_side: int) -> list[tuple[str, Image.Image]]:
    base = root / _IMAGE_DIRS.get(package, "usr/share/backgrounds")
    out: list[tuple[str, Image.Image]] = []
    for p in sorted(base.rglob("*")):
        if p.suffix.lower() not in _SUFFIXES or not p.is_file():
            continue
        name = f"{package}:{p.relative_to(base).as_posix()}"
        try:
            if p.suffix.lower() == ".pat":
                out.append((name, tiled(read_gimp_pattern(p), max_side // 2)))
                continue
            with Image.open(p) as im:
                im.draft("RGB", (max_side, max_side))
                out.append((name, im.convert("RGB")))
        except OSError as e:
            log.warning("skipping texture %s: %s", p, e)
    return out


def package_list(spec: str) -> list[str]:
    """The Debian packages named in a comma-separated ``EMBED_DET_TEXTURES`` value."""
    return [p.strip() for p in spec.split(",") if p.strip()]


def load_textures(cache_dir: Path = DEFAULT_CACHE, max_side: int = 800, use_package: bool = True,
                  package: str = PACKAGE, wheels: bool = True) -> list[tuple[str, Image.Image]]:
    """(name, RGB image) of every background texture available, sorted by name. ``package`` is a
    comma-separated list of Debian packages (empty: the wheel images only); ``wheels`` adds the
    scikit-image / scikit-learn sample photos."""
    found: list[tuple[str, Image.Image]] = []
    for pkg in package_list(package) if use_package else []:
        root = fetch_package(pkg, cache_dir)
        if root is not None:
            found += _package_images(pkg, root, max_side)
    if wheels:
        found += _wheel_images()
    if not found:
        raise RuntimeError(f"no background textures: install scikit-image, or allow apt-get download {package or PACKAGE}")
    for k, (name, im) in enumerate(found):
        if max(im.size) > max_side:
            im = im.copy()
            im.thumbnail((max_side, max_side), Image.BILINEAR)
            found[k] = (name, im)
    return sorted(found, key=lambda t: t[0])


def split_textures(textures: list[tuple[str, Image.Image]], held_out_every: int = 4
                   ) -> tuple[list[Image.Image], list[Image.Image]]:
    """(training pool, held-out pool): every ``held_out_every``-th texture is held out."""
    train = [im for k, (_, im) in enumerate(textures) if k % held_out_every != held_out_every - 1]
    held = [im for k, (_, im) in enumerate(textures) if k % held_out_every == held_out_every - 1]
    return train or held, held or train
