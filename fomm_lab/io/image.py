"""Reading photos as RGB ``uint8`` arrays of shape ``(height, width, 3)``."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import MediaError
from .atomic import atomic_output
from .probe import check_input_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
"""File name endings read as images (and as frames when ``read_video`` is given a folder)."""

MAX_PIXELS = 8192 * 8192
"""Largest image decoded (pixels): an 8K photo (7680x4320) fits; beyond it a small file can ask for
gigabytes of memory (a "decompression bomb"), so it is refused before decoding."""


def _limit(max_pixels: int | None) -> int | None:
    return max_pixels if max_pixels is not None and max_pixels > 0 else None


def read_image(path: str | os.PathLike[str], max_size: int | None = 4096,
               max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read an image as RGB ``uint8`` ``(H, W, 3)``.

    EXIF orientation is applied; grayscale and palette images become RGB; transparent images are
    composited over white; 16-bit and float images are scaled to 8 bits. When ``max_size`` is set,
    an image whose longer side exceeds it is downscaled (with antialiasing) to that many pixels.
    An image of more than ``max_pixels`` pixels is refused before it is decoded (None: no limit).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    check_input_file(path, "image")
    if path.is_dir():
        raise MediaError(f"'{path}' is a folder, not an image; give an image file")
    limit = _limit(max_pixels)
    try:
        with Image.open(path) as img:
            if limit is not None and img.width * img.height > limit:
                raise MediaError(
                    f"image '{path}' is {img.width}x{img.height} ({img.width * img.height / 1e6:.0f} megapixels), "
                    f"more than the {limit / 1e6:.0f} megapixels read safely; downscale it (e.g. to 4000 px) first")
            if max_size and img.format == "JPEG":
                img.draft("RGB", (max_size, max_size))  # decode at a reduced scale: cheap on huge JPEGs
            upright = ImageOps.exif_transpose(img)
            upright.load()
            rgb = to_rgb8(upright)
    except Image.DecompressionBombError as exc:
        raise MediaError(f"image '{path}' is too large to decode safely; downscale it (e.g. to 4000 px) first",
                         details=[str(exc)]) from exc
    except UnidentifiedImageError as exc:
        raise MediaError(f"'{path}' is not an image format that can be read; give a PNG, JPEG, WebP, BMP or "
                         "TIFF file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"image '{path}' is damaged or truncated; copy or export it again",
                         details=[str(exc)]) from exc
    if max_size and max(rgb.shape[:2]) > max_size:
        from .resize import resize_image

        scale = max_size / max(rgb.shape[:2])
        rgb = resize_image(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))))
    return rgb


def decode_image_bytes(data: bytes | memoryview, what: str, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) held in memory to RGB uint8, refusing more than
    ``max_pixels`` pixels before decoding (the header is read first)."""
    import io

    from PIL import Image, UnidentifiedImageError

    limit = _limit(max_pixels)
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            if limit is not None and img.width * img.height > limit:
                raise MediaError(f"{what} is {img.width}x{img.height}, more than the {limit / 1e6:.0f} megapixels "
                                 "accepted; send a smaller picture")
            img.load()
            return to_rgb8(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"{what} is not an image that can be decoded ({len(bytes(data))} bytes)") from exc


def to_rgb8(img: object) -> np.ndarray:
    """A loaded PIL image of any mode as an RGB uint8 array."""
    from PIL import Image

    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(img).__name__}")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F":
            top = 1.0 if arr.max() <= 1.0 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG, atomically."""
    path = Path(path)
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise MediaError(f"could not encode the picture {path} as PNG")
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path
