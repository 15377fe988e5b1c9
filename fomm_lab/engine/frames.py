"""Frames (uint8 RGB ``(H, W, 3)`` arrays) to network inputs and back."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ..geometry import Size


def frames_to_tensor(frames: Sequence[np.ndarray], size: Size, device: torch.device,
                     channels_last: bool = False) -> torch.Tensor:
    """uint8 (or float in [0, 1]) ``(H, W, 3)`` frames -> ``(N, 3, size.height, size.width)`` float32 in
    [0, 1] on ``device``; frames of another size are resized (area when shrinking, cubic otherwise)."""
    batch = []
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB frame of shape (H, W, 3), got an array of shape {frame.shape}")
        if (frame.shape[1], frame.shape[0]) != tuple(size):
            shrink = frame.shape[0] > size.height or frame.shape[1] > size.width
            frame = cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        batch.append(frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32))
    tensor = torch.from_numpy(np.ascontiguousarray(np.stack(batch).transpose(0, 3, 1, 2))).to(device)
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


def tensor_to_frames(prediction: torch.Tensor, as_float: bool = False) -> list[np.ndarray]:
    """``(N, 3, H, W)`` in [0, 1] -> N ``(H, W, 3)`` uint8 frames (float32 in [0, 1] with ``as_float``)."""
    prediction = prediction.float().clamp(0, 1)
    if not as_float:
        prediction = (prediction * 255).round().to(torch.uint8)
    return list(prediction.permute(0, 2, 3, 1).cpu().numpy())
