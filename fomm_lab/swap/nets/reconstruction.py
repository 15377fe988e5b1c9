"""The reconstruction module and the part swap's generator ("Motion-Supervised Co-Part Segmentation",
Siarohin et al., ICPR 2020, Sec. 3.2-3.3 and Sec. 4.3 "part swaps").

The target frame is reconstructed from the source: both are encoded, the source features are warped by the
motion of each part (Eq. 2-4), multiplied by a visibility map (Eq. 5), and decoded. For a part swap the
features are blended before decoding: the target's outside the mask, the warped source's inside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...engine.nets.blocks import (
    AntiAliasInterpolation2d,
    DownBlock2d,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    coordinate_grid,
    inverse_2x2,
)
from ...engine.nets.dense_motion import DenseMotionNetwork
from ...engine.nets.generator import warp
from .segmentation import Segments


class BlendDownsample(AntiAliasInterpolation2d):
    """Anti-aliased downscaling of a blend mask by an integer factor 1/scale (Sec. 4.3, supervised masks).

    The same Gaussian (buffer ``weight``, sigma = (1/scale - 1)/2, zero padding) and the same output pixels
    (the blurred value at (i/scale, j/scale), not at the block centre) as :class:`AntiAliasInterpolation2d`, but
    the blur is evaluated only there (a strided convolution): 64x fewer products for 512 -> 64.
    (N, channels, H, W) -> (N, channels, H*scale, W*scale).
    """

    def __init__(self, channels: int, scale: float):
        super().__init__(channels, scale)
        stride = round(1 / scale)
        if abs(stride * scale - 1) > 1e-9:
            raise ValueError(f"blend scale {scale} is not 1/n for a whole number n")
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        assert isinstance(weight, torch.Tensor)
        padded = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        return F.conv2d(padded, weight.to(x.dtype), stride=self.stride, groups=self.groups)


def part_motions(target: Segments, source: Segments, height: int, width: int) -> torch.Tensor:
    """Each part's motion from target to source coordinates (Sec. 3.2, Eq. 2-3), on a height x width grid.

    T_k(z) = A_s,k A_t,k^-1 (z - shift_t,k) + shift_s,k for part k (without affines: z - shift_t,k +
    shift_s,k); T_0(z) = z for the background. Returns (N, K+1, height, width, 2), (x, y) in [-1, 1].
    ``source`` may hold one frame for N target frames.
    """
    n, k = target.shift.shape[:2]
    grid = coordinate_grid(height, width, device=target.shift.device, dtype=target.shift.dtype)
    grid = grid.view(1, 1, height, width, 2)
    offsets = grid - target.shift.view(n, k, 1, 1, 2)
    if target.affine is not None and source.affine is not None:
        linear = torch.matmul(source.affine, inverse_2x2(target.affine))  # (N, K, 2, 2)
        offsets = torch.einsum("nkij,nkhwj->nkhwi", linear, offsets)
    moved = offsets + source.shift.view(-1, k, 1, 1, 2)
    return torch.cat([grid.expand(n, 1, height, width, 2), moved], dim=1)


def segment_deformation(target: Segments, source: Segments) -> torch.Tensor:
    """The dense motion of the segment model (Sec. 3.2, Eq. 4): the part motions weighted by the target's
    soft segmentation, D(z) = sum_k seg_t[k](z) T_k(z). Returns (N, h, w, 2) at the segmentation's size."""
    assert target.segmentation is not None
    h, w = target.segmentation.shape[2:]
    motions = part_motions(target, source, h, w)
    return torch.einsum("nkhw,nkhwc->nhwc", target.segmentation, motions)


def segment_visibility(target: Segments, source: Segments) -> torch.Tensor:
    """The visibility map (Sec. 3.3, Eq. 5): 1 - (parts of the source) * (background of the target), both
    taken at the same pixel (not warped). Returns (N, 1, h, w)."""
    assert target.segmentation is not None and source.segmentation is not None
    source_parts = source.segmentation[:, 1:].sum(dim=1, keepdim=True)
    target_background = 1 - target.segmentation[:, 1:].sum(dim=1, keepdim=True)
    return 1 - source_parts * target_background


