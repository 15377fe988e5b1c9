"""GPEN, as PaddleGAN 2.1.0 builds it for the First Order Motion app's face enhancement.

Yang et al., "GAN Prior Embedded Network for Blind Face Restoration in the Wild", CVPR 2021 (sec. 3,
Fig. 2): a U-shaped network whose decoder is a pretrained StyleGAN2 generator. The encoder's deepest
feature gives the latent code (through a fully connected layer); every encoder feature is fed to the decoder
layer of its resolution in place of StyleGAN2's noise (sec. 3.2), concatenated to the features, not added.

Topology (size S = 512 in PaddleGAN, log L = log2 S; ``C[r]`` the channel width at resolution r):
- encoder ``ecd0``: 1x1 conv 3 -> C[S] (equalized, fused LeakyReLU); ``ecd1 .. ecd{L-2}``: blur, 3x3
  stride-2 conv C[2r] -> C[r], fused LeakyReLU; the features run from S x S down to 4 x 4.
- ``final_linear``: equalized linear C[4]*16 -> style_dim with fused LeakyReLU: the latent z.
- ``generator``: StyleGAN2 (mapping MLP of ``n_mlp`` equalized layers with ``lr_mul`` 0.01 on the pixel-
  normalised z; constant 4x4 input; per resolution an upsampling and a plain StyledConv, each with the
  encoder feature of its resolution concatenated, and a ToRGB skip). Output: (N, 3, S, S) in about [-1, 1].
- ``generator.noises.noise_i``: buffers that the checkpoint may hold but that are never read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .stylegan2 import (
    Blur,
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    PaddleToRGB,
    StyledConv,
    pixel_norm,
)

__all__ = ["GPEN", "GPENConfig", "reference_channels"]

TAPS = (1, 3, 3, 1)
LR_MLP = 0.01
"""The mapping MLP's learning-rate multiplier: PaddleGAN's default, not recorded in the weights file."""


def reference_channels(channel_multiplier: int = 2, narrow: float = 1.0, size: int = 512) -> dict[int, int]:
    """PaddleGAN's width per resolution (``channels`` dict of GPEN and StyleGANv2Generator), each
    ``int(v * narrow)`` (yangxy/GPEN's ``narrow`` rule)."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: int(width * narrow) for res, width in base.items() if res <= size}


@dataclass(frozen=True)
class GPENConfig:
    """GPEN's hyper-parameters. ``channels`` maps each resolution 4 .. size to its width."""

    size: int = 512
    style_dim: int = 512
    n_mlp: int = 8
    channels: Mapping[int, int] = field(default_factory=reference_channels)
    lr_mlp: float = LR_MLP

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> GPENConfig:
        """The hyper-parameters a PaddleGAN GPEN state dict was built with, read from its shapes.

        Raises KeyError naming a tensor the layout needs and the state lacks.
        """
        n_mlp = sum(1 for key in state if re.fullmatch(r"generator\.style\.\d+\.weight", key))
        levels = sum(1 for key in state if re.fullmatch(r"generator\.to_rgbs\.\d+\.bias", key))
        if n_mlp == 0 or levels == 0:
            raise KeyError("generator.style.1.weight" if n_mlp == 0 else "generator.to_rgbs.0.bias")
        style_dim = int(state["final_linear.0.weight"].shape[1])
        channels = {4: int(state["generator.input.input"].shape[1])}
        for level in range(levels):
            channels[2 ** (level + 3)] = int(state[f"generator.convs.{2 * level}.conv.weight"].shape[1])
        return cls(size=2 ** (levels + 2), style_dim=style_dim, n_mlp=n_mlp, channels=channels)


class ConvLayer(nn.Sequential):
    """Encoder layer (PaddleGAN's StyleGAN2 discriminator ``ConvLayer``): [blur,] equalized conv without
    bias, fused LeakyReLU holding the bias. ``downsample``: blur pad (2, 2), then stride 2."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(TAPS) - 2) + (kernel_size - 1)
            layers.append(Blur(TAPS, pad=((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=2, padding=0, bias=False))
        else:
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False))
        layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class StyleGAN2ConcatGenerator(nn.Module):
    """PaddleGAN's ``StyleGANv2Generator(is_concat=True)``: the GPEN decoder.

    forward(z (N, style_dim), features [4x4, 8x8, ..., SxS] (N, C[r], r, r)) -> (N, 3, S, S).
    """

    def __init__(self, config: GPENConfig) -> None:
        super().__init__()
        ch, dim = config.channels, config.style_dim
        layers: list[nn.Module] = [nn.Identity()]  # PixelNorm: parameter-free, applied in forward
        layers += [EqualLinear(dim, dim, lr_mul=config.lr_mlp, activate=True) for _ in range(config.n_mlp)]
        self.style = nn.Sequential(*layers)
        self.input = _ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], dim, taps=TAPS)
        self.to_rgb1 = PaddleToRGB(ch[4] * 2, dim, upsample=False, taps=TAPS)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        num_layers = (config.log_size - 2) * 2 + 1
        for index in range(num_layers):
            res = 2 ** ((index + 5) // 2)
            self.noises.register_buffer(f"noise_{index}", torch.zeros(1, 1, res, res))
        in_channels = ch[4]
        for level in range(3, config.log_size + 1):
            out_channels = ch[2 ** level]
            self.convs.append(StyledConv(in_channels * 2, out_channels, dim, upsample=True, taps=TAPS))
            self.convs.append(StyledConv(out_channels * 2, out_channels, dim, taps=TAPS))
            self.to_rgbs.append(PaddleToRGB(out_channels * 2, dim, taps=TAPS))
            in_channels = out_channels

    def forward(self, z: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        w = self.style(pixel_norm(z))  # one latent for every layer (no mixing, no truncation)
        out = self.conv1(self.input(w.shape[0]), w, features[0])
        skip = self.to_rgb1(out, w)
        for level, to_rgb in enumerate(self.to_rgbs):
            feature = features[level + 1]  # both convs of a resolution take its encoder feature
            out = self.convs[2 * level](out, w, feature)
            out = self.convs[2 * level + 1](out, w, feature)
            skip = to_rgb(out, w, skip)
        return skip


class _ConstantInput(nn.Module):
    """The learned 4x4 input, ``input`` (1, C, 4, 4), repeated over the batch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class GPEN(nn.Module):
    """GPEN (PaddleGAN 2.1.0 layout). forward(x (N, 3, S, S) in [-1, 1], RGB) -> (N, 3, S, S) image.

    State dict names are PaddleGAN's (``generator.*``, ``ecd0`` .. ``ecd{L-2}``, ``final_linear.0``).
    """

    def __init__(self, config: GPENConfig | None = None) -> None:
        super().__init__()
        config = config or GPENConfig()
        self.config = config
        ch = config.channels
        self.generator = StyleGAN2ConcatGenerator(config)
        self.ecd0 = nn.Sequential(ConvLayer(3, ch[config.size], 1))
        in_channels = ch[config.size]
        for index, level in enumerate(range(config.log_size, 2, -1), start=1):
            out_channels = ch[2 ** (level - 1)]
            self.add_module(f"ecd{index}", nn.Sequential(ConvLayer(in_channels, out_channels, 3, downsample=True)))
            in_channels = out_channels
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, config.style_dim, activate=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for index in range(self.config.log_size - 1):
            x = getattr(self, f"ecd{index}")(x)
            features.append(x)
        z = self.final_linear(x.reshape(x.shape[0], -1))
        return self.generator(z, features[::-1])
