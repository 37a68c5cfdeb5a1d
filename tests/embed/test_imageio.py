from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from embed.imageio import InvalidImage, decode_image, read_image_file


def _png(w: int = 32, h: int = 24, mode: str = "RGB", color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(w: int = 64, h: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_decodes_png_and_jpeg() -> None:
    img = decode_image(_png(32, 24))
    assert img.size == (32, 24) and img.mode == "RGB"
    assert img.getpixel((0, 0)) == (10, 200, 30)
    assert decode_image(_jpeg()).size == (64, 48)


def test_transparent_becomes_white() -> None:
    img = decode_image(_png(8, 8, "RGBA", (255, 0, 0, 0)))
    assert img.getpixel((3, 3)) == (255, 255, 255)


def test_empty() -> None:
    with pytest.raises(InvalidImage) as e:
        decode_image(b"")
    assert e.value.reason == "empty"


def test_not_an_image() -> None:
    with pytest.raises(InvalidImage) as e:
        decode_image(b"hello, this is text and not a picture" * 10)
    assert e.value.reason == "not_an_image"


def test_truncated() -> None:
    data = _jpeg(256, 256)
    with pytest.raises(InvalidImage) as e:
        decode_image(data[: len(data) // 2])
    assert e.value.reason == "corrupt"
    png = _png(200, 200)
    with pytest.raises(InvalidImage):
        decode_image(png[: len(png) - 30])


def test_byte_limit() -> None:
    data = _png()
    with pytest.raises(InvalidImage) as e:
        decode_image(data, max_bytes=len(data) - 1)
    assert e.value.reason == "too_large"
    assert decode_image(data, max_bytes=len(data)).size == (32, 24)


def _bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h pixels (a decompression bomb)."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + (w + 7) // 8) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_pixel_limit_decompression_bomb() -> None:
    data = _bomb_png(50_000, 50_000)
    assert len(data) < 1000
    with pytest.raises(InvalidImage) as e:
        decode_image(data, max_pixels=40_000_000)
    assert e.value.reason == "too_many_pixels"
    with pytest.raises(InvalidImage) as e2:
        decode_image(_png(100, 100), max_pixels=9_999)
    assert e2.value.reason == "too_many_pixels"


def test_read_missing_file(tmp_path) -> None:
    with pytest.raises(InvalidImage) as e:
        read_image_file(tmp_path / "nope.png")
    assert e.value.reason == "missing" and "nope.png" in str(e.value)
