"""Random transforms of the equivariance constraint (paper Sec. 3.3, "Imposing equivariance constraint").

A frame X is warped by a known random transform into Y; the keypoint detector must then be equivariant:
its keypoints of X are the transform of its keypoints of Y. The transform maps coordinates of Y to
coordinates of X (Y(z) = X(T(z)), the backward warp grid_sample takes):

    T(z) = A z + b + sum_k w_k phi(r_k(z)),   phi(r) = r^2 log(r + 1e-6),   r_k(z) = |z - c_k|_1

with A = I + noise and b = noise (standard deviation ``sigma_affine``; both turned by a random rotation R,
A <- R A and b <- R b, when ``rotation`` is set: an addition to the paper's transform), control points c_k on
a regular ``points_tps`` x ``points_tps`` grid over [-1, 1]^2 and weights w_k of standard deviation ``sigma_tps``
(the same w_k for both output coordinates). As in the authors' implementation, r is the L1 distance to the
control point (a classical thin-plate spline uses the Euclidean one). Coordinates are (x, y) in [-1, 1], -1
and 1 being the centres of the first and last pixels -- the convention of the keypoints.

The jacobian dT/dz is computed in closed form (differentiable in z):
A + sum_k w_k phi'(r_k) sign(z - c_k)^T, with phi'(r) = 2 r log(r + 1e-6) + r^2 / (r + 1e-6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..engine.nets.blocks import coordinate_grid
from .params import TransformParams

EPS = 1e-6


class RandomTransform:
    """One random transform per batch item (see the module's description).

    batch: N. theta: (N, 2, 3) = [A | b]. control_points: (1, P*P, 2); control_weights: (N, 1, P*P) or None.
    Random numbers come from ``generator`` (on the CPU) and are moved to ``device``.
    """

    def __init__(self, batch: int, params: TransformParams, *, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        noise = torch.normal(0.0, float(params.sigma_affine), (batch, 2, 3), generator=generator)
        self.theta = (noise + torch.eye(2, 3).unsqueeze(0)).to(device=device, dtype=dtype)
        self.batch = batch
        self.control_points: torch.Tensor | None = None
        self.control_weights: torch.Tensor | None = None
        if params.tps:
            assert params.points_tps is not None and params.sigma_tps is not None
            p = params.points_tps
            self.control_points = coordinate_grid(p, p, dtype=dtype).view(1, p * p, 2).to(device)
            weights = torch.normal(0.0, float(params.sigma_tps), (batch, 1, p * p), generator=generator)
            self.control_weights = weights.to(device=device, dtype=dtype)
        if params.rotation:  # drawn last: without it the paper's transforms stay the same draws
            angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(float(params.rotation))
            cos, sin = torch.cos(angle), torch.sin(angle)
            turn = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], 1)  # (N, 2, 2)
            self.theta = turn.to(device=device, dtype=dtype) @ self.theta

    @classmethod
    def from_matrix(cls, theta: torch.Tensor) -> RandomTransform:
        """A purely affine transform with the given (N, 2, 3) ``theta`` (for tests and tools)."""
        self = cls.__new__(cls)
        self.theta, self.batch = theta, theta.shape[0]
        self.control_points = self.control_weights = None
        return self

    def _distances(self, coordinates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, M, P*P, 2) differences z - c_k and (N, M, P*P) L1 distances."""
        assert self.control_points is not None
        diff = coordinates.unsqueeze(2) - self.control_points.to(coordinates.dtype).unsqueeze(1)
        return diff, diff.abs().sum(-1)

    def warp_coordinates(self, coordinates: torch.Tensor) -> torch.Tensor:
        """T(z) for (N, M, 2) (or (1, M, 2), shared by the batch) coordinates -> (N, M, 2)."""
        theta = self.theta.to(coordinates.dtype)
        out = torch.einsum("nij,nmj->nmi", theta[:, :, :2], coordinates.expand(self.batch, -1, -1))
        out = out + theta[:, :, 2].unsqueeze(1)
        if self.control_weights is not None:
            _, r = self._distances(coordinates.expand(self.batch, -1, -1))
            radial = r**2 * torch.log(r + EPS)  # (N, M, P*P)
            out = out + (radial * self.control_weights.to(coordinates.dtype)).sum(-1, keepdim=True)
        return out

    def jacobian(self, coordinates: torch.Tensor) -> torch.Tensor:
        """dT/dz at (N, M, 2) coordinates -> (N, M, 2, 2), entry [i, j] = d T_i / d z_j."""
        theta = self.theta.to(coordinates.dtype)
        n, m = self.batch, coordinates.shape[1]
        jac = theta[:, :, :2].unsqueeze(1).expand(n, m, 2, 2)
        if self.control_weights is not None:
            diff, r = self._distances(coordinates.expand(n, -1, -1))
            d_phi = 2 * r * torch.log(r + EPS) + r**2 / (r + EPS)  # (N, M, P*P)
            grad = ((d_phi * self.control_weights.to(coordinates.dtype)).unsqueeze(-1) * torch.sign(diff)).sum(2)
            jac = jac + grad.unsqueeze(2).expand(n, m, 2, 2)  # the same radial term for both outputs
        return jac

    def warp_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """Y = X o T for (N, C, H, W) frames (reflection at the borders), same shape."""
        h, w = frame.shape[2:]
        grid = coordinate_grid(h, w, device=frame.device, dtype=frame.dtype).view(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(self.batch, h, w, 2)
        return F.grid_sample(frame, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
