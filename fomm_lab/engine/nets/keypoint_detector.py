"""Keypoint detector (paper Sec. 3.1 and supplementary A.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..keypoints import Keypoints
from .blocks import AntiAliasInterpolation2d, DownBlock2d, Hourglass, UpBlock2d, coordinate_grid
from .mobile import MobileDownBlock2d, MobileUpBlock2d, conv_stack


class KPDetector(nn.Module):
    """Predicts K keypoints and their jacobians from an image.

    An hourglass on the (anti-aliased, ``scale_factor``-downscaled) image gives K heatmaps;
    a softmax with ``temperature`` over each heatmap gives a distribution whose mean is the
    keypoint (x, y) in [-1, 1]. The jacobian head predicts 4 channels per jacobian map; each
    keypoint's jacobian is the heatmap-weighted sum of its map (one shared map when
    ``single_jacobian_map``). The fused inference form (:func:`~fomm_lab.engine.fast.fuse.fuse_for_inference`)
    replaces the head by one that applies its linear map after the weighted sum.

    ``mobile_net``: PaddleGAN's mobile topology (:mod:`.mobile`): depthwise-separable hourglass blocks,
    each 7x7 head replaced by three linear 3x3 convolutions, the 3x3 anti-alias kernel.

    Input (N, num_channels, H, W) in [0, 1] -> Keypoints(value (N, K, 2), jacobian (N, K, 2, 2)).
    """

    def __init__(
        self,
        block_expansion: int,
        num_kp: int,
        num_channels: int,
        max_features: int,
        num_blocks: int,
        temperature: float,
        estimate_jacobian: bool = False,
        scale_factor: float = 1,
        single_jacobian_map: bool = False,
        pad: int = 0,
        mobile_net: bool = False,
    ):
        super().__init__()
        blocks = (MobileDownBlock2d, MobileUpBlock2d) if mobile_net else (DownBlock2d, UpBlock2d)
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features, *blocks)
        features = self.predictor.out_filters

        def head(out_channels: int) -> nn.Module:
            if mobile_net:
                return conv_stack(features, out_channels, padding=pad, relu=False)
            return nn.Conv2d(features, out_channels, kernel_size=(7, 7), padding=pad)

        self.kp = head(num_kp)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = head(4 * self.num_jacobian_maps)
            # Identity jacobians at initialisation (only matters for untrained weights).
            convs = [m for m in self.jacobian.modules() if isinstance(m, nn.Conv2d)]
            for conv in convs:
                conv.weight.data.zero_()
            identity = torch.tensor([1, 0, 0, 1], dtype=torch.float32)
            convs[-1].bias.data.copy_(identity.repeat(self.num_jacobian_maps))
        else:
            self.jacobian = None
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor, mobile_net=mobile_net)

    def forward(self, x: torch.Tensor) -> Keypoints:
        if self.scale_factor != 1:
            x = self.down(x)
        features = self.predictor(x)
        logits = self.kp(features)
        n, k, h, w = logits.shape
        with torch.autocast(x.device.type, enabled=False):  # the softmax and weighted sums in float32 always
            heatmap = F.softmax(logits.view(n, k, -1).float() / self.temperature, dim=2).view(n, k, h, w)
            grid = coordinate_grid(h, w, device=heatmap.device, dtype=heatmap.dtype)
            value = torch.einsum("nkhw,hwc->nkc", heatmap, grid)
        if self.jacobian is None:
            return Keypoints(value, None)
        if getattr(self.jacobian, "takes_heatmaps", False):  # the inference form that pools first (the same
            jacobian = self.jacobian(features, heatmap)      # sums, reordered: fuse.PooledJacobianHead)
        else:
            maps = self.jacobian(features).float().view(n, self.num_jacobian_maps, 4, h, w)
            with torch.autocast(x.device.type, enabled=False):
                jacobian = torch.einsum("nkhw,nkchw->nkc", heatmap, maps.expand(n, k, 4, h, w))
        return Keypoints(value, jacobian.view(n, k, 2, 2))
