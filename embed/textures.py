"""Real background textures for synthetic training scenes, from packages (nothing downloaded at run time).

First choice: the photographic wallpapers of Debian's ``ukui-wallpapers`` (``apt-get download`` + ``dpkg -x``
into a cache dir, no root needed, like the tuxpaint sample catalog). Always added, and the fallback when
apt is not available: the sample photos that ship inside the ``scikit-image`` and ``scikit-learn`` wheels.
Images are downscaled to at most ``max_side`` pixels and split deterministically into a training pool
and a held-out pool, so benchmark scenes use backgrounds the detector never saw.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

PACKAGE = "ukui-wallpapers"
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


def load_textures(cache_dir: Path = DEFAULT_CACHE, max_side: int = 800, use_package: bool = True,
                  package: str = PACKAGE) -> list[tuple[str, Image.Image]]:
    """(name, RGB image) of every background texture available, sorted by name (``package`` empty: the
    wheel images only)."""
    found: list[tuple[str, Image.Image]] = []
    root = fetch_package(package, cache_dir) if use_package and package else None
    if root is not None:
        for p in sorted((root / "usr/share/backgrounds").glob("*")):
            if p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            try:
                with Image.open(p) as im:
                    im.draft("RGB", (max_side, max_side))
                    found.append((f"{package}:{p.name}", im.convert("RGB")))
            except OSError as e:
                log.warning("skipping texture %s: %s", p, e)
    found += _wheel_images()
    if not found:
        raise RuntimeError(f"no background textures: install scikit-image, or allow apt-get download {PACKAGE}")
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
