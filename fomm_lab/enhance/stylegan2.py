"""StyleGAN2 building blocks, in the two variants the face enhancers were trained with.

StyleGAN2: Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020.
- Equalized learning rate (Karras et al. 2018, sec. 4.1): weights are stored at unit scale and
  multiplied by ``1/sqrt(fan_in)`` (times ``lr_mul``) when used.
- Weight modulation and demodulation (sec. 2.2, eqs. 1-3):
  ``w'_ijk = s_i * w_ijk`` and ``w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)``; one weight per sample,
  applied as a grouped convolution.
- Noise inputs (sec. 2.2): a per-pixel term scaled by a learned strength.
- Skip-connection generator (sec. 4.1, Fig. 7b): ``ToRGB`` outputs summed over resolutions.

Variants (the differences are real and kept exact; the shared math is in the functions below):
- **Paddle** (PaddleGAN 2.1.0, a port of rosinality/stylegan2-pytorch, as GPEN uses it): equalized
  ``EqualLinear`` (weight stored (in, out)) and ``EqualConv2d``, ``FusedLeakyReLU`` (bias, LeakyReLU(0.2),
  times sqrt(2)), upsampling by a stride-2 transposed convolution followed by a [1,3,3,1] blur, ``ToRGB``
  skip upsampled by ``upfirdn2d``; noise *concatenated* to the features when ``is_concat``.
- **Clean** (BasicSR/GFPGAN ``stylegan2_clean_arch``): plain ``nn.Linear`` modulation, weights stored
  pre-scaled, bilinear upsampling (``F.interpolate``, ``align_corners=False``) before the convolution and for
  the ``ToRGB`` skip; ``StyleConv`` = ``modconv * sqrt(2) + strength * noise + bias`` then LeakyReLU(0.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .upfirdn import blur_kernel, upfirdn2d

__all__ = [
    "Blur", "CleanModulatedConv2d", "CleanToRGB", "ConcatNoiseInjection", "EqualConv2d", "EqualLinear",
    "FusedLeakyReLU", "PaddleModulatedConv2d", "PaddleToRGB", "StyleConv", "StyledConv", "Upsample",
    "fused_leaky_relu", "grouped_conv2d", "modulate", "pixel_norm",
]

SQRT2 = math.sqrt(2.0)
EPS = 1e-8


# -- shared math ---------------------------------------------------------------------------------------


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Normalise each style vector to unit RMS: ``x * rsqrt(mean(x^2) + 1e-8)`` over dim 1; x: (N, D)."""
    return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + EPS)


