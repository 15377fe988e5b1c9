"""PaddleGAN's mobile FOMM topology (``mobile_net``: ``vox-mobile.pdparams``, 1.7 M parameters).

The same three networks as the paper's, with cheaper blocks:

* down / up blocks are depthwise-separable: a depthwise 3x3 convolution (one filter per channel,
  no bias), batch norm, ReLU, then a pointwise 1x1 convolution (no bias), batch norm, ReLU; the down
  block then average-pools 2x2, the up block first repeats pixels 2x (nearest);
* the generator's residual bottleneck is an inverted residual: pre-activation batch norm and ReLU,
  1x1 expansion to twice the channels with batch norm (no activation), depthwise 3x3 with batch norm
  and ReLU, 1x1 projection back with batch norm, plus the input;
* every 7x7 head (keypoints, jacobians, masks, occlusion, the generator's output) becomes three stacked
  3x3 convolutions: linear for the keypoint detector's heads, with ReLUs between them elsewhere; the
  generator's first 7x7 block becomes three 3x3 conv-BN-ReLU blocks without biases;
* the anti-alias filter before the keypoint detector and dense motion network is a fixed 3x3 Gaussian
  (sigma 0.25) instead of one sized by the scale (:class:`~.blocks.AntiAliasInterpolation2d`).

Sub-module names (``conv``, ``norm``, ``conv1``, ``norm1``, ``conv_pw`` ...) follow PaddleGAN's, so its
weights load by name. All blocks take and return NCHW tensors; their exact inference forms (batch norms
folded) are in :mod:`fomm_lab.engine.fast.mobile`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SameBlock2d


def _depthwise(channels: int, kernel_size, padding) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size=kernel_size, padding=padding, groups=channels, bias=False)


def _pointwise(in_features: int, out_features: int) -> nn.Conv2d:
    return nn.Conv2d(in_features, out_features, kernel_size=1, bias=False)


class MobileDownBlock2d(nn.Module):
    """Depthwise conv-BN-ReLU, pointwise conv-BN-ReLU, 2x2 average pooling:
    (N, Cin, H, W) -> (N, Cout, H/2, W/2)."""

    def __init__(self, in_features: int, out_features: int, kernel_size=3, padding=1):
        super().__init__()
        self.conv = _depthwise(in_features, kernel_size, padding)
        self.norm = nn.BatchNorm2d(in_features)
        self.conv1 = _pointwise(in_features, out_features)
        self.norm1 = nn.BatchNorm2d(out_features)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm(self.conv(x)))
        return self.pool(F.relu(self.norm1(self.conv1(out))))


class MobileUpBlock2d(nn.Module):
    """Nearest 2x up-sampling, depthwise conv-BN-ReLU, pointwise conv-BN-ReLU:
    (N, Cin, H, W) -> (N, Cout, 2H, 2W)."""

    def __init__(self, in_features: int, out_features: int, kernel_size=3, padding=1):
        super().__init__()
        self.conv = _depthwise(in_features, kernel_size, padding)
        self.conv1 = _pointwise(in_features, out_features)
        self.norm = nn.BatchNorm2d(in_features)
        self.norm1 = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2))))
        return F.relu(self.norm1(self.conv1(out)))


class MobileResBlock2d(nn.Module):
    """Inverted residual block, resolution and width preserved (the generator's mobile bottleneck):
    x + BN(pw_linear(relu(BN(dw(BN(pw(relu(BN(x)))))))), expanding to 2x the channels inside."""

    def __init__(self, in_features: int, kernel_size=3, padding=1):
        super().__init__()
        hidden = 2 * in_features
        self.conv_pw = _pointwise(in_features, hidden)
        self.conv_dw = _depthwise(hidden, kernel_size, padding)
        self.conv_pw_linear = _pointwise(hidden, in_features)
        self.norm1 = nn.BatchNorm2d(in_features)
        self.norm_pw = nn.BatchNorm2d(hidden)
        self.norm_dw = nn.BatchNorm2d(hidden)
        self.norm_pw_linear = nn.BatchNorm2d(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm_pw(self.conv_pw(F.relu(self.norm1(x))))
        out = F.relu(self.norm_dw(self.conv_dw(out)))
        return self.norm_pw_linear(self.conv_pw_linear(out)) + x


def conv_stack(in_features: int, out_features: int, *, padding: int, relu: bool) -> nn.Sequential:
    """Three 3x3 convolutions in_features -> in_features -> in_features -> out_features (with biases), the
    mobile replacement of a 7x7 head; ``relu`` puts a ReLU between them (indices 0, 2, 4), otherwise they are
    purely linear (indices 0, 1, 2). Spatial size shrinks by 2 per convolution when ``padding`` is 0."""
    layers: list[nn.Module] = []
    for i, out in enumerate((in_features, in_features, out_features)):
        if i and relu:
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(in_features, out, kernel_size=3, padding=padding))
    return nn.Sequential(*layers)


def mobile_first_block(num_channels: int, block_expansion: int) -> nn.Sequential:
    """The mobile generator's first block: three 3x3 conv-BN-ReLU blocks without conv biases,
    num_channels -> num_channels -> num_channels -> block_expansion, at full resolution."""
    return nn.Sequential(*(SameBlock2d(num_channels, out, kernel_size=3, padding=1, bias=False)
                           for out in (num_channels, num_channels, block_expansion)))


__all__ = ["MobileDownBlock2d", "MobileResBlock2d", "MobileUpBlock2d", "conv_stack", "mobile_first_block"]
