"""TPSMM's dense motion network (Zhao & Zhang, CVPR 2022, Sec. 3.2-3.3).

From K thin-plate-spline warps (Eq. 2) and a background transformation it predicts an optical flow (Eq. 6: a
per-pixel softmax blend of the K + 1 transformations) and multi-resolution occlusion masks, at a fraction
(``scale_factor``) of the frame size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import AntiAliasInterpolation2d, coordinate_grid, gaussian_heatmaps
from .blocks import Hourglass, UpBlock2d
from .tps import POINTS_PER_TPS, ThinPlateSpline

OCCLUSION_MASKS = 4
"""Occlusion masks with ``multi_mask``: one per inpainting-decoder scale and one for the final blend."""


@dataclass(frozen=True)
class SourceMotion:
    """The source-only inputs of the dense motion network, computed once per source image.

    image: (1, C, h, w) the anti-aliased, downsampled source; heatmaps: (1, 5K, h, w) Gaussians of its keypoints;
    keypoints: (1, 5K, 2); grid: (h, w, 2) the identity grid.
    """

    image: torch.Tensor
    heatmaps: torch.Tensor
    keypoints: torch.Tensor
    grid: torch.Tensor


@dataclass(frozen=True)
class DenseMotion:
    """The dense motion network's outputs for N driving frames (h, w: the network's resolution).

    deformation:     (N, h, w, 2) the optical flow, a ``grid_sample`` grid in source coordinates (Eq. 6).
    occlusion:       the masks in (0, 1), coarsest first: (N, 1, h/2, w/2), (N, 1, h, w), then up to the frame size
                     with ``multi_mask``; one (N, 1, h, w) mask without.
    contribution:    (N, K + 1, h, w) the softmax weights of the transformations (background first).
    transformations: (N, K + 1, h, w, 2) the background grid then the K TPS grids.
    deformed_source: (N, K + 1, C, h, w) the downsampled source warped by each transformation.
    """

    deformation: torch.Tensor
    occlusion: list[torch.Tensor]
    contribution: torch.Tensor
    transformations: torch.Tensor
    deformed_source: torch.Tensor


def _float32(tensor: torch.Tensor):
    """A context in which ``tensor``'s device runs without autocast (geometry needs float32 precision)."""
    return torch.autocast(tensor.device.type, enabled=False)


