"""Pasting animated face crops back into the full photo, without seams.

Each face is blended in through a soft elliptical mask inscribed in its crop square, feathered over a
fraction ``feather`` of the square, after its colours are matched to the photo: mean and spread of
each channel in CIE Lab, measured on the ring near the mask's edge (hair, skin and background around
the face), are mapped onto the photo's. Pixels outside the masks are the photo's, unchanged. Several
faces are pasted at once; a face's mask never covers another face (their detected boxes are cut out
of it), so overlapping crops do not paint one face over another's eyes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..geometry import Box, Size
from ..io.resize import resize_image

DEFAULT_FEATHER = 0.2
"""Width of the mask's soft edge, as a fraction of the crop square's half-size."""
_RING = (0.75, 1.0)
"""Normalised radii (1: the ellipse inscribed in the square) between which colours are compared."""


def _radius(width: int, height: int) -> np.ndarray:
    """Normalised elliptical radius of every pixel of a ``height x width`` box (1 on the inscribed ellipse)."""
    y = (np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1
    x = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
    return np.sqrt(x[None, :] ** 2 + y[:, None] ** 2)


def elliptical_mask(width: int, height: int, feather: float) -> np.ndarray:
    """(height, width) float32 alpha: 1 inside the ellipse of radius 1 - feather, a smooth (smoothstep)
    ramp to 0 at the inscribed ellipse, 0 in the corners."""
    r = _radius(width, height)
    inner = max(0.0, 1.0 - max(feather, 1e-3))
    t = np.clip((1.0 - r) / (1.0 - inner), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(rgb, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)


def _rgb(lab: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)


class _Face:
    """One face's placement: the clipped region of the photo, its mask and the photo's ring colours."""

    def __init__(self, photo: np.ndarray, box: Box, feather: float, exclude: list[Box]) -> None:
        height, width = photo.shape[:2]
        x0, y0, x1, y1 = box.as_ints()
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box {box.as_tuple()} is empty: need x0 < x1 and y0 < y1")
        self.size = Size(x1 - x0, y1 - y0)
        self.clip = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
        cx0, cy0, cx1, cy1 = self.clip
        self.inner = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        mask = elliptical_mask(self.size.width, self.size.height, feather)
        for other in exclude:  # never paint over another face (its detected box, a little grown)
            keep = np.ones_like(mask)
            ox0, oy0, ox1, oy1 = other.scaled(1.15).as_ints()
            cv2.rectangle(keep, (ox0 - x0, oy0 - y0), (ox1 - x0, oy1 - y0), 0.0, thickness=-1)
            blur = max(3, (min(self.size) // 16) | 1)
            mask = np.minimum(mask, cv2.GaussianBlur(keep, (blur, blur), 0))
        self.mask = mask[self.inner][..., None]
        r = _radius(self.size.width, self.size.height)[self.inner]
        self.ring = (r >= _RING[0]) & (r <= _RING[1])
        region = photo[cy0:cy1, cx0:cx1].astype(np.float32) / 255
        self.target = self._stats(_lab(region)) if self.ring.sum() >= 16 else None

    def _stats(self, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = lab[self.ring]
        return values.mean(axis=0), values.std(axis=0) + 1e-3

    def colour_matched(self, patch: np.ndarray) -> np.ndarray:
        """``patch`` (float RGB in [0, 1], the clipped region) with its ring's Lab statistics moved onto
        the photo's."""
        if self.target is None:
            return patch
        lab = _lab(patch)
        mean, std = self._stats(lab)
        target_mean, target_std = self.target
        gain = np.clip(target_std / std, 0.5, 2.0)
        return np.clip(_rgb((lab - mean) * gain + target_mean), 0, 1)


class Compositor:
    """Pastes animated crops of several faces into a photo, frame after frame.

    photo: the full RGB uint8 photo. boxes: each face's crop square in the photo (where its animated
    crop goes). faces: each face's detected box (kept clear of the other faces' masks; None: none).
    feather: the mask's soft edge (see :func:`elliptical_mask`). colour_match: match colours as the
    module describes.
    """

    def __init__(self, photo: np.ndarray, boxes: Sequence[Box], faces: Sequence[Box | None] | None = None,
                 feather: float = DEFAULT_FEATHER, colour_match: bool = True) -> None:
        self.photo = np.asarray(photo)
        faces = list(faces) if faces is not None else [None] * len(boxes)
        self.colour_match = colour_match
        self.faces = [_Face(self.photo, box, feather, [f for j, f in enumerate(faces) if j != i and f is not None])
                      for i, box in enumerate(boxes)]

    def paste(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """A copy of the photo with ``crops[i]`` (any size; resized to its box) blended in at box i."""
        out = self.photo.copy()
        for face, crop in zip(self.faces, crops):
            patch = resize_image(np.asarray(crop), face.size)[face.inner].astype(np.float32) / 255
            if self.colour_match:
                patch = face.colour_matched(patch)
            cx0, cy0, cx1, cy1 = face.clip
            region = out[cy0:cy1, cx0:cx1]
            touched = face.mask[..., 0] > 0
            blended = patch * 255 * face.mask + region.astype(np.float32) * (1 - face.mask)
            region[touched] = np.clip(np.rint(blended[touched]), 0, 255).astype(out.dtype)
        return out


def paste_back(full_img: np.ndarray, crop_img: np.ndarray, box: tuple[float, float, float, float] | Box,
               feather: float = DEFAULT_FEATHER, colour_match: bool = True) -> np.ndarray:
    """``crop_img`` pasted into a copy of ``full_img`` over ``box`` = (x0, y0, x1, y1) pixels (it may
    reach past the image border: that part is dropped); see :class:`Compositor`."""
    box = box if isinstance(box, Box) else Box(*map(float, box))
    return Compositor(full_img, [box], feather=feather, colour_match=colour_match).paste([crop_img])
