"""Exact inference rewrites of the Thin-Plate Spline Motion Model's networks (eval mode only), reusing FOMM's.

What applies, and how (:mod:`.fuse` and :mod:`.conv` hold the rewrites themselves):

* the keypoint detector's ResNet-18 is left as the paper has it
  (:meth:`~fomm_lab.engine.tpsmm.model.TpsmmModel.inference_modules` says why);
* the dense motion and inpainting networks' blocks normalise with instance norm, whose statistics are the
  input's own: nothing folds into the convolutions, but each 3x3 convolution becomes a FusedConv (Winograd on
  maps from 32 px in float32 on the CPU, by :meth:`~.conv.FusedConv.default_form`) and the instance norm and
  ReLU follow it unchanged;
* their up blocks (nearest x2, then 3x3 convolution, instance norm, ReLU): the convolution of the up-sampled map
  is computed at low resolution as one 2x2 convolution with 4x the output channels and a pixel shuffle
  (:class:`~.fuse.SubpixelUpBlock`, no ReLU inside), then the instance norm over the whole (2H, 2W) output and
  the ReLU; the dense motion hourglass's wide blocks, on small maps, keep up-sampling + convolution
  (:data:`~.fuse.SUBPIXEL_MAX_KERNEL_ELEMENTS`), while the inpainting decoder's run on maps from 1/8 of the frame
  and are sub-pixel at any width;
* the dense motion network's anti-aliased 1/4 down-scaling: the Gaussian blur evaluated only where it is sampled
  (:class:`~.fuse.StridedBlur`).
* the occlusion masks' 7x7 convolutions to one channel and the final 7x7 convolution to three: FusedConvs, run
  by taps (:mod:`.taps`) unless tuned otherwise.

The instance norms of one image run as the batch norm they reduce to, in the map's own layout
(:func:`instance_norm`: no NCHW copy of a channels-last map). The ReLUs and the residual sums run in place on the
fresh outputs of the norms and convolutions (no new buffer each: fewer page faults on the large maps;
:func:`~.inplace.relu_`). The inpainting network's decoder (:class:`InpaintingInference`) keeps its maps in the
decoder's precision and layout, warping and occluding its reduced-precision skip maps in one weighted gather
(:mod:`.sample`); the dense motion network (:class:`DenseMotionInference`) gives its hourglass its input in that
precision and layout. :func:`convolutions_as_fused` gives the reduced precisions' float32 keypoint detector fused
convolutions. Everything else (the TPS solve, the flow, the other ``grid_sample`` calls, the AVD MLPs) is kept as
it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.blocks import AntiAliasInterpolation2d
from ..nets.tpsmm import blocks
from ..nets.tpsmm.dense_motion import DenseMotionNetwork
from ..nets.tpsmm.inpainting import InpaintingNetwork, Warp
from .conv import FusedConv, plain_ops, taps_conv
from .fuse import SUBPIXEL_MAX_KERNEL_ELEMENTS, StridedBlur, SubpixelUpBlock
from .inplace import relu_
from .sample import gather_applies, sample_channels_last


def instance_norm(norm: nn.InstanceNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for (N, C, H, W) ``x``. For one image (N = 1) the instance statistics are the batch statistics,
    so this is the batch norm that ``instance_norm`` itself calls after reshaping, called without the reshape: a
    channels-last (bfloat16) map is normalised in its own layout instead of being copied to NCHW and back. A
    float32 NCHW map on the CPU gets its statistics from :func:`channel_statistics` and is normalised by the batch
    norm's single inference pass. ONNX exports keep ``InstanceNormalization``."""
    if x.shape[0] != 1 or norm.track_running_stats or torch.onnx.is_in_onnx_export():
        return norm(x)
    if x.dtype == torch.float32 and x.device.type == "cpu" and x.is_contiguous():
        mean, var = channel_statistics(x)
        return F.batch_norm(x, mean, var, norm.weight, norm.bias, False, 0.0, norm.eps)
    return F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)


