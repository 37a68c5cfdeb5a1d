"""The demo / benchmark sample catalog: Debian's ``tuxpaint-stamps-default`` product photos.

``apt-get download`` (no root needed) + ``dpkg -x`` into a cache dir, then every PNG stamp outside
``symbols/`` is composited onto white, downscaled, de-duplicated by content, and listed in a catalog
CSV (product_id, image_path, category, subcategory).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from embed.imageio import to_rgb

log = logging.getLogger(__name__)

PACKAGE = "tuxpaint-stamps-default"
DEFAULT_CACHE = Path(".cache/tuxpaint")
EXCLUDED = ("symbols",)  # letters, digits, maths and money signs: not products


class SampleCatalogError(RuntimeError):
    pass


def fetch_stamps(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Download and extract the package once; returns the stamps folder."""
    stamps = cache_dir / "pkg" / "usr/share/tuxpaint/stamps"
    if stamps.is_dir():
        return stamps
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise SampleCatalogError("apt-get and dpkg are needed to fetch the sample catalog")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        log.info("downloading %s with apt-get", PACKAGE)
        r = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, capture_output=True, text=True, timeout=600)
        debs = list(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        if r.returncode != 0 or not debs:
            raise SampleCatalogError(f"apt-get download {PACKAGE} failed: {r.stderr.strip()[-500:]}")
        out = cache_dir / "pkg.tmp"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(["dpkg", "-x", str(debs[0]), str(out)], check=True, timeout=600)
        shutil.rmtree(cache_dir / "pkg", ignore_errors=True)
        out.rename(cache_dir / "pkg")
    return stamps


def build_sample_catalog(cache_dir: Path = DEFAULT_CACHE, max_side: int = 320) -> Path:
    """Catalog CSV of the stamps (composited on white, at most ``max_side`` px, duplicates dropped)."""
    csv_path = cache_dir / "catalog.csv"
    if csv_path.is_file():
        return csv_path
    stamps = fetch_stamps(cache_dir)
    img_dir = cache_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    rows = ["product_id,image_path,category,subcategory"]
    for png in sorted(stamps.rglob("*.png")):
        rel = png.relative_to(stamps)
        if rel.parts[0] in EXCLUDED or png.name.endswith("_mirror.png"):
            continue
        try:
            img = to_rgb(Image.open(png))
        except OSError as e:
            log.warning("skipping %s: %s", png, e)
            continue
        img.thumbnail((max_side, max_side), Image.LANCZOS)
        digest = hashlib.sha256(img.tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        pid = str(rel.with_suffix("")).replace("/", "-").replace(",", "_")
        out = img_dir / f"{pid}.png"
        img.save(out, optimize=False)
        sub = "/".join(rel.parts[1:-1]).replace(",", "_")
        rows.append(f"{pid},images/{out.name},{rel.parts[0]},{sub}")
    csv_path.write_text("\n".join(rows) + "\n")
    log.info("sample catalog: %d products -> %s", len(rows) - 1, csv_path)
    return csv_path
