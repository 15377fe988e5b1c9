"""The lab's before/after figure of face enhancement: the animated face beside the enhanced one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["enhance_figure"]

TITLES = ("animated", "enhanced")
"""Default column titles: the animation as it comes out of the model, and after the face enhancer."""


def _frames(frames: Sequence[np.ndarray] | np.ndarray, name: str) -> list[np.ndarray]:
    """Check a sequence of (H, W, 3) RGB frames (or an (N, H, W, 3) array)."""
    items = list(frames)
    if not items:
        raise ValueError(f"{name} holds no frames")
    for index, frame in enumerate(items):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(f"{name}[{index}] must be an RGB frame (H, W, 3), not {frame.shape}")
        items[index] = frame
    return items


def _picked(count: int, most: int) -> list[int]:
    """Up to ``most`` frame indices spread evenly over ``count`` frames, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, most)})


def enhance_figure(plain_frames: Sequence[np.ndarray] | np.ndarray, enhanced_frames: Sequence[np.ndarray] | np.ndarray,
                   titles: Sequence[str] = TITLES, *, max_frames: int = 3, frame_numbers: Sequence[int] | None = None,
                   panel_inches: float = 3.0) -> Any:
    """A matplotlib figure: one row per frame, the animated face (left) beside the enhanced one (right).

    plain_frames / enhanced_frames: the same frames before and after enhancement, each (H, W, 3) RGB (uint8, or
    float in [0, 1]); an (N, H, W, 3) array works too. The two may differ in size (256 animated, 512 enhanced):
    both are shown at the same size on screen, so the detail added is what differs. titles: the two column
    titles. max_frames: at most this many rows, spread evenly over the frames (first and last shown).
    frame_numbers: each frame's number in the clip, for the row labels (default 0, 1, ...). panel_inches: the
    side of each picture. No legend: the column titles say which is which.
    """
    plain = _frames(plain_frames, "plain_frames")
    enhanced = _frames(enhanced_frames, "enhanced_frames")
    if len(plain) != len(enhanced):
        raise ValueError(f"{len(plain)} plain frames but {len(enhanced)} enhanced ones: give the same frames "
                         "before and after enhancement")
    if len(titles) != 2:
        raise ValueError(f"titles must be two (animated, enhanced), not {len(titles)}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, not {max_frames}")
    numbers = list(frame_numbers) if frame_numbers is not None else list(range(len(plain)))
    if len(numbers) != len(plain):
        raise ValueError(f"{len(numbers)} frame numbers for {len(plain)} frames")

    import matplotlib.pyplot as plt  # the notebook's inline backend, or Agg without a display

    rows = _picked(len(plain), max_frames)
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * panel_inches, len(rows) * panel_inches + 0.4),
                             squeeze=False)
    for row, index in enumerate(rows):
        for column, frame in enumerate((plain[index], enhanced[index])):
            ax = axes[row][column]
            ax.imshow(frame, extent=(0, 1, 1, 0), interpolation="lanczos")  # the same size on screen
            ax.set_xticks([])
            ax.set_yticks([])
            height, width = frame.shape[:2]
            if row == 0:
                ax.set_title(titles[column], fontsize=10)
            ax.set_xlabel(f"{width}x{height}", fontsize=8)
        axes[row][0].set_ylabel(f"frame {numbers[index]}", fontsize=9)
    fig.tight_layout()
    return fig
