"""The exact inference forms of PaddleGAN's mobile blocks (:mod:`fomm_lab.engine.nets.mobile`): their batch norms
folded into the convolutions before them (:func:`~.conv.fold_batchnorm`). :data:`MOBILE_REWRITES` maps each block
class to its form, for :func:`~.fuse.fuse_for_inference`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.mobile import MobileDownBlock2d, MobileResBlock2d, MobileUpBlock2d
from .conv import FusedConv, fold_batchnorm


class FusedSeparable(nn.Module):
    """A mobile down or up block with its batch norms folded:
    [nearest 2x] -> relu(depthwise'(x)) -> relu(pointwise'(.)) -> [2x2 average pooling]."""

    def __init__(self, depthwise: FusedConv, pointwise: FusedConv, *, upsample: bool, pool: bool):
        super().__init__()
        self.depthwise = depthwise
        self.pointwise = pointwise
        self.upsample = upsample
        self.pool = pool

    @classmethod
    def of(cls, block: MobileDownBlock2d | MobileUpBlock2d) -> FusedSeparable:
        up = isinstance(block, MobileUpBlock2d)
        return cls(fold_batchnorm(block.conv, block.norm), fold_batchnorm(block.conv1, block.norm1),
                   upsample=up, pool=not up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2)
        out = F.relu(self.pointwise(F.relu(self.depthwise(x))))
        return F.avg_pool2d(out, 2) if self.pool else out


class FusedInvertedResidual(nn.Module):
    """MobileResBlock2d with norm_pw, norm_dw and norm_pw_linear folded into the convolutions before them
    (norm1 acts on the residual stream itself and stays)."""

    def __init__(self, block: MobileResBlock2d):
        super().__init__()
        self.norm1 = block.norm1
        self.conv_pw = fold_batchnorm(block.conv_pw, block.norm_pw)
        self.conv_dw = fold_batchnorm(block.conv_dw, block.norm_dw)
        self.conv_pw_linear = fold_batchnorm(block.conv_pw_linear, block.norm_pw_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv_dw(self.conv_pw(F.relu(self.norm1(x)))))
        return self.conv_pw_linear(out) + x


MOBILE_REWRITES: dict[type[nn.Module], Callable[[Any], nn.Module]] = {
    MobileDownBlock2d: FusedSeparable.of, MobileUpBlock2d: FusedSeparable.of, MobileResBlock2d: FusedInvertedResidual,
}
"""The inference form of each mobile block class."""
