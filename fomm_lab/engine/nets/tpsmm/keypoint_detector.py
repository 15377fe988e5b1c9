"""TPSMM's keypoint detector (Zhao & Zhang, CVPR 2022, Sec. 3.1): a ResNet-18 regressing K * 5 points."""

from __future__ import annotations

import torch
from torch import nn

from ..resnet import ResNet18
from .tps import POINTS_PER_TPS


def resnet_widths(base: int) -> tuple[int, int, int, int]:
    """The four stage widths of a ResNet-18 whose stem has ``base`` channels (torchvision: 64)."""
    return base, 2 * base, 4 * base, 8 * base


class KPDetector(nn.Module):
    """(N, 3, H, W) frames in [0, 1] (raw RGB, no mean/std normalisation) -> (N, K * 5, 2) keypoints (x, y) in
    (-1, 1): ``sigmoid(fc(resnet18(frame))) * 2 - 1``. Consecutive groups of 5 are the control points of one
    thin-plate spline. Global average pooling makes it work at any input size.

    fg_encoder: a torchvision-named ResNet-18 (``base_width`` 64 in the released models) whose ``fc`` outputs
    K * 5 * 2 values.
    """

    def __init__(self, num_tps: int, base_width: int = 64):
        super().__init__()
        self.num_tps = num_tps
        self.fg_encoder = ResNet18(resnet_widths(base_width), num_classes=num_tps * POINTS_PER_TPS * 2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        points = torch.sigmoid(self.fg_encoder(image)) * 2 - 1
        return points.view(image.shape[0], self.num_tps * POINTS_PER_TPS, -1)
