"""The typed keypoints every network and stage passes around (paper Sec. 3.1, first-order motion)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Keypoints:
    """Learned keypoints with their local affine transforms (first-order Taylor terms).

    value:    (N, K, 2) keypoint locations (x, y) in [-1, 1] image coordinates.
    jacobian: (N, K, 2, 2) jacobians d T / d p at each keypoint, or None for a zero-order model.
    """

    value: torch.Tensor
    jacobian: torch.Tensor | None = None

    def __getitem__(self, index) -> Keypoints:
        """Select frames along the batch axis, keeping the batch dimension."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        jac = None if self.jacobian is None else self.jacobian[index]
        return Keypoints(self.value[index], jac)
