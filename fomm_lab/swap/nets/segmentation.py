"""The segmentation module of "Motion-Supervised Co-Part Segmentation" (Siarohin et al., ICPR 2020, Sec. 3.1).

An hourglass on the anti-aliased, downscaled frame predicts, at its resolution (64x64 for 256x256 frames):

- the soft part segmentation: a softmax over K+1 channels (channel 0 the background, 1..K the parts);
- each part's translation ("shift", Sec. 3.1): the mean position of a heatmap, the spatial softmax of the
  part's logits divided by a temperature;
- each part's 2x2 linear map ("affine", the first-order term of the part motion, Eq. 2-3): four channels per
  part pooled with that same heatmap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...engine.keypoints import Keypoints
from ...engine.nets.blocks import AntiAliasInterpolation2d, Hourglass, coordinate_grid


@dataclass(frozen=True)
class Segments:
    """What the segmentation module says about a batch of frames.

    shift:        (N, K, 2) part positions (x, y) in [-1, 1].
    affine:       (N, K, 2, 2) part linear maps [[a, b], [c, d]] acting on (x, y) column vectors, or None
                  for a model without ``estimate_affine_part``.
    segmentation: (N, K+1, h, w) part probabilities (softmax over channels; 0 = background), or None for
                  a module built without its segmentation head (the keypoints of a FOMM checkpoint).
    """

    shift: torch.Tensor
    affine: torch.Tensor | None
    segmentation: torch.Tensor | None

    @property
    def keypoints(self) -> Keypoints:
        """The shifts and affines as FOMM keypoints (value, jacobian), for the dense motion network."""
        return Keypoints(self.shift, self.affine)


class SegmentationModule(nn.Module):
    """Part segmentation, shifts and affines of (N, num_channels, H, W) frames in [0, 1] -> :class:`Segments`.

    Topology (names as in the published checkpoints): ``down`` (Gaussian anti-aliasing then every
    1/scale_factor-th pixel; a buffer), ``predictor`` (hourglass, output block_expansion + num_channels
    channels), and 7x7 convolution heads with padding 3: ``shift`` (K), ``affine`` (4K, with
    ``estimate_affine_part``) and ``segmentation`` (K+1, unless ``segmentation=False``).
    """

    def __init__(self, block_expansion: int, num_segments: int, num_channels: int, max_features: int,
                 num_blocks: int, temperature: float, estimate_affine_part: bool = False, scale_factor: float = 1,
                 segmentation: bool = True):
        super().__init__()
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        features = self.predictor.out_filters
        self.num_segments = num_segments
        self.shift = nn.Conv2d(features, num_segments, kernel_size=(7, 7), padding=(3, 3))
        self.affine: nn.Conv2d | None = None
        if estimate_affine_part:
            affine = nn.Conv2d(features, 4 * num_segments, kernel_size=(7, 7), padding=(3, 3))
            nn.init.zeros_(affine.weight)  # identity maps at initialisation, as the authors initialise them
            affine.bias = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(num_segments))
            self.affine = affine
        self.segmentation: nn.Conv2d | None = None
        if segmentation:
            self.segmentation = nn.Conv2d(features, num_segments + 1, kernel_size=(7, 7), padding=(3, 3))
        self.temperature = temperature
        self.scale_factor = scale_factor
        self.down: AntiAliasInterpolation2d | None = None
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, x: torch.Tensor) -> Segments:
        if self.down is not None:
            x = self.down(x)
        features = self.predictor(x)
        segmentation = None
        if self.segmentation is not None:
            segmentation = F.softmax(self.segmentation(features).float(), dim=1)
        logits = self.shift(features).float()
        n, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(n, k, -1) / self.temperature, dim=2).view(n, k, h, w)
        grid = coordinate_grid(h, w, device=heatmap.device, dtype=heatmap.dtype)
        shift = (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))
        affine = None
        if self.affine is not None:
            maps = self.affine(features).float().reshape(n, k, 4, h, w)
            affine = (heatmap.unsqueeze(2) * maps).view(n, k, 4, -1).sum(dim=-1).view(n, k, 2, 2)
        return Segments(shift, affine, segmentation)
