"""The thin-plate-spline transformation of TPSMM (Zhao & Zhang, CVPR 2022, Sec. 3.1, Eq. 2).

For each of K groups of 5 control points, the spline maps driving-frame coordinates p to source-frame
coordinates: T(p) = A [p; 1] + sum_i w_i U(|p - p_i^D|), with U(r) = r^2 log r^2 (the ``1e-9`` keeps log finite
at r = 0). Its parameters solve L [w; A^T] = [p^S; 0], where L = [[U(|p_i^D - p_j^D|), P], [P^T, 0]] + 0.01 I
(P = [p^D, 1], the 0.01 regularising every diagonal entry, as the authors' code does). The warp is thus a
``grid_sample`` grid for the source image (backward warping).

The 8x8 systems are solved as the authors do (``torch.inverse(L)``, then a product), except while the networks
are exported (ONNX has no inverse): then by :func:`~.solve.gauss_jordan_solve`, in standard operators.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .solve import gauss_jordan_solve

POINTS_PER_TPS = 5
"""Control points of one transformation (the keypoint detector predicts K * 5 points)."""

_EPSILON = 1e-9
_REGULARISATION = 0.01


def _radial(squared: torch.Tensor) -> torch.Tensor:
    """U = r^2 log(r^2 + 1e-9) from r^2."""
    return squared * torch.log(squared + _EPSILON)


def exporting() -> bool:
    """True while the networks are being exported (ONNX, torch.export): the TPS solve then avoids
    ``torch.inverse``, which has no ONNX operator."""
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


@dataclass(frozen=True)
class ThinPlateSpline:
    """K thin-plate splines per batch element (Eq. 2).

    affine:         (N, K, 2, 3) A, applied to [x, y, 1].
    control_points: (N, K, 5, 2) the driving keypoints p^D.
    weights:        (N, K, 5, 2) w, the radial terms' coefficients.
    """

    affine: torch.Tensor
    control_points: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def fit(cls, kp_driving: torch.Tensor, kp_source: torch.Tensor, *,
            gauss_jordan: bool | None = None) -> ThinPlateSpline:
        """The splines mapping ``kp_driving`` (N, K, 5, 2) to ``kp_source`` (N, K, 5, 2), group by group.

        gauss_jordan: solve L [w; A^T] = [p^S; 0] by :func:`~.solve.gauss_jordan_solve` (exportable) instead of
        the authors' ``inverse(L) @ [p^S; 0]``; None (default): only while exporting (:func:`exporting`).
        """
        n, k, points, _ = kp_driving.shape
        distances = torch.linalg.vector_norm(kp_driving[:, :, :, None] - kp_driving[:, :, None, :], ord=2, dim=4)
        radial = _radial(distances**2)
        ones = torch.ones(n, k, points, 1, dtype=kp_driving.dtype, device=kp_driving.device)
        homogeneous = torch.cat([kp_driving, ones], 3)  # P: (N, K, 5, 3)
        bottom = torch.cat([homogeneous, torch.zeros(n, k, 3, 3, dtype=kp_driving.dtype, device=kp_driving.device)], 2)
        system = torch.cat([torch.cat([radial, homogeneous.transpose(2, 3)], 2), bottom], 3)  # L: (N, K, 8, 8)
        system = system + torch.eye(points + 3, dtype=kp_driving.dtype, device=kp_driving.device) * _REGULARISATION
        target = torch.cat([kp_source, torch.zeros(n, k, 3, 2, dtype=kp_source.dtype, device=kp_source.device)], 2)
        if exporting() if gauss_jordan is None else gauss_jordan:
            solution = gauss_jordan_solve(system, target)  # (N, K, 8, 2): [w; A^T]
        else:
            solution = torch.matmul(torch.inverse(system), target)
        return cls(solution[:, :, points:, :].transpose(2, 3), kp_driving, solution[:, :, :points, :])

    def warp(self, coordinates: torch.Tensor) -> torch.Tensor:
        """(1, P, 2) points (x, y) -> (N, K, P, 2): each spline applied to each point."""
        n, k = self.affine.shape[:2]
        affine = torch.matmul(self.affine[:, :, :, :2], coordinates.transpose(1, 2)) + self.affine[:, :, :, 2:]
        offsets = coordinates.view(coordinates.shape[0], 1, 1, -1, 2) - self.control_points.view(n, k, -1, 1, 2)
        radial = _radial((offsets**2).sum(-1))  # (N, K, 5, P)
        return affine.transpose(2, 3) + torch.matmul(radial.transpose(2, 3), self.weights)

    def grids(self, grid: torch.Tensor) -> torch.Tensor:
        """(H, W, 2) identity grid -> (N, K, H, W, 2) ``grid_sample`` grids in the source frame."""
        height, width = grid.shape[:2]
        warped = self.warp(grid.reshape(1, height * width, 2))
        return warped.view(*warped.shape[:2], height, width, 2)
