"""Exact algebraic rewrites of the networks for inference (eval mode only).

* BatchNorm folded into the convolution before it: conv(x) * g + h is one convolution with
  weights W * g and bias b * g + h, where g = gamma / sqrt(var + eps), h = beta - mean * g.
* Nearest 2x up-sampling followed by a 3x3 convolution (UpBlock2d) computed at low resolution:
  each of the four output phases (row parity a, column parity b) sees only a 2x2 neighbourhood
  of the low-resolution input, with kernel R_a W R_b^T where R_0 = [[1,0,0],[0,1,1]] and
  R_1 = [[1,1,0],[0,0,1]] sum the taps that fall on the same input pixel. The four phase kernels are
  one 2x2 convolution with 4x the output channels and padding 1, whose (H+1, W+1) output holds phase
  (a, b) at offset (a, b); one strided copy interleaves the phases (a pixel shuffle). 16 instead of 36
  multiply-adds per input pixel and channel pair, and the 4x larger up-sampled tensor is never built.
  Wide up-blocks on tiny maps keep up-sampling + the folded convolution (same memory as their weights).
* The anti-aliased down-scaling (Gaussian blur, then nearest sampling every 1/scale pixels) as one
  depthwise convolution with stride 1/scale and zero padding: the blur is evaluated only where it is
  sampled (16x fewer operations at scale 1/4; the same sums, so the same values).
* The keypoint detector's jacobian head (a linear 7x7 convolution J = W * F + b) applied after the
  heatmap-weighted sum: sum_z H_k(z) J_k(z) = W_k . (sum_z H_k(z) F(z + .)) + b_k, because the
  heatmaps sum to 1 (:class:`PooledJacobianHead`; 4x fewer operations for K jacobian maps).
* In float32 on the CPU, 3x3 and 2x2 convolutions on large enough inputs by Winograd's minimal
  filtering (:class:`~.conv.FusedConv`, once :func:`enable_winograd` has allowed it).
* The convolutions to one to a few channels (the occlusion masks, the generator's final layer) as
  :class:`~.conv.FusedConv`, which computes them by taps (:mod:`.taps`) unless tuned otherwise.

Results equal the original networks up to float rounding (tests/engine/test_fuse.py bounds the difference).
The rewrites are looked up by block class (:data:`REWRITES`, with PaddleGAN's mobile blocks from :mod:`.mobile`):
the networks in :mod:`fomm_lab.engine.nets` know nothing of their inference forms.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...device import CpuInfo
from ..nets.blocks import AntiAliasInterpolation2d, DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from ..nets.keypoint_detector import KPDetector
from .conv import FusedConv, fold_batchnorm, plain_ops, taps_conv, winograd_f2_by_default, winograd_onednn_by_default
from .inplace import relu_
from .mobile import MOBILE_REWRITES


class FusedSameBlock(nn.Module):
    """relu(conv'(x)), optionally followed by 2x2 average pooling (a folded Same/DownBlock2d)."""

    def __init__(self, block: SameBlock2d | DownBlock2d):
        super().__init__()
        self.conv = fold_batchnorm(block.conv, block.norm)
        self.pool = isinstance(block, DownBlock2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = relu_(self.conv(x))
        return F.avg_pool2d(out, 2) if self.pool else out


class FusedResBlock(nn.Module):
    """ResBlock2d with norm2 folded into conv1 and norm1 as a per-channel affine map:
    x + conv2(relu(conv1'(relu(x * scale + shift)))), scale = gamma / sqrt(var + eps), shift = beta - mean * scale.
    """

    def __init__(self, block: ResBlock2d):
        super().__init__()
        norm = block.norm1
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        self.register_buffer("scale", scale.detach().view(-1, 1, 1).clone())
        self.register_buffer("shift", (norm.bias - norm.running_mean * scale).detach().view(-1, 1, 1).clone())
        self.conv1 = fold_batchnorm(block.conv1, block.norm2)
        self.conv2 = FusedConv.from_conv(block.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = relu_(torch.addcmul(self.shift.to(x.dtype), x, self.scale.to(x.dtype)))
        out = relu_(self.conv1(out))
        return self.conv2(out) + x


class SubpixelUpBlock(nn.Module):
    """UpBlock2d (nearest x2, 3x3 conv, BN, ReLU) as one 2x2 convolution with 4x the output channels at low
    resolution and a pixel shuffle: (N, Cin, H, W) -> (N, Cout, 2H, 2W).

    ``channels_last``: give the output in channels-last memory layout (faster for the generator's final 7x7
    convolution with 3 output channels; the values are the same). A channels-last input (the reduced
    precisions) gives channels-last output anyway: the interleave then moves whole channel vectors, where an
    NCHW output would be gathered element by element, several times slower, eager and compiled. The output has
    the convolution's dtype (the reduced precision under autocast).

    relu=False: conv(nearest_x2(x)) alone (a block whose norm cannot be folded, as TPSMM's instance norm, applies
    its norm and ReLU to the output: :mod:`.tpsmm`); ``block.norm`` may then be None.
    """

    def __init__(self, block: UpBlock2d, *, relu: bool = True):
        super().__init__()
        conv = FusedConv.from_conv(block.conv, block.norm)
        self.relu = relu
        if tuple(conv.weight.shape[2:]) != (3, 3) or conv.padding != 1:
            raise ValueError("SubpixelUpBlock needs a 3x3 convolution with padding 1")
        w = conv.weight.detach()
        taps = torch.tensor([[[1.0, 0, 0], [0, 1, 1]], [[1.0, 1, 0], [0, 0, 1]]], dtype=w.dtype, device=w.device)
        # phase (a, b) kernel: R_a W R_b^T -> (2, 2, Cout, Cin, 2, 2), output channel (2a + b) * Cout + o
        kernels = torch.einsum("aik,ockl,bjl->abocij", taps, w, taps).reshape(4 * w.shape[0], w.shape[1], 2, 2)
        self.conv = FusedConv(kernels, conv.bias.detach().repeat(4), padding=1)
        self.out_channels = w.shape[0]
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        c = self.out_channels
        phases = self.conv(x)  # (N, 4C, H+1, W+1): phase (a, b) at offset (a, b)
        if self.relu:
            phases = relu_(phases)
        if plain_ops() or torch.compiler.is_compiling():  # standard operators (the compiler fuses them itself)
            if phases.is_contiguous(memory_format=torch.channels_last):
                nhwc = phases.permute(0, 2, 3, 1)
                rows = [torch.stack([nhwc[:, a : a + h, b : b + w, (2 * a + b) * c : (2 * a + b + 1) * c]
                                     for b in range(2)], dim=3) for a in range(2)]
                return torch.stack(rows, dim=2).reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
            picked = [phases[:, k * c : (k + 1) * c, k // 2 : k // 2 + h, k % 2 : k % 2 + w] for k in range(4)]
            return F.pixel_shuffle(torch.stack(picked, dim=2).reshape(n, 4 * c, h, w), 2)
        # out[n, o, 2i + a, 2j + b] = phases[n, (2a + b) C + o, i + a, j + b]: one strided view, one copy
        s0, s1, s2, s3 = phases.stride()
        view = phases.as_strided((n, c, h, 2, w, 2), (s0, s1, s2, 2 * c * s1 + s2, s3, c * s1 + s3),
                                 phases.storage_offset())
        last = self.channels_last or phases.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if last else torch.contiguous_format
        out = torch.empty((n, c, 2 * h, 2 * w), dtype=phases.dtype, device=x.device, memory_format=layout)
        out.as_strided((n, c, h, 2, w, 2), _interleaved_strides(out)).copy_(view)
        return out


class FusedUpBlock(nn.Module):
    """UpBlock2d with its batch norm folded: relu(conv'(nearest_x2(x))), (N, Cin, H, W) -> (N, Cout, 2H, 2W).

    The form kept for wide up-blocks (:data:`SUBPIXEL_MAX_KERNEL_ELEMENTS`): their sub-pixel kernels would take
    16/9 of the weights' memory, and they run on maps of a few pixels, where sub-pixel saves little."""

    def __init__(self, block: UpBlock2d):
        super().__init__()
        self.conv = fold_batchnorm(block.conv, block.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu_(self.conv(F.interpolate(x, scale_factor=2)))


SUBPIXEL_MAX_KERNEL_ELEMENTS = 1_100_000
"""Up-blocks whose sub-pixel kernels (4 Cout x Cin x 2 x 2) would exceed this many weights stay up-sample +
convolution (:class:`FusedUpBlock`): the widest blocks of the hourglasses' decoders run on 2x2 to 8x8 inputs, where
the 16/9 larger kernels would cost much more memory than the little time they save."""


def fused_up_block(block: UpBlock2d) -> nn.Module:
    """The inference form of an UpBlock2d: sub-pixel (:class:`SubpixelUpBlock`) unless it is wide."""
    cout, cin = block.conv.weight.shape[:2]
    if 16 * cout * cin > SUBPIXEL_MAX_KERNEL_ELEMENTS or tuple(block.conv.kernel_size) != (3, 3):
        return FusedUpBlock(block)
    return SubpixelUpBlock(block)


def _interleaved_strides(out: torch.Tensor) -> tuple[int, ...]:
    """Strides of ``out`` (N, C, 2H, 2W) seen as (N, C, H, 2, W, 2)."""
    s0, s1, s2, s3 = out.stride()
    return (s0, s1, 2 * s2, s2, 2 * s3, s3)


class StridedBlur(nn.Module):
    """AntiAliasInterpolation2d with an integer down-scaling factor s = 1/scale as one depthwise convolution
    with stride s: the Gaussian blur evaluated only at the pixels nearest sampling keeps.
    (N, C, H, W) -> (N, C, floor(H * scale), floor(W * scale))."""

    def __init__(self, block: AntiAliasInterpolation2d):
        super().__init__()
        self.register_buffer("weight", block.weight.detach().clone())
        self.groups = block.groups
        self.scale = block.scale
        self.stride = round(1 / block.scale)
        self.padding = block.ka

    @staticmethod
    def applies(block: AntiAliasInterpolation2d) -> bool:
        inverse = 1 / block.scale
        return block.scale < 1 and block.ka == block.kb and abs(inverse - round(inverse)) < 1e-9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, padding=self.padding, groups=self.groups)
        h, w = math.floor(x.shape[2] * self.scale), math.floor(x.shape[3] * self.scale)
        return out[:, :, :h, :w]


class PooledJacobianHead(nn.Module):
    """The keypoint detector's jacobian head, applied after the heatmap-weighted sum.

    features (N, C, h0, w0), heatmaps (N, K, h, w) (softmax, each summing to 1) -> jacobians (N, K, 4):
    pooled[n, k] = sum_z H_k(z) F(z + d) for every tap d of the (kh, kw) kernel (a correlation of the
    features with the heatmap), then J_k = W_k . pooled[n, k] + b_k. Computed in float32.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or isinstance(conv.padding, str):
            raise ValueError("PooledJacobianHead needs a stride-1, undilated, ungrouped convolution")
        maps = conv.weight.shape[0] // 4
        self.weight = nn.Parameter(conv.weight.detach().float().reshape(maps, 4, -1).clone(), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().float().reshape(maps, 4).clone(), requires_grad=False)
        self.padding = tuple(conv.padding)
        self.kernel_size = tuple(conv.kernel_size)

    takes_heatmaps = True  # KPDetector calls it with (features, heatmaps)

    def forward(self, features: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
        n, c = features.shape[:2]
        k, h, w = heatmap.shape[1:]
        if plain_ops():  # the batch-grouped correlation does not export with a dynamic batch: the original order
            maps = self.weight.shape[0]
            weight = self.weight.to(features.dtype).reshape(maps * 4, c, *self.kernel_size)
            conv = F.conv2d(features, weight, self.bias.to(features.dtype).reshape(-1), padding=self.padding)
            dense = conv.float().view(n, maps, 4, h, w).expand(n, k, 4, h, w)
            return torch.einsum("nkhw,nkchw->nkc", heatmap, dense)
        with torch.autocast(features.device.type, enabled=False):
            f = features.float().transpose(0, 1).contiguous()  # (C, N, h0, w0): the batch is the group
            pooled = F.conv2d(f, heatmap.float().reshape(n * k, 1, h, w), padding=self.padding, groups=n)
            pooled = pooled.view(c, n, k, -1).permute(1, 2, 0, 3).reshape(n, k, -1)  # (N, K, C*kh*kw)
            weight, bias = self.weight.float(), self.bias.float()
            return torch.einsum("nkq,kjq->nkj", pooled, weight.expand(k, -1, -1)) + bias


REWRITES: dict[type[nn.Module], Callable[[Any], nn.Module]] = {
    SameBlock2d: FusedSameBlock, DownBlock2d: FusedSameBlock, UpBlock2d: fused_up_block, ResBlock2d: FusedResBlock,
    **MOBILE_REWRITES,
}
"""The inference form of each block class that has one (the anti-alias filter and the jacobian head are rewritten
where they qualify, below)."""


def _rewrite(child: nn.Module) -> nn.Module | None:
    """The inference form of one block, or None to keep it (and look inside)."""
    rewrite = REWRITES.get(type(child))
    if rewrite is not None:
        return rewrite(child)
    if type(child) is AntiAliasInterpolation2d:
        return StridedBlur(child) if StridedBlur.applies(child) else None
    if type(child) is nn.Conv2d:
        return taps_conv(child)
    return None


def _fuse_children(module: nn.Module) -> None:
    """Replace the blocks under ``module`` one at a time, so each original block can be freed at once."""
    for name in list(module._modules):
        child = module._modules[name]
        if child is None:
            continue
        replacement = _rewrite(child)
        if replacement is None:
            _fuse_children(child)
        else:
            setattr(module, name, replacement)
        del child, replacement
    if isinstance(module, KPDetector) and isinstance(module.jacobian, nn.Conv2d):
        if module.num_jacobian_maps > 1:  # with one shared map (4 outputs) the convolution is cheaper
            module.jacobian = PooledJacobianHead(module.jacobian)


@torch.no_grad()
def fuse_for_inference(module: nn.Module, *, inplace: bool = False) -> nn.Module:
    """``module`` (eval mode) with every block replaced by its exact fused form (:data:`REWRITES` and the
    rewrites above).

    inplace: rewrite ``module`` itself (each original block is freed as soon as it is replaced: the memory
    of the unfused network is not kept); otherwise a rewritten copy is returned and ``module`` is unchanged.
    """
    if module.training:
        raise ValueError("fuse_for_inference needs a module in eval mode")
    fused = module if inplace else copy.deepcopy(module)
    _fuse_children(fused)
    return fused.eval().requires_grad_(False)


def enable_winograd(module: nn.Module, cpu: CpuInfo | None = None) -> int:
    """Allow Winograd's algorithm in the float32 fused convolutions under ``module`` that can use it
    (:meth:`FusedConv.enable_winograd`; their transforms are made on first use), the wide ones in the tile-major
    form on a CPU (this one by default) where :func:`~.conv.winograd_onednn_by_default`; returns how many."""
    onednn = winograd_onednn_by_default(cpu)
    return sum(1 for m in module.modules() if isinstance(m, FusedConv) and m.enable_winograd(onednn))


def enable_winograd_f2(module: nn.Module, cpu: CpuInfo | None = None) -> int:
    """On a CPU (this one by default) where :func:`~.conv.winograd_f2_by_default`, let the untuned rule run
    Winograd's F(2x2, 3x3) on the wide bfloat16 3x3 fused convolutions under ``module``
    (:meth:`FusedConv.enable_winograd_f2`); returns how many (0 on other CPUs)."""
    if not winograd_f2_by_default(cpu):
        return 0
    return sum(1 for m in module.modules() if isinstance(m, FusedConv) and m.enable_winograd_f2())


def mark_channels_last_output(module: nn.Module) -> None:
    """Let the last up-block before each generator's final convolution give channels-last output."""
    up_blocks = getattr(module, "up_blocks", None)
    final = getattr(module, "final", None)
    if isinstance(up_blocks, nn.ModuleList) and len(up_blocks) and isinstance(up_blocks[-1], SubpixelUpBlock) \
            and isinstance(final, (nn.Conv2d, FusedConv)):
        up_blocks[-1].channels_last = True
