"""Background textures: GIMP patterns, tiling, several packages (no apt: packages laid out by hand)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embed.textures import load_textures, read_gimp_pattern, tiled


def write_pat(path: Path, arr: np.ndarray, name: str = "test pattern") -> None:
    h, w, bpp = arr.shape
    meta = b"GPAT" + name.encode() + b"\0"
    header = struct.pack(">5I", 20 + len(meta), 1, w, h, bpp) + meta
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_gimp_pattern_reads_rgb_and_grey(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3))
    write_pat(tmp_path / "a.pat", rgb)
    im = read_gimp_pattern(tmp_path / "a.pat")
    assert im.size == (7, 5) and im.mode == "RGB" and np.array_equal(np.asarray(im), rgb)
    grey = np.arange(12).reshape(3, 4, 1) * 20
    write_pat(tmp_path / "g.pat", grey)
    g = np.asarray(read_gimp_pattern(tmp_path / "g.pat"))
    assert g.shape == (3, 4, 3) and np.array_equal(g[..., 0], grey[..., 0]) and np.array_equal(g[..., 2], grey[..., 0])


def test_gimp_pattern_rejects_other_files(tmp_path) -> None:
    (tmp_path / "x.pat").write_bytes(b"not a pattern at all, just bytes")
    with pytest.raises(OSError, match="not a GIMP pattern"):
        read_gimp_pattern(tmp_path / "x.pat")
    write_pat(tmp_path / "short.pat", np.zeros((4, 4, 3)))
    (tmp_path / "short.pat").write_bytes((tmp_path / "short.pat").read_bytes()[:-10])
    with pytest.raises(OSError, match="bad GIMP pattern header"):
        read_gimp_pattern(tmp_path / "short.pat")


def test_tiled_repeats_a_small_tile_and_keeps_large_images() -> None:
    tile = Image.fromarray(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3))
    big = tiled(tile, 10)
    assert big.size == (10, 10)
    arr = np.asarray(big)
    assert np.array_equal(arr[2:4, 3:6], np.asarray(tile)) and np.array_equal(arr[0:2, 6:9], np.asarray(tile))
    large = Image.new("RGB", (40, 30))
    assert tiled(large, 20) is large


def test_several_packages_and_their_image_dirs(tmp_path) -> None:
    cache = tmp_path / "tex"
    wall = cache / "mate-backgrounds" / "usr/share/backgrounds/mate/nature"
    wall.mkdir(parents=True)
    Image.new("RGB", (64, 48), (10, 200, 30)).save(wall / "Meadow.jpg")
    (wall / "README").write_text("not an image")
    write_pat(cache / "gimp-data" / "usr/share/gimp/2.0/patterns/Wood/oak.pat", np.full((8, 8, 3), 120))
    # an image outside the pattern folder of gimp-data is not a background
    other = cache / "gimp-data" / "usr/share/gimp/2.0/images"
    other.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(other / "splash.png")
    got = load_textures(cache, max_side=100, package="mate-backgrounds, gimp-data", wheels=False)
    names = [n for n, _ in got]
    assert names == ["gimp-data:Wood/oak.pat", "mate-backgrounds:mate/nature/Meadow.jpg"]
    oak = dict(got)["gimp-data:Wood/oak.pat"]
    assert oak.size == (50, 50) and oak.getpixel((49, 49)) == (120, 120, 120)  # tiled to max_side // 2
    assert dict(got)["mate-backgrounds:mate/nature/Meadow.jpg"].size == (64, 48)
    with pytest.raises(RuntimeError, match="no background textures"):
        load_textures(tmp_path / "empty", package="", wheels=False)
