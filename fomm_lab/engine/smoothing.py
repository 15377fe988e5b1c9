"""Temporal smoothing of the driving keypoints: a One-Euro filter (Casiez et al., CHI 2012).

Keypoints found frame by frame jitter by a pixel or two, which the generator turns into a trembling
face. The One-Euro filter is a low-pass filter whose cut-off rises with the signal's speed: slow
drifts (jitter) are smoothed strongly, fast motion (a turn of the head) passes with little lag.
Applied to every keypoint value (N, K, 2) and jacobian (N, K, 2, 2) of the driving frames, in order;
the reference frame of relative motion is never filtered.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .keypoints import Keypoints

DEFAULT_STRENGTH = 0.5
"""The smoothing of the video path and the live loop unless asked otherwise (0: off, 1: strongest)."""


def cutoffs(strength: float) -> tuple[float, float]:
    """(minimum cut-off in cycles per frame, speed coefficient beta) for a strength in (0, 1].

    Strength 1 cuts jitter above 0.02 cycles/frame while the keypoints are still, 0.5 above 0.04.
    beta = 8 raises the cut-off with the speed (in keypoint units, [-1, 1] across the frame, per frame)
    so that a sudden move of 0.3 is followed to 90 % on its own frame and 98 % on the next: at most one
    frame of lag. (Chosen on simulated paths: tests/faces/test_group.py measures it.)
    """
    strength = min(max(strength, 1e-3), 1.0)
    return 0.02 / strength, 8.0


class OneEuro:
    """A One-Euro filter over tensors of one shape, one sample per call (the time step is one frame)."""

    def __init__(self, min_cutoff: float, beta: float, derivative_cutoff: float = 0.3) -> None:
        self.min_cutoff, self.beta, self.derivative_cutoff = min_cutoff, beta, derivative_cutoff
        self._value: Any = None
        self._speed: Any = None

    @staticmethod
    def _alpha(cutoff: Any) -> Any:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau)

    def __call__(self, sample: Any) -> Any:
        """The filtered value of ``sample`` (a tensor or array, the same shape every call)."""
        if self._value is None:
            self._value, self._speed = sample, sample * 0
            return sample
        assert self._speed is not None
        speed = sample - self._value
        a = self._alpha(self.derivative_cutoff)
        self._speed = a * speed + (1 - a) * self._speed
        alpha = self._alpha(self.min_cutoff + self.beta * self._speed.abs())
        self._value = alpha * sample + (1 - alpha) * self._value
        return self._value


class KeypointFilter:
    """Smooths a stream of driving keypoints (batches of N frames, in order) with One-Euro filters."""

    def __init__(self, strength: float = DEFAULT_STRENGTH) -> None:
        min_cutoff, beta = cutoffs(strength)
        self._value = OneEuro(min_cutoff, beta)
        self._jacobian = OneEuro(min_cutoff, beta)

    def __call__(self, keypoints: Keypoints) -> Keypoints:
        import torch

        from .keypoints import Keypoints

        values, jacobians = [], []
        for i in range(keypoints.value.shape[0]):
            values.append(self._value(keypoints.value[i]))
            if keypoints.jacobian is not None:
                jacobians.append(self._jacobian(keypoints.jacobian[i]))
        return Keypoints(torch.stack(values), torch.stack(jacobians) if jacobians else None)
