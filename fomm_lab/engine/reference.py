"""The reference (initial) driving frame of relative motion: the one rule for where it may be (no torch)."""

from __future__ import annotations

from ..errors import FommLabError, Remedy


def check_reference(index: int, frames: int | None, *, approximate: bool = False) -> None:
    """FommLabError when ``index`` is not a frame of a clip of ``frames`` frames (None: not known yet);
    ``approximate``: the count comes from the file's header, not from the frames read."""
    if index < 0:
        raise FommLabError(f"best frame must be 0 or more, got {index}",
                           remedies=[Remedy("start from the first frame ({})", "motion.best_frame", 0)])
    if frames is not None and index >= frames:
        count = f"about {frames}" if approximate else str(frames)
        raise FommLabError(f"best frame {index} is past the end of the driving clip ({count} frames)",
                           remedies=[Remedy(f"give a frame from 0 to {frames - 1} ({{}})", "motion.best_frame",
                                            frames - 1)])
