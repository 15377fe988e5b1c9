"""GFPGAN, clean architecture (``GFPGANv1Clean``), as GFPGANer builds it for v1.3 and v1.4.

Wang et al., "Towards Real-World Blind Face Restoration with Generative Facial Prior", CVPR 2021 (sec. 3,
Fig. 2): a degradation-removal U-Net gives (a) the latent codes W of a pretrained StyleGAN2 decoder
(sec. 3.2, "Generative Facial Prior and Latent Code Mapping") and (b) multi-resolution spatial features
that modulate the decoder by Channel-Split Spatial Feature Transform (sec. 3.3, eq. 3):
``F_output = concat(F_split0, F_split1 * alpha + beta)`` with (alpha, beta) predicted per resolution.

Topology (output size S, L = log2 S; ``U[r]`` the U-Net width, ``D[r]`` the decoder width, ``U = D/2`` for the
released models):
- ``conv_body_first`` 1x1 3 -> U[S], LeakyReLU(0.2); ``conv_body_down[k]``: residual blocks down to 4x4
  (3x3 conv, LeakyReLU, bilinear x0.5, 3x3 conv, LeakyReLU; skip: bilinear x0.5 then 1x1 conv);
  ``final_conv`` 3x3 + LeakyReLU.
- ``final_linear``: (U[4]*16) -> (2L-2) * style_dim: one latent per decoder layer (``different_w``).
- ``conv_body_up[k]``: the same residual blocks upwards (bilinear x2), each input being the previous feature
  plus the encoder feature of the same resolution; after each, ``condition_scale[k]``/``condition_shift[k]``
  (3x3, LeakyReLU, 3x3) give the SFT scale and shift, and ``toRGB[k]`` an intermediate image (training only).
- ``stylegan_decoder``: StyleGAN2 (clean variant) whose first conv of each resolution is followed by SFT on
  the second half of its channels (``sft_half``). Its mapping MLP (``style_mlp``) is loaded but unused
  (``input_is_latent``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .stylegan2 import CleanToRGB, StyleConv

__all__ = ["GFPGANConfig", "GFPGANv1Clean", "noise_shapes", "reference_channels"]


def reference_channels(channel_multiplier: int = 2, narrow: float = 1.0, size: int = 512) -> dict[int, int]:
    """The clean arch's width per resolution, ``int(v * narrow)``; the U-Net uses ``narrow / 2``."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: int(width * narrow) for res, width in base.items() if res <= size}


def _unet_reference() -> dict[int, int]:
    return reference_channels(2, 0.5)


