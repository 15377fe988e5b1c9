"""ResNet-18 (He et al., CVPR 2016), written here because there is no CPU torchvision.

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0`` ...,
``fc``), which is also the layout of the face parser's backbone (BiSeNet) and of the Thin-Plate Spline
Motion Model's keypoint detector and background predictor, so their checkpoints load with ``strict=True``.
Widths are a parameter: golden fixtures narrow them, and the loaders read them from the weights.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norms and an identity (or 1x1 strided projection) shortcut.

    (N, in_features, H, W) -> (N, out_features, H / stride, W / stride).
    """

    def __init__(self, in_features: int, out_features: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, out_features, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_features, out_features, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_features)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_features != out_features:
            self.downsample = nn.Sequential(nn.Conv2d(in_features, out_features, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class ResNet18(nn.Module):
    """The 18-layer residual network: a 7x7/2 stem, a 3x3/2 max pool, four stages of two :class:`BasicBlock`.

    widths: the four stages' channels (torchvision: 64, 128, 256, 512; the stem has ``widths[0]``).
    num_classes: size of the ``fc`` head after global average pooling, or None for no head.

    ``forward``: (N, in_channels, H, W) -> (N, num_classes) with a head, else the four stages' outputs at
    1/4, 1/8, 1/16 and 1/32 of the input size.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (64, 128, 256, 512), *, in_channels: int = 3,
                 num_classes: int | None = None):
        super().__init__()
        self.widths = tuple(widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        previous = widths[0]
        for index, width in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(previous, width, stride), BasicBlock(width, width)))
            previous = width
        self.fc = nn.Linear(widths[-1], num_classes) if num_classes is not None else None

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of ``layer1`` .. ``layer4``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor):
        outputs = self.stages(x)
        if self.fc is None:
            return outputs
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(outputs[-1], 1), 1))

    @staticmethod
    def widths_in(state: dict[str, torch.Tensor], prefix: str = "") -> tuple[int, int, int, int]:
        """The stage widths of a ResNet-18 state dict whose keys start with ``prefix``."""
        return tuple(int(state[f"{prefix}layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5))  # type: ignore
