"""Occlusion-aware generator (paper Sec. 3.3; supplementary A.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..keypoints import Keypoints
from .blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from .dense_motion import DenseMotionNetwork


def warp(features: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Backward-warp (N, C, H, W) features with a (N, h, w, 2) grid, resized bilinearly to H x W."""
    h, w = features.shape[2:]
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
        deformation = deformation.permute(0, 2, 3, 1)
    return F.grid_sample(features, deformation.to(features.dtype), align_corners=False)


class OcclusionAwareGenerator(nn.Module):
    """Encoder, feature warping with occlusion (Eq. 8), residual bottleneck, decoder.

    encode: source (N, C, H, W) in [0, 1] -> features (N, F, H/2^d, W/2^d).
    decode: features warped by T_{S<-D}, multiplied by the occlusion map, then the bottleneck and
    decoder -> prediction (N, C, H, W) in [0, 1].
    """

    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        estimate_occlusion_map: bool = False,
        dense_motion_params: dict | None = None,
        estimate_jacobian: bool = False,
    ):
        super().__init__()
        if dense_motion_params is None:
            raise ValueError("generator_params needs dense_motion_params")
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp,
            num_channels=num_channels,
            estimate_occlusion_map=estimate_occlusion_map,
            **dense_motion_params,
        )
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))

        def width(level: int) -> int:
            return min(max_features, block_expansion * 2**level)

        self.down_blocks = nn.ModuleList(DownBlock2d(width(i), width(i + 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1)) for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(num_down_blocks), kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_channels = num_channels

    def encode(self, source_image: torch.Tensor) -> torch.Tensor:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(
        self, features: torch.Tensor, deformation: torch.Tensor, occlusion: torch.Tensor | None
    ) -> torch.Tensor:
        """Source features (1 or N, F, h', w'), deformation (N, h, w, 2), occlusion (N, 1, h, w)."""
        n = deformation.shape[0]
        out = warp(features.expand(n, -1, -1, -1), deformation)
        if occlusion is not None:
            if occlusion.shape[2:] != out.shape[2:]:
                occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear")
            out = out * occlusion.to(out.dtype)
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))

    def forward(self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> dict:
        """Whole generator as in the paper: returns ``prediction``, ``deformation``, ``occlusion_map``."""
        cache = self.dense_motion_network.prepare(source_image, kp_source)
        deformation, occlusion = self.dense_motion_network(cache, kp_driving)
        prediction = self.decode(self.encode(source_image), deformation, occlusion)
        return {"prediction": prediction, "deformation": deformation, "occlusion_map": occlusion}
