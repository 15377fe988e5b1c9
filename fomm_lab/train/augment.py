"""The official data augmentations, applied alike to every frame of one training sample.

A clip is a list of float32 ``(H, W, 3)`` frames in [0, 1]. The parts run in the official order --
flip (time and horizontal), rotation, resize, crop, colour jitter -- each drawing its random parameters
once per clip from the given ``numpy.random.Generator`` (so a sample is reproducible from its seed).

Colour jitter follows the usual definitions: brightness scales the values; contrast blends with the mean
grey level; saturation blends with the grey image (luma 0.299 R + 0.587 G + 0.114 B); hue rotates the
HSV hue by a fraction of a turn. The four run in a random order, as in the paper's code.

Unlike the paper's code, where a time flip skips the horizontal flip, the two flips are drawn
independently (each with probability 1/2).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .params import AugmentationParams, CropParams, FlipParams, JitterParams, ResizeParams, RotationParams

Clip = list[np.ndarray]
"""Frames of one sample: float32 (H, W, 3) arrays in [0, 1]."""

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def flip(clip: Clip, params: FlipParams, rng: np.random.Generator) -> Clip:
    """Reverse the frame order (time flip) and/or mirror every frame left-right, each with probability 1/2."""
    if params.time_flip and rng.random() < 0.5:
        clip = clip[::-1]
    if params.horizontal_flip and rng.random() < 0.5:
        clip = [np.ascontiguousarray(frame[:, ::-1]) for frame in clip]
    return list(clip)


def rotate(clip: Clip, params: RotationParams, rng: np.random.Generator) -> Clip:
    """Rotate every frame by one angle drawn from ``degrees`` (counter-clockwise, about the centre, black
    outside)."""
    angle = rng.uniform(*params.degrees)
    h, w = clip[0].shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    return [cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0, 0, 0)) for frame in clip]


def resize(clip: Clip, params: ResizeParams, rng: np.random.Generator) -> Clip:
    """Scale every frame by one factor drawn from ``ratio`` (both sides alike)."""
    factor = rng.uniform(*params.ratio)
    h, w = clip[0].shape[:2]
    size = (max(1, int(w * factor)), max(1, int(h * factor)))
    return [cv2.resize(frame, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
            for frame in clip]


def crop(clip: Clip, params: CropParams, rng: np.random.Generator) -> Clip:
    """Cut one random ``size`` window from every frame; frames smaller than it are first padded with their
    edge pixels (centred)."""
    height, width = params.size
    h, w = clip[0].shape[:2]
    pad_h, pad_w = max(0, height - h), max(0, width - w)
    if pad_h or pad_w:
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
        clip = [np.pad(frame, pads, mode="edge") for frame in clip]
        h, w = clip[0].shape[:2]
    y0 = int(rng.integers(0, h - height + 1))
    x0 = int(rng.integers(0, w - width + 1))
    return [np.ascontiguousarray(frame[y0:y0 + height, x0:x0 + width]) for frame in clip]


def adjust_brightness(frame: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(frame * factor, 0, 1)


def adjust_contrast(frame: np.ndarray, factor: float) -> np.ndarray:
    mean = float((frame @ _LUMA).mean())
    return np.clip(factor * frame + (1 - factor) * mean, 0, 1)


def adjust_saturation(frame: np.ndarray, factor: float) -> np.ndarray:
    grey = (frame @ _LUMA)[..., None]
    return np.clip(factor * frame + (1 - factor) * grey, 0, 1)


def adjust_hue(frame: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by ``shift`` turns (in [-0.5, 0.5])."""
    hsv = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.float32), cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * shift, 360.0)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)


def jitter(clip: Clip, params: JitterParams, rng: np.random.Generator) -> Clip:
    """Colour jitter with one set of factors for the whole clip, the adjustments in a random order."""
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    if params.brightness > 0:
        b = rng.uniform(max(0.0, 1 - params.brightness), 1 + params.brightness)
        steps.append(lambda f: adjust_brightness(f, b))
    if params.contrast > 0:
        c = rng.uniform(max(0.0, 1 - params.contrast), 1 + params.contrast)
        steps.append(lambda f: adjust_contrast(f, c))
    if params.saturation > 0:
        s = rng.uniform(max(0.0, 1 - params.saturation), 1 + params.saturation)
        steps.append(lambda f: adjust_saturation(f, s))
    if params.hue > 0:
        shift = rng.uniform(-params.hue, params.hue)
        steps.append(lambda f: adjust_hue(f, shift))
    order = rng.permutation(len(steps))
    out = []
    for frame in clip:
        for i in order:
            frame = steps[i](frame)
        out.append(frame.astype(np.float32, copy=False))
    return out


class Augmentation:
    """Every augmentation part the yaml names, in the official order; ``augmentation(clip, rng)``."""

    def __init__(self, params: AugmentationParams) -> None:
        self.params = params

    @property
    def crop_size(self) -> tuple[int, int] | None:
        """(height, width) of the frames after augmentation, when a crop sets it."""
        return self.params.crop.size if self.params.crop is not None else None

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        p = self.params
        if p.flip is not None:
            clip = flip(clip, p.flip, rng)
        if p.rotation is not None:
            clip = rotate(clip, p.rotation, rng)
        if p.resize is not None:
            clip = resize(clip, p.resize, rng)
        if p.crop is not None:
            clip = crop(clip, p.crop, rng)
        if p.jitter is not None:
            clip = jitter(clip, p.jitter, rng)
        return clip
