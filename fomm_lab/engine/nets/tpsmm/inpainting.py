"""TPSMM's inpainting network (Zhao & Zhang, CVPR 2022, Sec. 3.3): the generator.

The source's encoder features are warped by the optical flow at each scale, masked by that scale's occlusion
mask, and decoded together; the last mask blends the result with the source warped at full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d


def _no_autocast(tensor: torch.Tensor):
    return torch.autocast(tensor.device.type, enabled=False)


class Warp:
    """The optical flow (N, h, w, 2) resized (bilinear, align_corners=True) to each feature size it is applied
    to, once per size; ``__call__`` samples (N or 1, C, H, W) features with it in float32 (align_corners=True)."""

    def __init__(self, deformation: torch.Tensor):
        self.deformation = deformation.float()
        size = (int(deformation.shape[1]), int(deformation.shape[2]))
        self._grids: dict[tuple[int, int], torch.Tensor] = {size: self.deformation}

    def grid(self, size: tuple[int, int]) -> torch.Tensor:
        if size not in self._grids:
            with _no_autocast(self.deformation):
                flow = self.deformation.permute(0, 3, 1, 2)
                resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=True)
                self._grids[size] = resized.permute(0, 2, 3, 1)
        return self._grids[size]

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        grid = self.grid((features.shape[2], features.shape[3]))
        if features.shape[0] != grid.shape[0]:
            features = features.expand(grid.shape[0], *features.shape[1:])
        with _no_autocast(grid):
            return F.grid_sample(features.float(), grid, align_corners=True)


class InpaintingNetwork(nn.Module):
    """(source (N or 1, C, H, W), deformation (N, h, w, 2), occlusion masks) -> (N, C, H, W) prediction in [0, 1].

    first: 7x7 SameBlock2d; down_blocks: ``num_down_blocks`` DownBlock2d (encoder features e_0 .. e_D at H .. H/2^D).
    Decoder, coarsest first: warp(e_D) * m_0, then per scale i two ResBlock2d (``resblock[2i]``, ``[2i+1]``), an
    UpBlock2d (``up_blocks[i]``) and the concatenation with warp(e_{D-1-i}) * m_{i+1} (at the finest scale, a sum
    with the un-occluded part instead); ``final``: 7x7 convolution and sigmoid; the prediction is that times
    (1 - m_last) plus the warped source times m_last.
    """

    def __init__(self, num_channels: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 multi_mask: bool = True, **_: object):
        super().__init__()
        self.num_down_blocks = num_down_blocks
        self.multi_mask = multi_mask
        self.num_channels = num_channels
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        down_blocks, up_blocks, resblocks = [], [], []
        for i in range(num_down_blocks):
            in_features = min(max_features, block_expansion * 2**i)
            out_features = min(max_features, block_expansion * 2**(i + 1))
            down_blocks.append(DownBlock2d(in_features, out_features, kernel_size=(3, 3), padding=(1, 1)))
            decoder_in = out_features if i == num_down_blocks - 1 else 2 * out_features
            up_blocks.append(UpBlock2d(decoder_in, in_features, kernel_size=(3, 3), padding=(1, 1)))
            resblocks += [ResBlock2d(decoder_in, kernel_size=(3, 3), padding=(1, 1)) for _ in range(2)]
        self.down_blocks = nn.ModuleList(down_blocks)
        self.up_blocks = nn.ModuleList(up_blocks[::-1])
        self.resblock = nn.ModuleList(resblocks[::-1])
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))

    def encode(self, source: torch.Tensor) -> list[torch.Tensor]:
        """[e_0 (N, be, H, W), e_1, ..., e_D]: the source's encoder features (once per source)."""
        maps = [self.first(source)]
        for block in self.down_blocks:
            maps.append(block(maps[-1]))
        return maps

    def _mask_at(self, mask: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``mask`` at ``features``' size (the single mask resized without ``multi_mask``)."""
        if not self.multi_mask and mask.shape[2:] != features.shape[2:]:
            mask = F.interpolate(mask, size=features.shape[2:], mode="bilinear", align_corners=True)
        return mask

    def _occlude(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return features * self._mask_at(mask, features)

    def _warped(self, warp: Warp, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A decoder input from the encoder: ``features`` warped by the flow and occluded by ``mask``."""
        return self._occlude(warp(features), mask)

    def _blend_skip(self, out: torch.Tensor, skip: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The finest level: the decoded map where the last mask says occluded, plus the warped skip map."""
        return out * (1 - last) + skip

    def mask_levels(self, maps: list[torch.Tensor], occlusion: list[torch.Tensor]) -> list[torch.Tensor]:
        """Maps of the encoder's levels (finest first, as :meth:`encode` gives them: e_0 .. e_D) each multiplied by
        the occlusion mask :meth:`decode` applies to that level: e_l by ``occlusion[D - l]`` with ``multi_mask``
        (the coarsest level by the first mask, the finest by the last), else by the single mask resized. For the
        training's warp loss (paper Sec. 3.5)."""
        depth = len(maps) - 1
        return [self._occlude(level_map, occlusion[depth - level if self.multi_mask else 0])
                for level, level_map in enumerate(maps)]

    def decode(self, source: torch.Tensor, encoded: list[torch.Tensor], deformation: torch.Tensor,
               occlusion: list[torch.Tensor]) -> torch.Tensor:
        """The prediction from the source (1 or N, C, H, W), its features (:meth:`encode`), the flow (N, h, w, 2)
        and the occlusion masks (the dense motion network's)."""
        warp = Warp(deformation)
        out = skip = self._warped(warp, encoded[-1], occlusion[0])
        for i in range(self.num_down_blocks):
            out = self.up_blocks[i](self.resblock[2 * i + 1](self.resblock[2 * i](out)))
            skip = self._warped(warp, encoded[-(i + 2)], occlusion[i + 1 if self.multi_mask else 0])
            if i < self.num_down_blocks - 1:
                out = torch.cat([out, skip], 1)
        last = occlusion[-1]
        if not self.multi_mask:
            last = F.interpolate(last, size=out.shape[2:], mode="bilinear", align_corners=True)
        out = self._blend_skip(out, skip, last)
        out = torch.sigmoid(self.final(out).float())
        return out * (1 - last) + warp(source) * last

    def forward(self, source: torch.Tensor, deformation: torch.Tensor, occlusion: list[torch.Tensor]) -> torch.Tensor:
        return self.decode(source, self.encode(source), deformation, occlusion)
