"""Building blocks shared by the FOMM networks (paper, Sec. 3 and supplementary Sec. A).

All blocks take and return NCHW tensors. Names of sub-modules (``conv``, ``norm``, ``conv1`` ...)
are part of the checkpoint format and must not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def coordinate_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre-free coordinate grid in [-1, 1].

    Returns a (height, width, 2) tensor whose last axis is (x, y): x grows along the width,
    y along the height, both spanning exactly [-1, 1] from the first to the last pixel.
    """
    x = torch.arange(width, device=device, dtype=dtype)
    y = torch.arange(height, device=device, dtype=dtype)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    xx = x.view(1, -1).expand(height, width)
    yy = y.view(-1, 1).expand(height, width)
    return torch.stack([xx, yy], dim=-1)


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then nearest down-sampling by ``scale`` (anti-aliased resize).

    The Gaussian has sigma = (1/scale - 1)/2 and a square kernel of odd size 2*round(4*sigma)+1,
    stored as the buffer ``weight`` of shape (channels, 1, k, k) (depthwise convolution). PaddleGAN's
    mobile networks (``mobile_net``) use a fixed 3x3 kernel with sigma 0.25 instead.
    Input (N, channels, H, W) -> output (N, channels, H*scale, W*scale).
    """

    def __init__(self, channels: int, scale: float, mobile_net: bool = False):
        super().__init__()
        if mobile_net:
            sigma, size = 0.25, 3
        else:
            sigma = (1 / scale - 1) / 2
            size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        axis = torch.arange(size, dtype=torch.float32)
        gauss = torch.exp(-((axis - (size - 1) / 2) ** 2) / (2 * sigma**2))
        kernel = gauss[:, None] * gauss[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, size, size).clone())
        self.groups = channels
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, weight=self.weight.to(out.dtype), groups=self.groups)
        return F.interpolate(out, scale_factor=(self.scale, self.scale))


class SameBlock2d(nn.Module):
    """Convolution, batch norm, ReLU at constant resolution (the convolution has no bias in PaddleGAN's
    mobile networks)."""

    def __init__(self, in_features: int, out_features: int, kernel_size=3, padding=1, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, bias=bias)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """Convolution, batch norm, ReLU, 2x2 average pooling: (N, Cin, H, W) -> (N, Cout, H/2, W/2)."""

    def __init__(self, in_features: int, out_features: int, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock2d(nn.Module):
    """Nearest 2x up-sampling, convolution, batch norm, ReLU: (N, Cin, H, W) -> (N, Cout, 2H, 2W)."""

    def __init__(self, in_features: int, out_features: int, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2))))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv2(relu(bn2(conv1(relu(bn1(x))))))."""

    def __init__(self, in_features: int, kernel_size=3, padding=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def _width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class Encoder(nn.Module):
    """Hourglass encoder: ``num_blocks`` down blocks (``block``: DownBlock2d, or the mobile one); returns
    the input and every block's output."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int,
                 block: type[nn.Module] = DownBlock2d):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            block(
                in_features if i == 0 else _width(block_expansion, max_features, i),
                _width(block_expansion, max_features, i + 1),
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: up blocks (``block``: UpBlock2d, or the mobile one) with skip connections
    (concatenated along channels)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int,
                 block: type[nn.Module] = UpBlock2d):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            factor = 1 if i == num_blocks - 1 else 2
            blocks.append(
                block(
                    factor * _width(block_expansion, max_features, i + 1),
                    _width(block_expansion, max_features, i),
                )
            )
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for i, block in enumerate(self.up_blocks):
            out = torch.cat([block(out), skips[-2 - i]], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net style hourglass: (N, in_features, H, W) -> (N, block_expansion + in_features, H, W).

    ``down_block`` / ``up_block``: the encoder's and decoder's block classes (the mobile networks pass
    their depthwise-separable blocks, :mod:`fomm_lab.engine.nets.mobile`)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256,
                 down_block: type[nn.Module] = DownBlock2d, up_block: type[nn.Module] = UpBlock2d):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, down_block)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, up_block)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def inverse_2x2(matrices: torch.Tensor) -> torch.Tensor:
    """Inverses of (..., 2, 2) matrices in closed form, [[d, -b], [-c, a]] / (ad - bc): the same values as
    ``torch.inverse`` up to float rounding, cheaper for many tiny matrices, and exportable (ONNX has no
    matrix inverse)."""
    a, b = matrices[..., 0, 0], matrices[..., 0, 1]
    c, d = matrices[..., 1, 0], matrices[..., 1, 1]
    adjugate = torch.stack([torch.stack([d, -b], dim=-1), torch.stack([-c, a], dim=-1)], dim=-2)
    return adjugate / (a * d - b * c)[..., None, None]


def gaussian_heatmaps(value: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """Isotropic Gaussians centred on keypoints (paper Sec. 3.2, heatmap representation H_k).

    value: (N, K, 2) keypoints (x, y) in [-1, 1]. Returns (N, K, height, width):
    exp(-|z - p_k|^2 / (2 * variance)).
    """
    grid = coordinate_grid(height, width, device=value.device, dtype=value.dtype)
    diff = grid.view(1, 1, height, width, 2) - value.view(*value.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


__all__ = [
    "AntiAliasInterpolation2d",
    "DownBlock2d",
    "Hourglass",
    "ResBlock2d",
    "SameBlock2d",
    "UpBlock2d",
    "coordinate_grid",
    "gaussian_heatmaps",
    "inverse_2x2",
]
