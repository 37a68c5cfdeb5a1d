"""Safe image decoding: byte and pixel limits, truncated / empty / non-image input rejected."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000


class InvalidImage(ValueError):
    """The input is not a usable image; ``reason`` is a short machine-friendly code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode encoded image bytes to an RGB image (alpha composited onto white).

    Raises InvalidImage for empty input, input over ``max_bytes``, a header announcing more
    than ``max_pixels`` pixels (checked before decoding, so decompression bombs cost nothing),
    data that is not an image, and truncated or corrupt data.
    """
    if not data:
        raise InvalidImage("empty", "empty image: 0 bytes")
    if len(data) > max_bytes:
        raise InvalidImage("too_large", f"image is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w <= 0 or h <= 0:
                raise InvalidImage("empty", f"image has no pixels ({w}x{h})")
            if w * h > max_pixels:
                raise InvalidImage(
                    "too_many_pixels", f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}"
                )
            img.load()
    except InvalidImage:
        raise
    except UnidentifiedImageError as e:
        raise InvalidImage("not_an_image", "not an image (unknown or unsupported format)") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidImage("too_many_pixels", f"decompression bomb: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvalidImage("corrupt", f"truncated or corrupt image: {e}") from e
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of ``img``; transparent pixels become white (catalog cut-outs are on white)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        bg.alpha_composite(rgba)
        return bg.convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def read_image_file(
    path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Read and safely decode an image file; a missing file is an InvalidImage('missing')."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InvalidImage("missing", f"cannot read {p}: {e.strerror or e}") from e
    if size > max_bytes:
        raise InvalidImage("too_large", f"{p} is {size} bytes, over the limit of {max_bytes}")
    return decode_image(p.read_bytes(), max_bytes=max_bytes, max_pixels=max_pixels)
