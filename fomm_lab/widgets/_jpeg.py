"""JPEG encode/decode of the frames exchanged between the browser and the kernel."""

from __future__ import annotations

import cv2
import numpy as np

from fomm_lab.errors import MediaError


def decode_jpeg(data: bytes | memoryview) -> np.ndarray:
    """Decode JPEG bytes from the browser into an RGB uint8 array of shape (H, W, 3)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise MediaError(
            f"The browser sent a camera frame that is not a JPEG image ({buf.size} bytes); "
            "reload the page and start the camera again."
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    """Encode an RGB uint8 (H, W, 3) image as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError(f"Could not encode a {img.shape} frame as JPEG.")
    return buf.tobytes()
