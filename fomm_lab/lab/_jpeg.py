"""JPEG encode/decode of the frames exchanged between the browser and the kernel."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import MediaError

MAX_CAMERA_PIXELS = 3840 * 2160
"""Largest camera frame accepted from the browser (4K); larger ones are refused before decoding."""


def decode_jpeg(data: bytes | memoryview) -> np.ndarray:
    """Decode a camera frame from the browser (JPEG) into an RGB uint8 array of shape (H, W, 3)."""
    from ..io.image import decode_image_bytes

    try:
        return decode_image_bytes(data, "the camera frame the browser sent", max_pixels=MAX_CAMERA_PIXELS)
    except MediaError as exc:
        raise MediaError(f"{exc.first_line()}; reload the page and start the camera again") from exc


def encode_jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    """Encode an RGB uint8 (H, W, 3) image as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError(f"Could not encode a {img.shape} frame as JPEG.")
    return buf.tobytes()