def modulate(weight: torch.Tensor, style: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """Per-sample modulated (and demodulated) weights, StyleGAN2 eqs. 1 and 3.

    weight: (1, O, I, k, k) (already scaled where the variant scales it); style: (N, I).
    Returns (N, O, I, k, k).
    """
    batch, in_channels = style.shape
    weight = weight * style.reshape(batch, 1, in_channels, 1, 1)
    if demodulate:
        demod = torch.rsqrt((weight * weight).sum([2, 3, 4]) + EPS)
        weight = weight * demod.reshape(batch, weight.shape[1], 1, 1, 1)
    return weight


def grouped_conv2d(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """Convolve each sample with its own weights. x: (N, I, H, W); weight: (N, O, I, k, k) -> (N, O, H', W')."""
    batch, out_channels, in_channels, kh, kw = weight.shape
    out = F.conv2d(x.reshape(1, batch * in_channels, *x.shape[2:]),
                   weight.reshape(batch * out_channels, in_channels, kh, kw), padding=padding, groups=batch)
    return out.reshape(batch, out_channels, *out.shape[2:])


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``LeakyReLU_0.2(x + bias) * sqrt(2)``, bias (C,) added along dim 1 (rosinality's fused op)."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, 0.2) * SQRT2


# -- Paddle variant (GPEN) ----------------------------------------------------------------------------


class EqualLinear(nn.Module):
    """Equalized linear layer, PaddleGAN layout: ``weight`` (in, out), ``bias`` (out,).

    ``y = x @ (weight * lr_mul / sqrt(in)) + bias * lr_mul``, then :func:`fused_leaky_relu` (bias inside)
    when ``activate``. x: (N, in) -> (N, out).
    """

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_dim, out_dim) / lr_mul)  # the reference's init
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ (self.weight * self.scale)
        if self.activate:
            return fused_leaky_relu(out, self.bias * self.lr_mul)
        return out + self.bias * self.lr_mul


class EqualConv2d(nn.Module):
    """Equalized convolution: ``conv2d(x, weight / sqrt(in * k * k), bias)``; weight (out, in, k, k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class FusedLeakyReLU(nn.Module):
    """Bias, LeakyReLU(0.2), gain sqrt(2); ``bias`` (C,)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass filter (``upfirdn2d`` with ``up = down = 1``); its kernel is not part of the state dict."""

    kernel: torch.Tensor

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel(taps, gain), persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x zero-insertion upsampling and FIR filter; ``kernel`` (4, 4) is a persistent buffer (as saved)."""

    kernel: torch.Tensor

    def __init__(self, taps: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel(taps, factor * factor))
        self.factor = factor
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class PaddleModulatedConv2d(nn.Module):
    """Modulated convolution, PaddleGAN/rosinality variant. weight (1, O, I, k, k) at unit scale.

    forward(x (N, I, H, W), style (N, D)) -> (N, O, H, W), or (N, O, 2H, 2W) with ``upsample``: a stride-2
    transposed convolution (output 2H+1 for k = 3) followed by the [1,3,3,1] blur (gain 4, pad (1, 1)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.padding = kernel_size // 2
        self.upsample = upsample
        self.blur: Blur | None = None
        if upsample:
            factor = 2
            p = (len(taps) - factor) - (kernel_size - 1)
            self.blur = Blur(taps, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), gain=factor * factor)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        weight = modulate(self.scale * self.weight, self.modulation(style), self.demodulate)
        if self.blur is None:
            return grouped_conv2d(x, weight, self.padding)
        batch, out_channels, in_channels, kh, kw = weight.shape
        # transposed convolution weights are (in, out/groups, kh, kw): one group per sample
        weight = weight.transpose(1, 2).reshape(batch * in_channels, out_channels, kh, kw)
        out = F.conv_transpose2d(x.reshape(1, batch * in_channels, *x.shape[2:]), weight, stride=2, groups=batch)
        return self.blur(out.reshape(batch, out_channels, *out.shape[2:]))


class ConcatNoiseInjection(nn.Module):
    """GPEN's noise input: ``cat([x, weight * noise], dim=1)`` (PaddleGAN ``NoiseInjection(is_concat=True)``).

    x: (N, C, H, W); noise: (N, C', H, W) (GPEN feeds encoder features) -> (N, C + C', H, W).
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.weight * noise], dim=1)


class StyledConv(nn.Module):
    """Modulated conv, concatenated noise, fused LeakyReLU over ``2 * out_channels`` (GPEN's ``is_concat``)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False,
                 taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = PaddleModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample, taps=taps)
        self.noise = ConcatNoiseInjection()
        self.activate = FusedLeakyReLU(out_channels * 2)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class PaddleToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) plus bias; adds the upsampled previous RGB (``skip``)."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.upsample = Upsample(taps) if upsample else None
        self.conv = PaddleModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None and self.upsample is not None:
            out = out + self.upsample(skip)
        return out


# -- Clean variant (GFPGAN) ---------------------------------------------------------------------------


class CleanModulatedConv2d(nn.Module):
    """Modulated convolution, BasicSR clean variant: weight (1, O, I, k, k) stored pre-scaled,
    modulation ``nn.Linear(style_dim, I)``; ``upsample`` resizes the input bilinearly by 2 first.

    forward(x (N, I, H, W), style (N, D)) -> (N, O, H, W) or (N, O, 2H, 2W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.modulation = nn.Linear(style_dim, in_channels)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
                                   / math.sqrt(in_channels * kernel_size * kernel_size))  # the clean arch's init
        self.demodulate = demodulate
        self.upsample = upsample
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        weight = modulate(self.weight, self.modulation(style), self.demodulate)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return grouped_conv2d(x, weight, self.padding)


class StyleConv(nn.Module):
    """``LeakyReLU_0.2(modconv(x) * sqrt(2) + weight * noise + bias)``; noise (N or 1, 1, H, W), bias (1, O, 1, 1)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.modulated_conv = CleanModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.modulated_conv(x, style) * SQRT2
        out = out + self.weight * noise
        out = out + self.bias
        return F.leaky_relu(out, 0.2)


class CleanToRGB(nn.Module):
    """1x1 modulated conv to RGB plus bias; adds the previous RGB, bilinearly upsampled by 2 when ``upsample``."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        self.modulated_conv = CleanModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + skip
        return out
