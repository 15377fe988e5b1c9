"""TPSMM's background motion predictor (Zhao & Zhang, CVPR 2022, Sec. 3.2): one affine transformation of the
background. The authors use it in training and reconstruction only; the demo's three modes do not."""

from __future__ import annotations

import torch
from torch import nn

from ..resnet import ResNet18
from .keypoint_detector import resnet_widths


class BGMotionPredictor(nn.Module):
    """(source (N, 3, H, W), driving (N, 3, H, W)) -> (N, 3, 3) affine matrices (last row [0, 0, 1]) mapping
    driving-frame coordinates to source-frame coordinates.

    bg_encoder: a torchvision-named ResNet-18 with a 6-channel stem (the two frames stacked) and a 6-output ``fc``,
    initialised to the identity (weight 0, bias [1, 0, 0, 0, 1, 0]).
    """

    def __init__(self, base_width: int = 64):
        super().__init__()
        self.bg_encoder = ResNet18(resnet_widths(base_width), in_channels=6, num_classes=6)
        fc = self.bg_encoder.fc
        assert fc is not None
        with torch.no_grad():
            fc.weight.zero_()
            fc.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        batch = source.shape[0]
        affine = self.bg_encoder(torch.cat([source, driving], dim=1)).view(batch, 2, 3)
        last = torch.tensor([0.0, 0.0, 1.0], dtype=affine.dtype, device=affine.device).expand(batch, 1, 3)
        return torch.cat([affine, last], dim=1)
