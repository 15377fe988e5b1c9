"""Multi-scale discriminator of the ``-adv`` configs (paper Sec. 3.3 and supplementary A.4).

One pix2pix-style patch discriminator per scale of ``discriminator_params.scales``, each seeing the image
of its scale in the pyramid (optionally with the driving keypoints' Gaussian heatmaps as extra channels,
``use_kp``). A discriminator is ``num_blocks`` blocks of a 4x4 convolution without padding, instance
normalisation (not in the first block), LeakyReLU(0.2) and 2x2 average pooling (not in the last block),
then a 1x1 convolution giving the patch scores. ``sn`` wraps every convolution in spectral normalisation
(``torch.nn.utils.spectral_norm``: the state dict holds ``weight_orig``, ``weight_u``, ``weight_v``).

Module names are those of the official checkpoints (``discs.1.down_blocks.0.conv.weight_orig`` ...; the
scale 0.5 is named ``0-5``), so their ``discriminator`` entries load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.keypoints import Keypoints
from ..engine.nets.blocks import gaussian_heatmaps
from .params import DiscriminatorParams


def scale_name(scale: float) -> str:
    """The module name of a pyramid scale: ``1`` -> ``"1"``, ``0.5`` -> ``"0-5"`` (as in the yaml)."""
    return str(scale).replace(".", "-")


class DiscriminatorBlock(nn.Module):
    """Conv 4x4 (no padding), optional instance norm, LeakyReLU(0.2), optional 2x2 average pooling."""

    def __init__(self, in_features: int, out_features: int, *, norm: bool, pool: bool, sn: bool) -> None:
        super().__init__()
        conv = nn.Conv2d(in_features, out_features, kernel_size=4)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        return F.avg_pool2d(out, 2) if self.pool else out


class PatchDiscriminator(nn.Module):
    """(N, C [+ K], H, W) -> (feature maps of every block, (N, 1, h, w) patch scores)."""

    def __init__(self, params: DiscriminatorParams, num_channels: int, num_kp: int) -> None:
        super().__init__()

        def width(level: int) -> int:
            return min(params.max_features, params.block_expansion * 2**level)

        first = num_channels + (num_kp if params.use_kp else 0)
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(first if i == 0 else width(i), width(i + 1), norm=i != 0,
                               pool=i != params.num_blocks - 1, sn=params.sn)
            for i in range(params.num_blocks))
        conv = nn.Conv2d(width(params.num_blocks), 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if params.sn else conv
        self.use_kp = params.use_kp
        self.kp_variance = params.kp_variance

    def forward(self, x: torch.Tensor, kp: Keypoints | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        out = x
        if self.use_kp:
            if kp is None:
                raise ValueError("this discriminator (use_kp) needs the driving keypoints")
            heatmaps = gaussian_heatmaps(kp.value.to(x.dtype), x.shape[2], x.shape[3], self.kp_variance)
            out = torch.cat([out, heatmaps], dim=1)
        features = []
        for block in self.down_blocks:
            out = block(out)
            features.append(out)
        return features, self.conv(out)


class MultiScaleDiscriminator(nn.Module):
    """One :class:`PatchDiscriminator` per scale, in ``discs`` (named by :func:`scale_name`).

    forward(pyramid, kp): ``pyramid`` maps each scale to its (N, C, H*s, W*s) image; returns
    ``{scale: (feature maps, patch scores)}``.
    """

    def __init__(self, params: DiscriminatorParams, num_channels: int = 3, num_kp: int = 10) -> None:
        super().__init__()
        self.scales = tuple(params.scales)
        self.discs = nn.ModuleDict({scale_name(s): PatchDiscriminator(params, num_channels, num_kp)
                                    for s in self.scales})

    def forward(self, pyramid: dict[float, torch.Tensor],
                kp: Keypoints | None = None) -> dict[float, tuple[list[torch.Tensor], torch.Tensor]]:
        return {scale: self.discs[scale_name(scale)](pyramid[scale], kp) for scale in self.scales}
