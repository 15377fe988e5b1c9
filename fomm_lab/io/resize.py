"""Resizing frames without distortion.

Sizes are :class:`~fomm_lab.geometry.Size` (``width``, ``height``) in pixels, the order OpenCV takes;
images are ``(H, W, 3)`` arrays.
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


def resize_to_model(img: np.ndarray, size: tuple[int, int], mode: str = "crop",
                    pad_value: int | Sequence[int] = 0) -> np.ndarray:
    """Fit ``img`` to ``size`` = (width, height), the model's frame size, without distorting it.

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