class DenseMotionNetwork(nn.Module):
    """Optical flow and occlusion masks from the source and the keypoints (paper Fig. 2).

    Input of the hourglass: 5K + 1 heatmap channels (a zero channel, then driving minus source Gaussians of
    variance ``kp_variance``) and the (K + 1) * C channels of the downsampled source warped by each transformation.
    ``maps``: 7x7 convolution to the K + 1 contribution logits. ``up``, ``occlusion``: log2(1 / scale_factor) more
    up blocks and one 7x7 convolution per occlusion mask (``multi_mask``), else a single mask.
    """

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_tps: int, num_channels: int,
                 scale_factor: float = 0.25, bg: bool = False, multi_mask: bool = True, kp_variance: float = 0.01):
        super().__init__()
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)
        self.scale_factor = scale_factor
        self.multi_mask = multi_mask
        self.num_tps = num_tps
        self.bg = bg
        self.kp_variance = kp_variance
        in_features = num_channels * (num_tps + 1) + num_tps * POINTS_PER_TPS + 1
        self.hourglass = Hourglass(block_expansion, in_features, num_blocks, max_features)
        widths = self.hourglass.out_channels
        self.maps = nn.Conv2d(widths[-1], num_tps + 1, kernel_size=(7, 7), padding=(3, 3))
        if multi_mask:
            self.up_nums = int(math.log(1 / scale_factor, 2))
            self.occlusion_num = OCCLUSION_MASKS
            self.up = nn.ModuleList(UpBlock2d(widths[-1] // 2**i, widths[-1] // 2**(i + 1))
                                    for i in range(self.up_nums))
            channels = [widths[-1 - i] for i in reversed(range(self.occlusion_num - self.up_nums))]
            channels += [widths[-1] // 2**(i + 1) for i in range(self.up_nums)]
        else:
            self.up_nums, self.occlusion_num = 0, 1
            channels = [widths[-1]]
        self.occlusion = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=(7, 7), padding=(3, 3)) for c in channels)

    def prepare(self, source: torch.Tensor, kp_source: torch.Tensor) -> SourceMotion:
        """The source-only work: source (1, C, H, W), its keypoints (1, 5K, 2)."""
        with _float32(source):
            image = self.down(source) if self.scale_factor != 1 else source
            height, width = image.shape[2:]
            heatmaps = gaussian_heatmaps(kp_source, height, width, self.kp_variance)
            grid = coordinate_grid(height, width, device=image.device, dtype=image.dtype)
        return SourceMotion(image, heatmaps, kp_source, grid)

    def transformations(self, source: SourceMotion, kp_driving: torch.Tensor,
                        bg_param: torch.Tensor | None = None) -> torch.Tensor:
        """(N, K + 1, h, w, 2): the identity grid (or the background affine ``bg_param`` (N, 3, 3) applied to it),
        then the K TPS warps from the driving keypoints (N, 5K, 2) to the source's."""
        batch = kp_driving.shape[0]
        height, width = source.grid.shape[:2]
        groups = (batch, -1, POINTS_PER_TPS, 2)
        kp_source = source.keypoints.expand(batch, -1, -1)
        splines = ThinPlateSpline.fit(kp_driving.reshape(groups), kp_source.reshape(groups))
        warps = splines.grids(source.grid)
        background = source.grid.view(1, 1, height, width, 2).expand(batch, 1, height, width, 2)
        if bg_param is not None:
            ones = torch.ones(batch, 1, height, width, 1, dtype=background.dtype, device=background.device)
            homogeneous = torch.cat([background, ones], dim=-1)
            mapped = torch.matmul(bg_param.view(batch, 1, 1, 1, 3, 3), homogeneous.unsqueeze(-1)).squeeze(-1)
            background = mapped[..., :2] / mapped[..., 2:3]
        return torch.cat([background, warps], dim=1)

    def deform_source(self, source: SourceMotion, transformations: torch.Tensor) -> torch.Tensor:
        """(N, K + 1, C, h, w): the downsampled source sampled at each transformation (align_corners=True)."""
        batch, count, height, width = transformations.shape[:4]
        image = source.image
        images = image.unsqueeze(1).expand(batch, count, *image.shape[1:]).reshape(batch * count, -1, height, width)
        deformed = F.grid_sample(images, transformations.reshape(batch * count, height, width, 2),
                                 align_corners=True)
        return deformed.view(batch, count, -1, height, width)

    def forward(self, source: SourceMotion, kp_driving: torch.Tensor, bg_param: torch.Tensor | None = None,
                dropout_p: float = 0.0, dropout_generator: torch.Generator | None = None) -> DenseMotion:
        """The flow and masks for driving keypoints (N, 5K, 2) (the per-frame work). ``dropout_p`` > 0: the
        training-time dropout of whole TPS transformations (Eq. 7-8), drawn from ``dropout_generator`` (None: the
        global random source)."""
        batch = kp_driving.shape[0]
        with _float32(kp_driving):
            kp_driving = kp_driving.float()
            height, width = source.grid.shape[:2]
            heatmaps = gaussian_heatmaps(kp_driving, height, width, self.kp_variance) - source.heatmaps
            zeros = torch.zeros(batch, 1, height, width, dtype=heatmaps.dtype, device=heatmaps.device)
            transformations = self.transformations(source, kp_driving, bg_param)
            deformed = self.deform_source(source, transformations)
            features = torch.cat([zeros, heatmaps, deformed.view(batch, -1, height, width)], dim=1)
        outs = self.hourglass(self._hourglass_input(features))
        logits = self.maps(outs[-1])
        with _float32(kp_driving):
            logits = logits.float()
            contribution = (dropout_softmax(logits, dropout_p, dropout_generator) if dropout_p > 0
                            else F.softmax(logits, dim=1))
            weighted = transformations.permute(0, 1, 4, 2, 3) * contribution.unsqueeze(2)
            deformation = weighted.sum(dim=1).permute(0, 2, 3, 1)
        return DenseMotion(deformation, self.occlusion_masks(outs), contribution, transformations, deformed)

    def _hourglass_input(self, features: torch.Tensor) -> torch.Tensor:
        """The hourglass's input from the (N, 5K + 1 + (K + 1) C, h, w) float32 features (here: themselves)."""
        return features

    def occlusion_masks(self, outs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Sigmoid masks from the hourglass outputs ``outs``: the last few directly, then after each extra up
        block (``multi_mask``); only the last output without ``multi_mask``."""
        if not self.multi_mask:
            return [torch.sigmoid(self.occlusion[0](outs[-1]).float())]
        direct = self.occlusion_num - self.up_nums
        masks = [torch.sigmoid(self.occlusion[i](outs[i - direct]).float()) for i in range(direct)]
        hidden = outs[-1]
        for i, block in enumerate(self.up):
            hidden = block(hidden)
            masks.append(torch.sigmoid(self.occlusion[direct + i](hidden).float()))
        return masks


def dropout_softmax(logits: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Softmax over the K + 1 transformations in which each TPS transformation (not the background) is dropped
    for a whole sample with probability ``p`` (training only; paper Eq. 7-8). logits: (N, K + 1, h, w). The draws
    are made on ``generator``'s device (a CPU generator serves logits on any device)."""
    where = generator.device if generator is not None else logits.device
    draws = torch.rand(logits.shape[:2], generator=generator, device=where).to(logits.device)
    keep = (draws < 1 - p).to(logits.dtype)
    keep[:, 0] = 1
    weights = (logits - logits.max(1, keepdim=True).values).exp() * keep[:, :, None, None]
    return weights / (weights.sum(dim=1, keepdim=True) + 1e-6)
