"""TPSMM's convolution blocks and hourglass (Zhao & Zhang, CVPR 2022, supplementary Sec. A).

They have FOMM's topology (:mod:`fomm_lab.engine.nets.blocks`) but normalise with ``InstanceNorm2d(affine=True)``
(no running statistics), and the hourglass decoder returns every up block's output. All blocks take and return
NCHW tensors; sub-module names (``conv``, ``norm``, ``conv1`` ...) are the authors' checkpoint keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else value


class SameBlock2d(nn.Module):
    """Convolution, instance norm, ReLU at constant resolution: (N, Cin, H, W) -> (N, Cout, H, W)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int] = 3,
                 padding: int | tuple[int, int] = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, _pair(kernel_size), padding=_pair(padding))
        self.norm = nn.InstanceNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """Convolution, instance norm, ReLU, 2x2 average pooling: (N, Cin, H, W) -> (N, Cout, H/2, W/2)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int] = 3,
                 padding: int | tuple[int, int] = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, _pair(kernel_size), padding=_pair(padding))
        self.norm = nn.InstanceNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock2d(nn.Module):
    """Nearest 2x up-sampling, convolution, instance norm, ReLU: (N, Cin, H, W) -> (N, Cout, 2H, 2W)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int] = 3,
                 padding: int | tuple[int, int] = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, _pair(kernel_size), padding=_pair(padding))
        self.norm = nn.InstanceNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2))))


class ResBlock2d(nn.Module):
    """Pre-activation residual block at constant shape: x + conv2(relu(norm2(conv1(relu(norm1(x))))))."""

    def __init__(self, in_features: int, kernel_size: int | tuple[int, int] = 3, padding: int | tuple[int, int] = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, _pair(kernel_size), padding=_pair(padding))
        self.conv2 = nn.Conv2d(in_features, in_features, _pair(kernel_size), padding=_pair(padding))
        self.norm1 = nn.InstanceNorm2d(in_features, affine=True)
        self.norm2 = nn.InstanceNorm2d(in_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def level_width(block_expansion: int, max_features: int, level: int) -> int:
    """Channels at hourglass level ``level``: min(max_features, block_expansion * 2^level)."""
    return min(max_features, block_expansion * 2**level)


class Encoder(nn.Module):
    """``num_blocks`` :class:`DownBlock2d`; returns [input, each block's output] (finest first)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else level_width(block_expansion, max_features, i),
                        level_width(block_expansion, max_features, i + 1))
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """``num_blocks`` :class:`UpBlock2d` with skip connections; returns every block's output concatenated
    with its skip (coarsest first; the last one is at the input resolution).

    ``out_channels``: the up blocks' input widths, then the last output's width (``block_expansion +
    in_features``); output j has ``out_channels[j + 1]`` channels.
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        blocks = []
        self.out_channels: list[int] = []
        for i in reversed(range(num_blocks)):
            factor = 1 if i == num_blocks - 1 else 2
            width = factor * level_width(block_expansion, max_features, i + 1)
            self.out_channels.append(width)
            blocks.append(UpBlock2d(width, level_width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_channels.append(block_expansion + in_features)

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        out = skips[-1]
        outs = []
        for i, block in enumerate(self.up_blocks):
            out = torch.cat([block(out), skips[-2 - i]], dim=1)
            outs.append(out)
        return outs


class Hourglass(nn.Module):
    """U-Net: (N, in_features, H, W) -> the decoder's outputs at H/2^(num_blocks-1) ... H (see :class:`Decoder`)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(x))
