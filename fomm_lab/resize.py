"""Resizing frames to the model's size and pasting generated crops back into full frames.

Sizes are ``(width, height)`` in pixels, as in OpenCV; images are ``(H, W, 3)`` ``uint8`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``img`` to ``size`` = (width, height) with antialiasing.

    Shrinking uses area averaging (no aliasing); enlarging uses Lanczos. Returns a new array of the
    input's dtype.
    """
    width, height = int(size[0]), int(size[1])
    if width < 1 or height < 1:
        raise ValueError(f"resize target {size} must be at least 1x1 pixels")
    if img.shape[1] == width and img.shape[0] == height:
        return img.copy()
    shrinking = width * height < img.shape[0] * img.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    return cv2.resize(img, (width, height), interpolation=interpolation)


def resize_to_model(img: np.ndarray, size: tuple[int, int] = (256, 256), mode: str = "crop",
                    pad_value: int | Sequence[int] = 0) -> np.ndarray:
    """Fit ``img`` to ``size`` = (width, height) without distorting it.

    ``mode="crop"`` cuts the centre region of the target's aspect ratio, then resizes;
    ``mode="pad"`` resizes the whole image to fit inside and fills the borders with ``pad_value``.
    """
    width, height = size
    h, w = img.shape[:2]
    if mode == "crop":
        scale = min(w / width, h / height)
        cw, ch = max(1, round(width * scale)), max(1, round(height * scale))
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        return resize_image(img[y0:y0 + ch, x0:x0 + cw], (width, height))
    if mode == "pad":
        scale = min(width / w, height / h)
        rw, rh = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
        inner = resize_image(img, (rw, rh))
        out = np.empty((height, width) + img.shape[2:], dtype=img.dtype)
        out[...] = np.asarray(pad_value, dtype=img.dtype)
        x0, y0 = (width - rw) // 2, (height - rh) // 2
        out[y0:y0 + rh, x0:x0 + rw] = inner
        return out
    raise ValueError(f"mode must be 'crop' or 'pad', not {mode!r}")


def feather_mask(width: int, height: int, feather: int) -> np.ndarray:
    """Alpha mask ``(height, width)`` float32: 1 inside, ramping linearly to 0 over ``feather``
    pixels at each edge (all ones when ``feather`` is 0)."""
    if feather <= 0:
        return np.ones((height, width), np.float32)

    def ramp(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float32)
        return np.clip((np.minimum(i, n - 1 - i) + 1) / (feather + 1), 0.0, 1.0)

    return np.minimum.outer(ramp(height), ramp(width))


def paste_back(full_img: np.ndarray, crop_img: np.ndarray,
               box: tuple[float, float, float, float], feather: float = 0.1) -> np.ndarray:
    """Paste ``crop_img`` into a copy of ``full_img`` over ``box`` = (x0, y0, x1, y1) pixels.

    The crop is resized to the box (which may reach past the image border: that part is dropped)
    and blended in with edges feathered over ``feather`` x the box's shorter side (0 = hard edge).
    Returns a new array of ``full_img``'s shape and dtype.
    """
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} is empty: need x0 < x1 and y0 < y1")
    out = full_img.copy()
    bw, bh = x1 - x0, y1 - y0
    patch = resize_image(crop_img, (bw, bh)).astype(np.float32)
    alpha = feather_mask(bw, bh, int(round(feather * min(bw, bh))))
    h, w = full_img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return out
    sub = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    a = alpha[sub][..., None] if full_img.ndim == 3 else alpha[sub]
    region = out[cy0:cy1, cx0:cx1].astype(np.float32)
    blended = patch[sub] * a + region * (1.0 - a)
    out[cy0:cy1, cx0:cx1] = np.clip(np.rint(blended), 0, 255).astype(full_img.dtype)
    return out