@dataclass(frozen=True)
class GFPGANConfig:
    """GFPGANv1Clean's hyper-parameters (defaults: GFPGANer's v1.3/v1.4 model).

    ``decoder_channels``/``unet_channels`` map resolutions 4 .. out_size to widths. GFPGANer always builds the
    network with ``input_is_latent=True`` (the U-Net's codes go to the decoder without the mapping MLP), which
    is the only mode implemented.
    """

    out_size: int = 512
    num_style_feat: int = 512
    num_mlp: int = 8
    decoder_channels: Mapping[int, int] = field(default_factory=reference_channels)
    unet_channels: Mapping[int, int] = field(default_factory=_unet_reference)
    different_w: bool = True
    sft_half: bool = True

    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def num_layers(self) -> int:
        """Style convs (noise inputs) of the decoder: 2 L - 3."""
        return 2 * self.log_size - 3

    @property
    def num_latent(self) -> int:
        return 2 * self.log_size - 2

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> GFPGANConfig:
        """The hyper-parameters a GFPGANv1Clean state dict was built with, read from its shapes.

        Raises KeyError naming a missing tensor, ValueError for shapes no configuration gives.
        """
        prefix = "stylegan_decoder."
        num_mlp = sum(1 for key in state if re.fullmatch(r"stylegan_decoder\.style_mlp\.\d+\.weight", key))
        levels = sum(1 for key in state if re.fullmatch(r"stylegan_decoder\.to_rgbs\.\d+\.bias", key))
        if levels == 0:
            raise KeyError(f"{prefix}to_rgbs.0.bias")
        out_size = 2 ** (levels + 2)
        style_dim = int(state[f"{prefix}to_rgb1.modulated_conv.modulation.weight"].shape[1])
        decoder = {4: int(state[f"{prefix}constant_input.weight"].shape[1])}
        for level in range(levels):
            decoder[2 ** (level + 3)] = int(state[f"{prefix}style_convs.{2 * level}.modulated_conv.weight"].shape[1])
        unet = {out_size: int(state["conv_body_first.weight"].shape[0])}
        for index in range(levels):
            unet[out_size >> (index + 1)] = int(state[f"conv_body_down.{index}.conv2.weight"].shape[0])
        unet[4] = int(state["final_conv.weight"].shape[0])
        latent_width = int(state["final_linear.weight"].shape[0])
        num_latent = 2 * (levels + 2) - 2
        if latent_width not in (style_dim, num_latent * style_dim):
            raise ValueError(f"final_linear.weight has {latent_width} outputs; {style_dim} (one latent) or "
                             f"{num_latent * style_dim} ({num_latent} latents of {style_dim}) were expected")
        sft = int(state["condition_scale.0.2.weight"].shape[0])
        if sft not in (unet[8], 2 * unet[8]):
            raise ValueError(f"condition_scale.0.2.weight has {sft} outputs, neither {unet[8]} nor {2 * unet[8]}")
        sft_half = sft == unet[8]
        for res in (2 ** level for level in range(3, levels + 3)):
            width = unet[res] if sft_half else 2 * unet[res]
            if width != (decoder[res] // 2 if sft_half else decoder[res]):
                raise ValueError(f"the SFT conditions at {res}x{res} have {width} channels for a decoder layer of "
                                 f"{decoder[res]}")
        return cls(out_size=out_size, num_style_feat=style_dim, num_mlp=num_mlp, decoder_channels=decoder,
                   unet_channels=unet, different_w=latent_width != style_dim, sft_half=sft_half)


def noise_shapes(config: GFPGANConfig, batch: int = 1) -> list[tuple[int, int, int, int]]:
    """Shapes of the decoder's noise inputs in layer order: (batch, 1, r, r) for r = 4, 8, 8, 16, 16, ..."""
    return [(batch, 1, 2 ** ((index + 5) // 2), 2 ** ((index + 5) // 2)) for index in range(config.num_layers)]


class ResBlock(nn.Module):
    """Residual block with bilinear resampling by ``scale`` (0.5 down, 2 up). (N, I, H, W) -> (N, O, sH, sW)."""

    def __init__(self, in_channels: int, out_channels: int, scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.2)
        out = F.interpolate(out, scale_factor=self.scale, mode="bilinear", align_corners=False)
        out = F.leaky_relu(self.conv2(out), 0.2)
        skip = self.skip(F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False))
        return out + skip


class StyleGAN2GeneratorCSFT(nn.Module):
    """The clean StyleGAN2 generator with channel-split SFT after the first conv of every resolution.

    forward(latent (N, num_latent, D), conditions [scale_8, shift_8, scale_16, ...], noise [num_layers tensors
    (N or 1, 1, r, r)] or None for the stored ``noises.noise{i}``) -> (N, 3, S, S).
    """

    def __init__(self, config: GFPGANConfig) -> None:
        super().__init__()
        ch, dim = config.decoder_channels, config.num_style_feat
        mlp: list[nn.Module] = [nn.Identity()]  # NormStyleCode: parameter-free; the MLP is unused here
        for _ in range(config.num_mlp):
            mlp += [nn.Linear(dim, dim), nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*mlp)
        self.constant_input = _ConstantInput(ch[4])
        self.style_conv1 = StyleConv(ch[4], ch[4], dim)
        self.to_rgb1 = CleanToRGB(ch[4], dim, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for index, shape in enumerate(noise_shapes(config)):
            self.noises.register_buffer(f"noise{index}", torch.zeros(shape))
        in_channels = ch[4]
        for level in range(3, config.log_size + 1):
            out_channels = ch[2 ** level]
            self.style_convs.append(StyleConv(in_channels, out_channels, dim, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, dim))
            self.to_rgbs.append(CleanToRGB(out_channels, dim))
            in_channels = out_channels
        self.sft_half = config.sft_half

    def stored_noise(self) -> list[torch.Tensor]:
        """The checkpoint's noise buffers, (1, 1, r, r) each, in layer order."""
        return [buffer for _, buffer in sorted(self.noises.named_buffers(), key=lambda item: int(item[0][5:]))]

    def forward(self, latent: torch.Tensor, conditions: Sequence[torch.Tensor],
                noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        noise = self.stored_noise() if noise is None else noise
        out = self.style_conv1(self.constant_input(latent.shape[0]), latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            i = 2 * level + 1
            out = self.style_convs[2 * level](out, latent[:, i], noise[i])
            if i < len(conditions):
                scale, shift = conditions[i - 1], conditions[i]
                if self.sft_half:
                    same, modulated = torch.split(out, out.shape[1] // 2, dim=1)
                    out = torch.cat([same, modulated * scale + shift], dim=1)
                else:
                    out = out * scale + shift
            out = self.style_convs[2 * level + 1](out, latent[:, i + 1], noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip


class _ConstantInput(nn.Module):
    """The learned 4x4 input, ``weight`` (1, C, 4, 4), repeated over the batch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.repeat(batch, 1, 1, 1)


def _sft_branch(channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(channels, out_channels, 3, 1, 1))


class GFPGANv1Clean(nn.Module):
    """GFPGAN (clean arch). forward(x (N, 3, S, S) RGB in [-1, 1]) -> (image (N, 3, S, S), rgbs).

    ``rgbs``: the U-Net's intermediate images (N, 3, r, r), r = 8 .. S, when ``return_rgb`` (else empty).
    ``noise``: a list of ``num_layers`` tensors (N or 1, 1, r, r); None uses the checkpoint's buffers
    (the reference's ``randomize_noise=False``).
    """

    def __init__(self, config: GFPGANConfig | None = None) -> None:
        super().__init__()
        config = config or GFPGANConfig()
        self.config = config
        unet, size = config.unet_channels, config.out_size
        self.conv_body_first = nn.Conv2d(3, unet[size], 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = unet[size]
        for level in range(config.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_channels, unet[2 ** (level - 1)], 0.5))
            in_channels = unet[2 ** (level - 1)]
        self.final_conv = nn.Conv2d(in_channels, unet[4], 3, 1, 1)
        self.conv_body_up = nn.ModuleList()
        in_channels = unet[4]
        for level in range(3, config.log_size + 1):
            self.conv_body_up.append(ResBlock(in_channels, unet[2 ** level], 2))
            in_channels = unet[2 ** level]
        self.toRGB = nn.ModuleList(nn.Conv2d(unet[2 ** level], 3, 1) for level in range(3, config.log_size + 1))
        latents = config.num_latent if config.different_w else 1
        self.final_linear = nn.Linear(unet[4] * 16, latents * config.num_style_feat)
        self.stylegan_decoder = StyleGAN2GeneratorCSFT(config)
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for level in range(3, config.log_size + 1):
            width = unet[2 ** level]
            sft_width = width if config.sft_half else 2 * width
            self.condition_scale.append(_sft_branch(width, sft_width))
            self.condition_shift.append(_sft_branch(width, sft_width))

    def forward(self, x: torch.Tensor, noise: Sequence[torch.Tensor] | None = None,
                return_rgb: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        config = self.config
        feat = F.leaky_relu(self.conv_body_first(x), 0.2)
        skips: list[torch.Tensor] = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), 0.2)
        style = self.final_linear(feat.reshape(feat.shape[0], -1))
        if config.different_w:
            latent = style.reshape(style.shape[0], -1, config.num_style_feat)
        else:
            latent = style[:, None].repeat(1, config.num_latent, 1)
        conditions: list[torch.Tensor] = []
        rgbs: list[torch.Tensor] = []
        for index, (up, scale, shift) in enumerate(zip(self.conv_body_up, self.condition_scale,
                                                       self.condition_shift)):
            feat = up(feat + skips[index])
            conditions += [scale(feat), shift(feat)]
            if return_rgb:
                rgbs.append(self.toRGB[index](feat))
        return self.stylegan_decoder(latent, conditions, noise), rgbs

