"""The fused convolution: a convolution with its batch norm folded in, run by Winograd's algorithm where that pays.

BatchNorm folded into the convolution before it: conv(x) * g + h is one convolution with weights W * g and
bias b * g + h, where g = gamma / sqrt(var + eps), h = beta - mean * g (eval mode only).

In float32 on the CPU, 3x3 and 2x2 convolutions on large enough inputs use Winograd's minimal filtering
(:mod:`.winograd`, once :func:`~fomm_lab.engine.fast.fuse.enable_winograd` has allowed it). Eagerly, each
kernel transform is made the first time its convolution gets such an input and kept, so a model only holds the
transforms its frame size uses; a compiled graph computes them per call instead and holds none.

Which exact form runs is, by default, the fixed rule below (Winograd between :data:`WINOGRAD_MIN_PIXELS` and
:data:`WINOGRAD_MAX_PIXELS` output pixels, or above the minimum for wide 3x3 layers, else oneDNN's direct
convolution). :mod:`.tune` replaces the rule by the form measured fastest on this machine for each input a
convolution gets (:attr:`FusedConv.forms`, :data:`FORMS`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...device import CpuInfo, cpu_info
from .taps import conv_by_taps, tap_rows, taps_shape_applies
from .winograd import TILE_FOR_KERNEL, WinogradPlan
from .winograd_f2 import conv3x3_f2, f2_kernels

WINOGRAD_MAX_KERNEL_ELEMENTS = 9_500_000
"""Largest transformed kernel (n*n*Cout*Cin floats) allowed by :meth:`FusedConv.enable_winograd`: up to a 3x3
512 -> 512 layer (36 MB; TPSMM's inpainting decoder runs four at 64x64, twice as fast by Winograd); the wider layers
of the hourglasses run at 8x8 or less, where Winograd does not pay, and would cost the most memory."""

WINOGRAD_MIN_PIXELS = 32 * 32
"""Winograd only on outputs of at least this many pixels (below, the tile transforms cost more than they save)."""

WINOGRAD_MAX_PIXELS = 96 * 96
"""... and at most this many, unless the layer is wide (:data:`WINOGRAD_WIDE_CHANNELS`): on larger maps of narrow
layers (the generator's 64-channel encoder at 256x256, the 2x2 phase kernels of the up-blocks) the tile transforms
cost as much time as they save."""

WINOGRAD_WIDE_CHANNELS = 128
"""3x3 convolutions with at least this many input channels use Winograd on maps of any size above the minimum
(TPSMM's decoder at 128x128: 256 channels 66 against 154 ms direct, 128 channels 25 against 41; the tile bands of
:data:`~.winograd.BAND_TILES` keep its memory to a few MB)."""


PACKED_MAX_PIXELS = 16 * 16
"""The tuner offers packed weights (``packed``, :meth:`FusedConv.packed_applies`) to convolutions on inputs of at
most this many pixels: on such maps a convolution reads more weights than activations, and oneDNN reorders its
weights to its blocked layout on every call, which costs more than the arithmetic (a 3x3 1024 -> 1024 layer at
4x4, bfloat16: 3.9 against 0.8 ms with the weights packed once; docs/performance.md). The untuned rule never packs:
the packed copies cost memory (vox-256 in bfloat16: 104 MB more, over its peak RSS target)."""

WINOGRAD_F2_MIN_CHANNELS = 128
"""The untuned rule runs F(2x2, 3x3) (:meth:`FusedConv.enable_winograd_f2`) on bfloat16 3x3 layers of at least this
many input channels, on maps of at least :data:`WINOGRAD_MIN_PIXELS`: on the AVX512-BF16 EPYC every such layer of
both families measured faster than the direct convolution (1.3-1.8x), every narrower one slower; on smaller maps
the wide layers gain a millisecond or less each, and their transformed kernels would cost memory all the same
(docs/performance.md)."""

WINOGRAD_F2_MAX_KERNEL_ELEMENTS = 16 * 512 * 512
"""... and whose transformed kernel (16 x Cout x Cin, 8 MB in bfloat16 at this cap) is at most this size (the
hourglasses' 1024- and 2048-channel layers, on small maps here, would add 17-34 MB each)."""


WINOGRAD_ONEDNN_MIN_CHANNELS = 256
"""Where :func:`winograd_onednn_by_default`, the untuned rule's Winograd layers of at least this many input channels
run in the tile-major form with oneDNN's products (``winograd_onednn``), on maps of any size from
:data:`WINOGRAD_MIN_PIXELS`: on the AMD EPYC every such layer of both families measured 1.1-1.4x faster than in
bands (3x3 and 2x2 kernels; a 2x2 256-channel layer at 128x128 1.1x faster than direct), the 128-channel ones no
faster or slower on small maps and the 64-channel ones slower, their products too short to repay the whole map's
buffers (docs/performance.md)."""


def winograd_onednn_by_default(cpu: CpuInfo | None = None) -> bool:
    """True on an AMD CPU (this one by default): there MKL's batched float32 products, which the banded Winograd
    form uses, run at 70-80 GFLOP/s on the wide layers' shapes where oneDNN's inner products reach 100 (1 thread,
    AVX512-BF16 EPYC), so the untuned rule runs wide layers in the tile-major form (``winograd_onednn``). On Intel
    CPUs, where MKL's products are fast, the banded form stays the rule; the tuner measures both on any CPU."""
    return (cpu or cpu_info()).vendor == "AuthenticAMD"


def winograd_f2_by_default(cpu: CpuInfo | None = None) -> bool:
    """True on a CPU (this one by default) with native bfloat16 vector products (AVX512-BF16) but no AMX: there the
    direct bfloat16 convolution runs at the vector units' rate and F(2x2, 3x3)'s 2.25x fewer products pay on wide
    layers (1.3-1.8x, docs/performance.md). With AMX the direct convolution's tile products are several times
    faster and unmeasured against it; without native bfloat16 the precision is emulated and bfloat16 is not the
    default. Either way the tuner can still choose it per layer."""
    flags = set((cpu or cpu_info()).flags)
    return "avx512_bf16" in flags and not flags & {"amx_tile", "amx_bf16"}


FORMS = ("direct", "winograd", "channels_last", "contiguous", "packed", "taps", "winograd_f2", "winograd_onednn")
"""The exact forms a fused convolution can run (all compute the same convolution; they differ in float rounding
only): ``direct``, oneDNN's convolution in the input's own memory layout; ``winograd``, Winograd's minimal
filtering (:mod:`.winograd`; float32 on the CPU, where :meth:`FusedConv.enable_winograd` allowed it);
``channels_last``, an NCHW input convolved in channels-last layout and the output given back as NCHW;
``contiguous``, a channels-last input convolved in NCHW layout and the output given back as channels-last;
``packed``, oneDNN's direct convolution with the weights reordered once to its blocked layout for this input's
shape and kept (:meth:`FusedConv.packed_applies`); ``taps``, for layers of a few output channels, one matrix
product per input pixel and tap and the taps' shifted sums (:mod:`.taps`, :meth:`FusedConv.taps_applies`);
``winograd_f2``, Winograd's F(2x2, 3x3) for bfloat16 channels-last 3x3 layers (:mod:`.winograd_f2`,
:meth:`FusedConv.winograd_f2_applies`; the untuned rule's on wide layers where :meth:`FusedConv.enable_winograd_f2`
allowed it, else tuned only); ``winograd_onednn``, the same float32 Winograd in its tile-major form with oneDNN's
products (:meth:`.WinogradPlan.tile_major`, :meth:`FusedConv.winograd_onednn_applies`; the untuned rule's on wide
layers where :meth:`FusedConv.enable_winograd` was asked for it, else tuned only)."""


def input_signature(x: torch.Tensor) -> tuple[tuple[int, ...], torch.dtype, bool, torch.dtype | None]:
    """What the choice of a form depends on besides the convolution: the input's shape (N, C, H, W), dtype,
    whether it is channels-last, and the CPU autocast precision in force (None: autocast off)."""
    last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    return tuple(x.shape), x.dtype, last, autocast


def plain_ops() -> bool:
    """True while the networks are being exported or traced (ONNX, torch.export, TorchScript): the
    fused blocks then use only standard operators (no Winograd, no ``as_strided``)."""
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting() or torch.jit.is_tracing())


class FusedConv(nn.Module):
    """A convolution with batch norm folded in: ``weight`` (Cout, Cin / groups, kh, kw), ``bias`` (Cout,), zero
    ``padding``, ``stride``, ``dilation``, ``groups`` as the convolution it replaces.

    Once allowed (:func:`enable_winograd`; stride-1, undilated, ungrouped 3x3 and 2x2 convolutions), float32
    CPU inputs of a profitable size are convolved by Winograd's algorithm (``winograd``: its transforms). The
    kernel transform (``winograd_kernels``, 4x the weight) is made by the first such call that runs eagerly and
    kept; it is derived data, which copies and pickles leave out. Under a compiler the graph computes it per
    call, so a compiled model holds none.

    ``forms``: the form measured fastest on this machine for each :func:`input_signature` (set by :mod:`.tune`;
    None or an input not in it: the fixed rule). Eager calls only: exports and compiled graphs keep the rule.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: int | tuple[int, int], *,
                 stride: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1, groups: int = 1):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().contiguous(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().contiguous(), requires_grad=False)
        self.padding = padding
        self.stride = stride
        self.dilation = dilation
        self.groups = groups
        self.winograd: WinogradPlan | None = None
        self.winograd_kernels: torch.Tensor | None = None
        self.packed_weights: dict[tuple, torch.Tensor] = {}
        self.winograd_f2_kernels: torch.Tensor | None = None
        self.winograd_f2_untuned = False
        self.winograd_onednn_untuned = False
        self.forms: dict[tuple, str] | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, norm: nn.BatchNorm2d | None = None) -> FusedConv:
        if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            raise ValueError("FusedConv needs a convolution with numeric zero padding")
        weight, bias = conv.weight, conv.bias if conv.bias is not None else torch.zeros_like(conv.weight[:, 0, 0, 0])
        if norm is not None:
            gain = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            weight, bias = weight * gain.view(-1, 1, 1, 1), (bias - norm.running_mean) * gain + norm.bias
        padding = conv.padding if conv.padding[0] != conv.padding[1] else conv.padding[0]
        return cls(weight, bias, padding, stride=_single(conv.stride), dilation=_single(conv.dilation),
                   groups=conv.groups)

    def __getstate__(self):
        state = super().__getstate__()
        return {**state, "winograd_kernels": None, "packed_weights": {}, "winograd_f2_kernels": None}

    def enable_winograd(self, onednn_products: bool = False) -> bool:
        """Allow Winograd's algorithm when this convolution has a square 3x3 or 2x2 float32 kernel, symmetric
        padding and a kernel transform of at most :data:`WINOGRAD_MAX_KERNEL_ELEMENTS`; True when it does.
        ``onednn_products``: the untuned rule runs it in the tile-major form (``winograd_onednn``) when the layer
        has at least :data:`WINOGRAD_ONEDNN_MIN_CHANNELS` input channels (its callers ask for it where
        :func:`winograd_onednn_by_default`)."""
        cout, cin, kh, kw = self.weight.shape
        if kh != kw or kh not in (2, 3) or not isinstance(self.padding, int):
            return False
        if self.groups != 1 or self.stride != 1 or self.dilation != 1:
            return False
        plan_size = (kh + TILE_FOR_KERNEL[kh] - 1) ** 2 * cout * cin
        if plan_size > WINOGRAD_MAX_KERNEL_ELEMENTS or self.weight.dtype != torch.float32:
            return False
        self.winograd = WinogradPlan(kh, device=self.weight.device)
        self.winograd_onednn_untuned = onednn_products and cin >= WINOGRAD_ONEDNN_MIN_CHANNELS
        return True

    def winograd_applies(self, x: torch.Tensor) -> bool:
        """True when Winograd's algorithm can compute this call (allowed, float32 on the CPU, no autocast, not
        exporting), whatever the input's size."""
        if self.winograd is None or self.weight.dtype != torch.float32 or x.dtype != torch.float32:
            return False
        return x.device.type == "cpu" and x.dim() == 4 and not torch.is_autocast_enabled("cpu") and not plain_ops()

    def winograd_onednn_applies(self, x: torch.Tensor) -> bool:
        """True when the tile-major Winograd form can compute this call: :meth:`winograd_applies`, eager (not
        compiling: graphs keep the functional form) and oneDNN available."""
        return self.winograd_applies(x) and _eager_cpu(x) and torch.backends.mkldnn.is_available()

    def packed_applies(self, x: torch.Tensor) -> bool:
        """True when this call can run with packed weights: a 4-D CPU input in the weights' precision (or cast to
        it by autocast), oneDNN available, eager (not exporting or compiling: graphs keep the standard
        operator)."""
        return _eager_cpu(x) and _compute_dtype(x) == self.weight.dtype and torch.backends.mkldnn.is_available()

    def taps_applies(self, x: torch.Tensor) -> bool:
        """True when this call can run by taps (:mod:`.taps`): a layer of at most
        :data:`~.taps.TAPS_MAX_OUT_CHANNELS` output channels with a square odd kernel, "same" padding, stride 1,
        on a 4-D CPU input in the weights' precision (or cast to it by autocast), eager (exports and compiled
        graphs keep the standard operator)."""
        if not _eager_cpu(x) or _compute_dtype(x) != self.weight.dtype:
            return False
        return taps_shape_applies(tuple(self.weight.shape), self.padding, self.stride, self.dilation, self.groups)

    def winograd_f2_applies(self, x: torch.Tensor) -> bool:
        """True when this call can run by F(2x2, 3x3) (:mod:`.winograd_f2`): a stride-1, undilated, ungrouped 3x3
        layer with zero padding 1 and bfloat16 weights, on a 4-D channels-last CPU input in bfloat16 (or cast to
        it by autocast), eager (exports and compiled graphs keep the standard operator)."""
        if not _eager_cpu(x) or self.weight.dtype != torch.bfloat16 or _compute_dtype(x) != torch.bfloat16:
            return False
        if tuple(self.weight.shape[2:]) != (3, 3) or self.padding != 1 or self.stride != 1 or self.dilation != 1:
            return False
        return self.groups == 1 and input_signature(x)[2]

    def enable_winograd_f2(self) -> bool:
        """Let the untuned rule run F(2x2, 3x3) on this layer's bfloat16 channels-last inputs (where
        :meth:`winograd_f2_applies`) when it is a 3x3 layer of at least :data:`WINOGRAD_F2_MIN_CHANNELS` input
        channels with a transformed kernel of at most :data:`WINOGRAD_F2_MAX_KERNEL_ELEMENTS`; True when it does.
        Its callers allow it where :func:`winograd_f2_by_default`."""
        cout, cin, kh, kw = self.weight.shape
        self.winograd_f2_untuned = ((kh, kw) == (3, 3) and cin >= WINOGRAD_F2_MIN_CHANNELS
                                    and 16 * cout * cin <= WINOGRAD_F2_MAX_KERNEL_ELEMENTS)
        return self.winograd_f2_untuned

    def default_form(self, x: torch.Tensor) -> str:
        """The untuned rule: ``taps`` where it applies (measured faster in both precisions and layouts);
        ``winograd_f2`` where :meth:`enable_winograd_f2` allowed it and it applies, on maps of at least
        :data:`WINOGRAD_MIN_PIXELS`; ``winograd`` where it applies on outputs of :data:`WINOGRAD_MIN_PIXELS` to
        :data:`WINOGRAD_MAX_PIXELS` pixels (no upper bound for wide 3x3 layers, :data:`WINOGRAD_WIDE_CHANNELS`),
        as ``winograd_onednn`` where :meth:`enable_winograd` was asked for it on this layer and it applies (then
        with no upper bound either, 2x2 layers included); else ``direct``."""
        if self.taps_applies(x):
            return "taps"
        if self.winograd_f2_untuned and x.shape[2] * x.shape[3] >= WINOGRAD_MIN_PIXELS and self.winograd_f2_applies(x):
            return "winograd_f2"  # padding 1: the output is the input's size
        if not self.winograd_applies(x):
            return "direct"
        pad, r = self.padding if isinstance(self.padding, int) else 0, self.weight.shape[-1]
        pixels = (x.shape[2] + 2 * pad - r + 1) * (x.shape[3] + 2 * pad - r + 1)
        wide = r == 3 and self.weight.shape[1] >= WINOGRAD_WIDE_CHANNELS
        tile_major = self.winograd_onednn_untuned and self.winograd_onednn_applies(x)
        if pixels < WINOGRAD_MIN_PIXELS or (pixels > WINOGRAD_MAX_PIXELS and not (wide or tile_major)):
            return "direct"
        return "winograd_onednn" if tile_major else "winograd"

    def form(self, x: torch.Tensor) -> str:
        """The form this call runs (:data:`FORMS`): the tuned one for this input where :attr:`forms` has it (and
        it applies), else :meth:`default_form`."""
        if self.forms and not plain_ops() and not torch.compiler.is_compiling():
            tuned = self.forms.get(input_signature(x))
            if (tuned == "winograd" and self.winograd_applies(x)) or (tuned == "packed" and self.packed_applies(x)) \
                    or (tuned == "taps" and self.taps_applies(x)) \
                    or (tuned == "winograd_f2" and self.winograd_f2_applies(x)) \
                    or (tuned == "winograd_onednn" and self.winograd_onednn_applies(x)) \
                    or tuned in ("direct", "channels_last", "contiguous"):
                return tuned
        return self.default_form(x)

    def _use_winograd(self, x: torch.Tensor) -> bool:
        return self.form(x) in ("winograd", "winograd_onednn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        form = self.form(x)
        if form == "channels_last":
            return self._direct(x.contiguous(memory_format=torch.channels_last)).contiguous()
        if form == "contiguous":
            return self._direct(x.contiguous()).contiguous(memory_format=torch.channels_last)
        if form in ("winograd", "winograd_onednn"):
            plan = self.winograd
            assert plan is not None and isinstance(self.padding, int)  # enable_winograd allows symmetric padding only
            if torch.compiler.is_compiling():
                return plan(x, plan.kernels(self.weight), self.bias, self.padding)  # in the graph, freed after use
            if self.winograd_kernels is None:
                self.winograd_kernels = plan.kernels(self.weight)
            run = plan.tile_major if form == "winograd_onednn" else plan
            return run(x, self.winograd_kernels, self.bias, self.padding)
        if form == "packed":
            return self._packed(x)
        if form == "taps":
            return conv_by_taps(x.to(self.weight.dtype), tap_rows(self.weight), self.bias, self.weight.shape[-1])
        if form == "winograd_f2":
            if self.winograd_f2_kernels is None:
                self.winograd_f2_kernels = f2_kernels(self.weight)
            return conv3x3_f2(x, self.winograd_f2_kernels, self.bias)
        return self._direct(x)

    def _direct(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation,
                        groups=self.groups)

    def _packed(self, x: torch.Tensor) -> torch.Tensor:
        """The direct convolution with the weights in oneDNN's blocked layout for ``x``'s signature, reordered by
        the first such call and kept (derived data: copies and pickles leave it out); output in ``x``'s layout."""
        x = x.to(self.weight.dtype)
        padding, stride, dilation = _pair(self.padding), _pair(self.stride), _pair(self.dilation)
        signature = input_signature(x)
        channels_last = signature[2]
        packed = self.packed_weights.get(signature)
        if packed is None:
            weight = self.weight.contiguous(memory_format=torch.channels_last) if channels_last else self.weight
            packed = self.packed_weights[signature] = torch.ops.mkldnn._reorder_convolution_weight(
                weight, padding, stride, dilation, self.groups, list(x.shape))
        out = torch.ops.mkldnn._convolution_pointwise(x, packed, self.bias.to(x.dtype), padding, stride, dilation,
                                                      self.groups, "none", [None], "")
        return out if channels_last else out.contiguous()  # the input's layout, as the direct form


def _eager_cpu(x: torch.Tensor) -> bool:
    """A 4-D CPU input of an eager call: not exporting or tracing (:func:`plain_ops`), not compiling (graphs keep
    the standard operator). What the packed, taps and F(2x2, 3x3) forms need first."""
    return x.device.type == "cpu" and x.dim() == 4 and not plain_ops() and not torch.compiler.is_compiling()


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The precision a CPU convolution of ``x`` computes in: autocast's for a float32 input under it, else x's."""
    if x.dtype == torch.float32 and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def _single(pair: tuple[int, ...]) -> int | tuple[int, ...]:
    return pair[0] if len(set(pair)) == 1 else pair


def taps_conv(conv: nn.Conv2d) -> FusedConv | None:
    """``conv`` as a :class:`FusedConv` (the same weights) when it can run by taps (:mod:`.taps`: the occlusion
    masks' and the generators' final convolutions), else None."""
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        return None
    if not taps_shape_applies(tuple(conv.weight.shape), tuple(conv.padding), tuple(conv.stride),
                              tuple(conv.dilation), conv.groups):
        return None
    return FusedConv.from_conv(conv)


def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> FusedConv:
    """A new convolution equal to norm(conv(x)) in eval mode."""
    return FusedConv.from_conv(conv, norm)