class ReconstructionModule(nn.Module):
    """Encoder-decoder of the reconstruction module (supplementary: Johnson et al.'s architecture).

    encode: (N, num_channels, H, W) in [0, 1] -> (N, F, H / 2^d, W / 2^d) with d = num_down_blocks;
    decode: features of that shape -> (N, num_channels, H, W) in [0, 1] (bottleneck of residual blocks,
    up blocks, 7x7 ``final`` convolution, sigmoid). Names as in the checkpoints: ``first``, ``down_blocks``,
    ``up_blocks``, ``bottleneck`` (``r0`` ...), ``final`` -- the same as FOMM's generator without its dense
    motion network.
    """

    def __init__(self, num_channels: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 num_bottleneck_blocks: int, estimate_visibility: bool = False):
        super().__init__()

        def width(level: int) -> int:
            return min(max_features, block_expansion * 2**level)

        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        self.down_blocks = nn.ModuleList(DownBlock2d(width(i), width(i + 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1))
                                       for i in range(num_down_blocks))
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(num_down_blocks), kernel_size=(3, 3),
                                                           padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.estimate_visibility = estimate_visibility

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))


class PartSwapGenerator(ReconstructionModule):
    """The reconstruction module with the part swap's blending (Sec. 4.3).

    ``blend_downsample`` (a buffer ``blend_downsample.weight`` when ``blend_scale`` != 1): anti-aliased
    downscaling of a mask finer than the features (the face parser's 512x512 mask -> 64x64: blend_scale
    0.125, a 29x29 Gaussian of sigma 3.5, zero padding, every 8th pixel). ``dense_motion``: the keyword
    arguments of FOMM's :class:`~fomm_lab.engine.nets.dense_motion.DenseMotionNetwork` for the
    FOMM-aligned mode (``dense_motion_network.*``, from a FOMM checkpoint), or None.
    """

    def __init__(self, num_channels: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 num_bottleneck_blocks: int, estimate_visibility: bool = False, blend_scale: float = 1,
                 dense_motion: dict | None = None):
        super().__init__(num_channels, block_expansion, max_features, num_down_blocks, num_bottleneck_blocks,
                         estimate_visibility)
        self.blend_downsample: BlendDownsample | None = None
        if blend_scale != 1:
            self.blend_downsample = BlendDownsample(1, blend_scale)
        self.dense_motion_network: DenseMotionNetwork | None = None
        if dense_motion is not None:
            self.dense_motion_network = DenseMotionNetwork(num_channels=num_channels, **dense_motion)

    def mask_to_features(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """A (N, 1, H_m, W_m) blend mask at the features' (h, w) ``size``: unchanged when it already is (the
        segment model's masks), else through ``blend_downsample`` (the parser's 512x512 masks)."""
        if tuple(mask.shape[2:]) == tuple(size):
            return mask
        if self.blend_downsample is None:
            raise ValueError(f"a {tuple(mask.shape[2:])} mask does not fit {tuple(size)} features and this "
                             "generator has no blend_downsample")
        return self.blend_downsample(mask)

    def blend(self, enc_source: torch.Tensor, enc_target: torch.Tensor, deformation: torch.Tensor,
              visibility: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """Swap the masked part and decode (Sec. 4.3): F = enc_t (1 - M) + (warp(enc_s, D) V) M.

        enc_source: (1 or N, F, h, w) source features; enc_target: (N, F, h, w) target features;
        deformation D: (N, h, w, 2) target -> source coordinates; visibility V: (N, 1, h', w') or None;
        mask M: (1 or N, 1, h, w) in [0, 1] in target coordinates (see :meth:`mask_to_features`; a mask in
        source coordinates is first warped by D with :func:`~fomm_lab.engine.nets.generator.warp`).
        Returns the swapped frames (N, num_channels, H, W) in [0, 1].
        """
        n = enc_target.shape[0]
        warped = warp(enc_source.expand(n, -1, -1, -1), deformation)
        if self.estimate_visibility and visibility is not None:
            if visibility.shape[2:] != warped.shape[2:]:
                visibility = F.interpolate(visibility, size=warped.shape[2:], mode="bilinear")
            warped = warped * visibility.to(warped.dtype)
        mask = mask.to(warped.dtype)
        return self.decode(enc_target * (1 - mask) + warped * mask)
