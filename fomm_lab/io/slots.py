"""A video writer fed at fixed-rate time slots: slots nobody filled repeat the previous frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SlotWriter:
    """Write frames to ``path`` at ``fps``, each tagged with its slot index (time * fps).

    A camera that delivers late skips slots; repeating the previous frame there keeps the video at
    real-time speed. Frames for an already filled slot are dropped, and a frame whose size differs
    from the first one is resized to it. ``max_slots`` caps the length (None: no cap).
    """

    def __init__(self, path: str | Path, fps: float, max_slots: int | None = None) -> None:
        from .video import VideoWriter

        self.path = Path(path)
        self.fps = fps
        self.max_slots = max_slots
        self._writer = VideoWriter(self.path, fps=fps)
        self._last: np.ndarray | None = None
        self.slots = 0  # slots written so far (= frames in the video)

    @property
    def seconds(self) -> float:
        """Length of what was written, in seconds."""
        return self.slots / self.fps

    def write(self, index: int, frame: np.ndarray) -> None:
        """Put RGB uint8 ``frame`` (H, W, 3) into slot ``index`` (0-based)."""
        if self.max_slots is not None:
            index = min(index, self.max_slots - 1)
        if index < self.slots:
            return
        if self._last is not None and frame.shape != self._last.shape:
            import cv2

            frame = cv2.resize(frame, (self._last.shape[1], self._last.shape[0]), interpolation=cv2.INTER_AREA)
        filler = self._last if self._last is not None else frame
        for _ in range(index - self.slots):
            self._writer.write(filler)
        self._writer.write(frame)
        self._last = frame
        self.slots = index + 1

    def close(self) -> Path:
        """Finish the file (renamed into place); returns its path."""
        return self._writer.close()

    def abort(self) -> None:
        """Stop without leaving anything at ``path``."""
        self._writer.__exit__(RuntimeError, None, None)
