"""BiSeNet face parser (Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic
Segmentation", ECCV 2018), in the variant of zllrunning's face-parsing.PyTorch (weights ``79999_iter.pth``,
trained on CelebAMask-HQ) that the part swap uses for its supervised masks.

That variant has no spatial path: the ResNet-18 stage at 1/8 resolution stands in for it (paper Sec. 3.1
describes the spatial path; its role is taken by ``layer2``). The context path (Sec. 3.2) refines the 1/16
and 1/32 stages with attention refinement modules (ARM, Fig. 2b) and a global-average context, the feature
fusion module (FFM, Fig. 2c) fuses the two paths, and a head predicts 19 classes at 1/8 resolution,
upsampled bilinearly (align_corners=True) to the input size. The two auxiliary heads of training
(``conv_out16``, ``conv_out32``, Sec. 3.3) are kept for the checkpoint's names and run only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ...engine.nets.resnet import ResNet18

PARSER_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                  "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
"""The parser's 19 classes in CelebAMask-HQ order (zllrunning's prepropess_data.py): eye_g = eyeglasses,
ear_r = earring, mouth = the inside of the mouth, neck_l = necklace."""

PARSER_MEAN = (0.485, 0.456, 0.406)
PARSER_STD = (0.229, 0.224, 0.225)
"""The ImageNet normalisation the parser was trained with, applied to RGB values in [0, 1]."""


@dataclass(frozen=True)
class BiSeNetWidths:
    """Channel counts: ``resnet`` the four ResNet-18 stages (the stem has the first), ``context`` the ARM and
    context-path outputs, ``fusion`` the FFM output (its attention squeezes to fusion // 4), ``head`` and
    ``aux_head`` the middle widths of the main and auxiliary heads. Defaults: the published model."""

    resnet: tuple[int, int, int, int] = (64, 128, 256, 512)
    context: int = 128
    fusion: int = 256
    head: int = 256
    aux_head: int = 64

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> BiSeNetWidths:
        """The widths of a BiSeNet state dict (KeyError when a tensor they are read from is absent)."""
        return cls(resnet=ResNet18.widths_in(state, "cp.resnet."),
                   context=int(state["cp.arm16.conv.conv.weight"].shape[0]),
                   fusion=int(state["ffm.convblk.conv.weight"].shape[0]),
                   head=int(state["conv_out.conv.conv.weight"].shape[0]),
                   aux_head=int(state["conv_out16.conv.conv.weight"].shape[0]))


class ConvBNReLU(nn.Module):
    """Convolution without bias, batch norm, ReLU (names ``conv``, ``bn``)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _global_average(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 1, 1) mean over the whole map."""
    return F.avg_pool2d(x, kernel_size=x.shape[2:])


class AttentionRefinement(nn.Module):
    """ARM (BiSeNet Fig. 2b): a 3x3 ConvBNReLU, then each channel scaled by a sigmoid gate computed from the
    global average (1x1 convolution ``conv_atten``, batch norm ``bn_atten``). (N, Cin, H, W) -> (N, Cout, H, W)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.conv = ConvBNReLU(in_features, out_features)
        self.conv_atten = nn.Conv2d(out_features, out_features, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        gate = torch.sigmoid(self.bn_atten(self.conv_atten(_global_average(features))))
        return features * gate


class ContextPath(nn.Module):
    """The context path (BiSeNet Sec. 3.2) on a ResNet-18 (``resnet``, torchvision names).

    (N, 3, H, W) -> (the 1/8 stage (N, resnet[1], H/8, W/8), the refined 1/16 context upsampled to 1/8
    (N, context, H/8, W/8), the refined 1/32 context upsampled to 1/16 (N, context, H/16, W/16)).
    Upsampling is nearest; the global-average context is added to the refined 1/32 stage.
    """

    def __init__(self, widths: BiSeNetWidths):
        super().__init__()
        self.resnet = ResNet18(widths.resnet)
        self.arm16 = AttentionRefinement(widths.resnet[2], widths.context)
        self.arm32 = AttentionRefinement(widths.resnet[3], widths.context)
        self.conv_head32 = ConvBNReLU(widths.context, widths.context)
        self.conv_head16 = ConvBNReLU(widths.context, widths.context)
        self.conv_avg = ConvBNReLU(widths.resnet[3], widths.context, kernel_size=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, feat8, feat16, feat32 = self.resnet.stages(x)
        context = self.conv_avg(_global_average(feat32))
        sum32 = self.arm32(feat32) + F.interpolate(context, size=feat32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(sum32, size=feat16.shape[2:], mode="nearest"))
        sum16 = self.arm16(feat16) + up32
        up16 = self.conv_head16(F.interpolate(sum16, size=feat8.shape[2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    """FFM (BiSeNet Fig. 2c): concatenation, 1x1 ConvBNReLU (``convblk``), then x + x * gate with the gate a
    sigmoid of two 1x1 convolutions (``conv1`` to out/4 channels, ReLU, ``conv2``) on the global average."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_features, out_features, kernel_size=1, padding=0)
        self.conv1 = nn.Conv2d(out_features, out_features // 4, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(out_features // 4, out_features, kernel_size=1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        features = self.convblk(torch.cat([spatial, context], dim=1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_average(features)))))
        return features * gate + features


class SegmentationHead(nn.Module):
    """3x3 ConvBNReLU (``conv``) then a 1x1 classifier without bias (``conv_out``)."""

    def __init__(self, in_features: int, mid_features: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_features, mid_features)
        self.conv_out = nn.Conv2d(mid_features, n_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.conv_out(self.conv(x)))


class BiSeNet(nn.Module):
    """The face parser: (N, 3, H, W) ImageNet-normalised RGB (H, W multiples of 32; 512x512 for the
    published weights) -> (N, n_classes, H, W) class logits (the fused head, upsampled bilinearly with
    align_corners=True). ``forward(x, aux=True)`` also returns the two auxiliary heads' logits.

    State-dict names are those of ``79999_iter.pth``: ``cp.*`` (context path), ``ffm.*``, ``conv_out.*``,
    ``conv_out16.*``, ``conv_out32.*``.
    """

    def __init__(self, n_classes: int = 19, widths: BiSeNetWidths | None = None):
        super().__init__()
        widths = widths or BiSeNetWidths()
        self.widths = widths
        self.n_classes = n_classes
        self.cp = ContextPath(widths)
        self.ffm = FeatureFusion(widths.resnet[1] + widths.context, widths.fusion)
        self.conv_out = SegmentationHead(widths.fusion, widths.head, n_classes)
        self.conv_out16 = SegmentationHead(widths.context, widths.aux_head, n_classes)
        self.conv_out32 = SegmentationHead(widths.context, widths.aux_head, n_classes)

    def forward(self, x: torch.Tensor, aux: bool = False):
        size = x.shape[2:]
        spatial, context8, context16 = self.cp(x)
        logits = self.conv_out(self.ffm(spatial, context8))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
        if not aux:
            return logits
        extra = [F.interpolate(head(features), size=size, mode="bilinear", align_corners=True)
                 for head, features in ((self.conv_out16, context8), (self.conv_out32, context16))]
        return logits, extra[0], extra[1]