def channel_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance (C,) of each channel of a (1, C, H, W) contiguous map, in two passes: the mean,
    then the dot product of the centred values with themselves (no cancellation, whatever the mean). On the CPU
    this is about twice as fast as the batch norm's own single-pass statistics (docs/performance.md)."""
    flat = x.view(x.shape[1], -1)
    mean = flat.mean(1)
    centred = flat - mean[:, None]
    return mean, torch.linalg.vecdot(centred, centred) / flat.shape[1]


class ConvNorm(nn.Module):
    """A TPSMM Same/DownBlock2d: relu(instance_norm(conv(x))), then 2x2 average pooling for a down block; the
    convolution as a :class:`FusedConv`. (N, Cin, H, W) -> (N, Cout, H, W) or (N, Cout, H/2, W/2)."""

    def __init__(self, block: blocks.SameBlock2d | blocks.DownBlock2d):
        super().__init__()
        self.conv = FusedConv.from_conv(block.conv)
        self.norm = block.norm
        self.pool = isinstance(block, blocks.DownBlock2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = relu_(instance_norm(self.norm, self.conv(x)))
        return F.avg_pool2d(out, 2) if self.pool else out


class NormResBlock(nn.Module):
    """A TPSMM ResBlock2d with its convolutions as :class:`FusedConv`: x + conv2(relu(norm2(conv1(relu(norm1(x))))))."""

    def __init__(self, block: blocks.ResBlock2d):
        super().__init__()
        self.conv1, self.conv2 = FusedConv.from_conv(block.conv1), FusedConv.from_conv(block.conv2)
        self.norm1, self.norm2 = block.norm1, block.norm2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = relu_(instance_norm(self.norm1, x))
        out = self.conv2(relu_(instance_norm(self.norm2, self.conv1(out))))
        return out.add_(x) if out.dtype == x.dtype else out + x


class _ConvOnly:
    """An up block seen as (``conv``, no batch norm): what :class:`SubpixelUpBlock` rewrites."""

    def __init__(self, conv: nn.Conv2d):
        self.conv = conv
        self.norm = None


class SubpixelNormUpBlock(nn.Module):
    """A TPSMM UpBlock2d: the convolution of the nearest-x2 map at low resolution (:class:`SubpixelUpBlock`
    without ReLU: conv(up(x)) exactly), then instance norm over the (2H, 2W) output and ReLU.
    (N, Cin, H, W) -> (N, Cout, 2H, 2W)."""

    def __init__(self, block: blocks.UpBlock2d):
        super().__init__()
        self.up = SubpixelUpBlock(_ConvOnly(block.conv), relu=False)
        self.norm = block.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu_(instance_norm(self.norm, self.up(x)))


class NormUpBlock(nn.Module):
    """A wide TPSMM UpBlock2d on small maps: relu(instance_norm(conv(nearest_x2(x)))), conv as a FusedConv."""

    def __init__(self, block: blocks.UpBlock2d):
        super().__init__()
        self.conv = FusedConv.from_conv(block.conv)
        self.norm = block.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu_(instance_norm(self.norm, self.conv(F.interpolate(x, scale_factor=2))))


def up_block(block: blocks.UpBlock2d, *, large_maps: bool = False) -> nn.Module:
    """Sub-pixel unless its kernel is not 3x3 or the block is wide (as FOMM's :func:`~.fuse.fused_up_block`).

    ``large_maps``: the block runs on maps of 1/8 of the frame and more (the inpainting decoder's up blocks), where
    sub-pixel wins at any width (docs/performance.md), so the width limit does not apply."""
    cout, cin = block.conv.weight.shape[:2]
    wide = 16 * cout * cin > SUBPIXEL_MAX_KERNEL_ELEMENTS and not large_maps
    if wide or tuple(block.conv.kernel_size) != (3, 3) or tuple(block.conv.padding) != (1, 1):
        return NormUpBlock(block)
    return SubpixelNormUpBlock(block)


def _like(tensor: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``tensor`` in ``reference``'s dtype and memory layout (itself when it already is)."""
    channels_last = not reference.is_contiguous() and reference.is_contiguous(memory_format=torch.channels_last)
    return tensor.to(dtype=reference.dtype,
                     memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class InpaintingInference(InpaintingNetwork):
    """The inpainting network with its decoder (:meth:`InpaintingNetwork.decode`) in the decoder's own precision and
    layout: each warped, occluded encoder map comes in its encoder map's dtype and layout (a bfloat16 channels-last
    map stays one, instead of promoting the concatenation, the instance norms and the residual sums after it to
    float32 NCHW): on the CPU sampled and masked by :func:`~.sample.sample_channels_last`, elsewhere sampled in
    float32 and converted back; the masks and the last blend run in place on fresh maps. Float32: the same
    operations in the same order, bit for bit."""

    def _warped(self, warp: Warp, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = self._mask_at(mask, features)
        if gather_applies(features) and not plain_ops():
            return sample_channels_last(features, warp.grid((features.shape[2], features.shape[3])), mask)
        return _like(warp(features).mul_(mask), features)

    def _blend_skip(self, out: torch.Tensor, skip: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        keep = (1 - last).to(out.dtype)
        return out * keep + skip if out is skip else out.mul_(keep).add_(skip)


class DenseMotionInference(DenseMotionNetwork):
    """The dense motion network with its hourglass input, under autocast, already in the autocast precision and
    channels-last: each convolution would round it to that precision anyway, and the hourglass's last
    concatenation (its output and its input) then stays one reduced-precision channels-last map, instead of being
    promoted to a float32 map that the contribution, occlusion and up-block convolutions each convert again. The
    same values; float32 unchanged."""

    def _hourglass_input(self, features: torch.Tensor) -> torch.Tensor:
        device = features.device.type
        if not torch.is_autocast_enabled(device):
            return features
        return features.to(torch.get_autocast_dtype(device)).contiguous(memory_format=torch.channels_last)


REWRITES: dict[type[nn.Module], Callable[[Any], nn.Module]] = {
    blocks.SameBlock2d: ConvNorm, blocks.DownBlock2d: ConvNorm, blocks.ResBlock2d: NormResBlock,
    blocks.UpBlock2d: up_block,
}
"""The inference form of each TPSMM block class."""


def _fuse_children(module: nn.Module) -> None:
    for name in list(module._modules):
        child = module._modules[name]
        if child is None:
            continue
        rewrite = REWRITES.get(type(child))
        if rewrite is not None:
            setattr(module, name, rewrite(child))
        elif type(child) is AntiAliasInterpolation2d and StridedBlur.applies(child):
            setattr(module, name, StridedBlur(child))
        elif type(child) is nn.Conv2d and (narrow := taps_conv(child)) is not None:
            setattr(module, name, narrow)
        else:
            _fuse_children(child)


@torch.no_grad()
def convolutions_as_fused(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with each ``nn.Conv2d`` a :class:`FusedConv` of the same weights (nothing folded: the
    same convolutions, open to the exact forms of :data:`~.conv.FORMS` and to the tuner). For the reduced
    precisions' float32 keypoint detector (:meth:`~fomm_lab.engine.tpsmm.model.TpsmmModel.inference_modules`)."""
    fused = copy.deepcopy(module)
    _convolutions_as_fused(fused)
    return fused


def _convolutions_as_fused(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d:
            setattr(module, name, FusedConv.from_conv(child))
        else:
            _convolutions_as_fused(child)


@torch.no_grad()
def fuse_tpsmm(module: nn.Module) -> nn.Module:
    """A copy of a TPSMM network (eval mode) with every block in its exact inference form (see the module's
    description); ``module`` is unchanged. Equal to it up to float rounding (tests/engine/tpsmm)."""
    if module.training:
        raise ValueError("fuse_tpsmm needs a module in eval mode")
    fused = copy.deepcopy(module)
    if type(fused) is InpaintingNetwork:
        fused.up_blocks = nn.ModuleList(up_block(block, large_maps=True) for block in fused.up_blocks)
        fused.__class__ = InpaintingInference  # the same modules and state, the inference decoder
    elif type(fused) is DenseMotionNetwork:
        fused.__class__ = DenseMotionInference
    _fuse_children(fused)
    return fused.eval().requires_grad_(False)
