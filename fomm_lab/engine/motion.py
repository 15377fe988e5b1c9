"""Motion transfer onto the source: the keypoint normalisation of the paper (Sec. 3.4, Eq. 9-10)."""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import torch

from .keypoints import Keypoints

log = logging.getLogger(__name__)


def hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (K, 2) points; 0.0 when they are degenerate (collinear)."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 1, 2)
    if len(points) < 3 or not np.isfinite(points).all():
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(points)))


def movement_scale(kp_source: Keypoints, kp_reference: Keypoints) -> float:
    """Adapt-movement-scale factor: sqrt(area(hull(source)) / area(hull(reference))).

    Uses the first item of each batch. Degenerate hulls give 1.0 (no scaling) with a warning.
    """
    src = hull_area(kp_source.value[0].detach().float().cpu().numpy())
    ref = hull_area(kp_reference.value[0].detach().float().cpu().numpy())
    if src <= 0.0 or ref <= 0.0:
        log.warning("keypoints are degenerate (zero hull area); movement scale not adapted")
        return 1.0
    return math.sqrt(src) / math.sqrt(ref)


def normalize_keypoints(
    kp_source: Keypoints,
    kp_driving: Keypoints,
    kp_reference: Keypoints | None,
    *,
    relative: bool = True,
    adapt_scale: bool = True,
    relative_jacobian: bool | None = None,
    scale: float | None = None,
) -> Keypoints:
    """Transfer driving motion onto the source keypoints (paper Sec. 3.4).

    Relative motion moves each source keypoint by the driving keypoint's displacement from the
    reference (initial) driving frame: p_S + s * (p_D - p_D1), and with relative jacobians
    J = J_D J_D1^{-1} J_S. Absolute motion uses the driving keypoints as they are; the movement scale
    s then has no effect, as in the official implementation.

    kp_source: (1, K, .); kp_driving: (N, K, .); kp_reference: (1, K, .) (needed when relative).
    ``scale`` is s when already known (computed once per source/reference pair), otherwise it is
    :func:`movement_scale` when ``adapt_scale`` and 1 when not. ``relative_jacobian`` defaults to
    ``relative``. Returns keypoints of shape (N, K, .).
    """
    if not relative:
        return kp_driving
    if kp_reference is None:
        raise ValueError("relative motion needs the reference (initial) driving keypoints")
    if scale is None:
        scale = movement_scale(kp_source, kp_reference) if adapt_scale else 1.0
    value = (kp_driving.value - kp_reference.value) * scale + kp_source.value
    jacobian = kp_driving.jacobian
    if (relative if relative_jacobian is None else relative_jacobian) and jacobian is not None:
        if kp_reference.jacobian is None or kp_source.jacobian is None:
            raise ValueError("relative jacobians need the reference's and the source's jacobians")
        change = torch.matmul(jacobian, torch.inverse(kp_reference.jacobian))
        jacobian = torch.matmul(change, kp_source.jacobian)
    return Keypoints(value, jacobian)
