"""Dense motion network (paper Sec. 3.2-3.3, Eq. 4-8; supplementary A.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..keypoints import Keypoints
from .blocks import (
    AntiAliasInterpolation2d,
    DownBlock2d,
    Hourglass,
    UpBlock2d,
    coordinate_grid,
    gaussian_heatmaps,
    inverse_2x2,
)
from .mobile import MobileDownBlock2d, MobileUpBlock2d, conv_stack


@dataclass(frozen=True)
class SourceMotionCache:
    """Source-side inputs of the dense motion network, computed once per source image.

    image:    (1, C, h, w) source downscaled to the motion resolution.
    heatmaps: (1, K, h, w) Gaussians at the source keypoints.
    keypoints: the source keypoints (1, K, .).
    """

    image: torch.Tensor
    heatmaps: torch.Tensor
    keypoints: Keypoints


class DenseMotionNetwork(nn.Module):
    """Predicts the dense backward warp T_{S<-D} and the occlusion map.

    For each keypoint k, a sparse motion maps driving coordinates z to source coordinates
    T_S(p_k) + J_k (z - T_D(p_k)) with J_k = J_S,k J_D,k^{-1} (Eq. 4); the identity is motion 0
    (background). The source is warped by every sparse motion, concatenated with the heatmap
    differences H_k = G(p_D,k) - G(p_S,k) (Eq. 6) and fed to an hourglass that predicts K+1 softmax
    masks M_k; the dense motion is sum_k M_k * motion_k (Eq. 7) and the occlusion map is a sigmoid
    head on the same features (Eq. 8).

    ``mobile_net``: PaddleGAN's mobile topology (:mod:`.mobile`): depthwise-separable hourglass blocks,
    mask and occlusion heads of three 3x3 convolutions with ReLUs between, the 3x3 anti-alias kernel.
    ``align_corners``: how the source is sampled at the sparse motions; PaddleGAN samples with
    ``align_corners=True`` (grid -1 and 1 at the centres of the corner pixels), the official
    implementation with False (at the outer edges of the corner pixels).
    """

    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_kp: int,
        num_channels: int,
        estimate_occlusion_map: bool = False,
        scale_factor: float = 1,
        kp_variance: float = 0.01,
        mobile_net: bool = False,
        align_corners: bool = False,
    ):
        super().__init__()
        self.hourglass = Hourglass(
            block_expansion=block_expansion,
            in_features=(num_kp + 1) * (num_channels + 1),
            max_features=max_features,
            num_blocks=num_blocks,
            down_block=MobileDownBlock2d if mobile_net else DownBlock2d,
            up_block=MobileUpBlock2d if mobile_net else UpBlock2d,
        )
        features = self.hourglass.out_filters

        def head(out_channels: int) -> nn.Module:
            if mobile_net:
                return conv_stack(features, out_channels, padding=1, relu=True)
            return nn.Conv2d(features, out_channels, kernel_size=(7, 7), padding=(3, 3))

        self.mask = head(num_kp + 1)
        self.occlusion = head(1) if estimate_occlusion_map else None
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.align_corners = align_corners
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor, mobile_net=mobile_net)

    def prepare(self, source_image: torch.Tensor, kp_source: Keypoints) -> SourceMotionCache:
        """Source-side work: (1, C, H, W) image and its keypoints -> :class:`SourceMotionCache`."""
        image = self.down(source_image) if self.scale_factor != 1 else source_image
        h, w = image.shape[2:]
        heatmaps = gaussian_heatmaps(kp_source.value, h, w, self.kp_variance)
        return SourceMotionCache(image, heatmaps, kp_source)

    def sparse_motions(self, kp_driving: Keypoints, kp_source: Keypoints, h: int, w: int) -> torch.Tensor:
        """Sparse motions (Eq. 4): (N, K+1, h, w, 2) source coordinates for each driving pixel."""
        n = kp_driving.value.shape[0]
        identity = coordinate_grid(h, w, device=kp_driving.value.device, dtype=kp_driving.value.dtype)
        identity = identity.view(1, 1, h, w, 2)
        coords = identity - kp_driving.value.view(n, self.num_kp, 1, 1, 2)
        if kp_driving.jacobian is not None:
            jac = torch.matmul(kp_source.jacobian, inverse_2x2(kp_driving.jacobian))
            coords = torch.einsum("nkij,nkhwj->nkhwi", jac.expand(n, -1, -1, -1), coords)
        driving_to_source = coords + kp_source.value.view(-1, self.num_kp, 1, 1, 2)
        return torch.cat([identity.expand(n, 1, h, w, 2), driving_to_source.expand(n, -1, -1, -1, -1)], dim=1)

    def forward(self, cache: SourceMotionCache, kp_driving: Keypoints) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Driving keypoints (N, K, .) -> deformation (N, h, w, 2) and occlusion (N, 1, h, w) or None."""
        image = cache.image
        n = kp_driving.value.shape[0]
        _, c, h, w = image.shape
        k1 = self.num_kp + 1

        heat = gaussian_heatmaps(kp_driving.value, h, w, self.kp_variance) - cache.heatmaps
        heat = torch.cat([heat.new_zeros(n, 1, h, w), heat], dim=1).unsqueeze(2)  # (N, K+1, 1, h, w)

        motions = self.sparse_motions(kp_driving, cache.keypoints, h, w)  # (N, K+1, h, w, 2)
        repeated = image.unsqueeze(1).expand(n, k1, c, h, w).reshape(n * k1, c, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(n * k1, h, w, 2), align_corners=self.align_corners)
        deformed = deformed.view(n, k1, c, h, w)

        features = self.hourglass(torch.cat([heat, deformed], dim=2).view(n, -1, h, w))
        masks = F.softmax(self.mask(features), dim=1)  # (N, K+1, h, w)
        deformation = torch.einsum("nkhw,nkhwc->nhwc", masks, motions)
        occlusion = torch.sigmoid(self.occlusion(features)) if self.occlusion is not None else None
        return deformation, occlusion
