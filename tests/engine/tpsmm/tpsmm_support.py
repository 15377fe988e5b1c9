"""Shared helpers of the TPSMM tests: the golden fixtures (tests/fixtures/tpsmm-golden) and the loaded model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "tpsmm-golden"
YAML = GOLDEN / "tiny-vox.yaml"
CHECKPOINT = GOLDEN / "tiny-vox.pth.tar"
MODES = ("standard", "relative", "avd")
ANIMATOR_FLAGS = {"standard": {"relative": False}, "relative": {"relative": True}, "avd": {"avd": True}}
"""The Animator arguments of each of the authors' demo modes."""


def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "tiny-vox-golden.npz") as data:
        return {name: data[name] for name in data.files}


def as_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or (N, H, W, 3) -> (N, 3, H, W) float32 in [0, 1], the model input."""
    frames = frames[None] if frames.ndim == 3 else frames
    return torch.from_numpy(frames.astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()


def max_diff(actual, expected) -> float:
    actual = actual.detach().numpy() if torch.is_tensor(actual) else np.asarray(actual)
    return float(np.abs(actual.astype(np.float64) - np.asarray(expected, dtype=np.float64)).max())
