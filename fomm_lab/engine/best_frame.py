"""Choosing the driving frame whose face pose best matches the source (the paper demo's
``--find_best_frame``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..errors import NoFaceError
from .motion import hull_area

Landmarks = Callable[[np.ndarray], "np.ndarray | None"]


def normalized_landmarks(points: np.ndarray) -> np.ndarray:
    """Centre (L, 2+) landmarks on their mean and divide by sqrt of their convex-hull area."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    centred = points - points.mean(axis=0)
    area = hull_area(centred)
    return centred / np.sqrt(area) if area > 0 else centred


def find_best_frame(source: np.ndarray, driving: Iterable[np.ndarray], landmarks: Landmarks) -> int:
    """Index of the driving frame whose normalised face landmarks are closest to the source's.

    landmarks(image uint8 HxWx3) -> (68, 2) pixel coordinates, or None when there is no face.
    Frames without a face are skipped. One pass over ``driving``.
    """
    target = landmarks(source)
    if target is None:
        raise NoFaceError("find-best-frame: no face was found in the source image; choose the reference frame by index")
    target = normalized_landmarks(target)
    best, best_distance, count = None, np.inf, 0
    for index, frame in enumerate(driving):
        count += 1
        points = landmarks(frame)
        if points is None:
            continue
        distance = float(((normalized_landmarks(points) - target) ** 2).sum())
        if distance < best_distance:
            best, best_distance = index, distance
    if best is None:
        raise NoFaceError(
            f"find-best-frame: no face was found in any of the {count} driving frames; "
            "use the first frame (no find-best-frame) or give the reference frame by index"
        )
    return best
