"""The inference variants of a loaded model, made once each and shared by every Animator (the model's cache,
:meth:`~fomm_lab.engine.family.MotionModel.variant`).

:func:`inference_networks` is the one entry point: the networks a backend runs for a precision.

* float32: the fused networks (exact rewrites, :mod:`.fuse`), with Winograd convolutions on the CPU: the
  model's own networks when it was loaded fused, else one fused copy (:func:`float32_networks`);
* bfloat16 / float16: one copy of the fused networks with weights in that precision and channels-last layout
  (made once, without a float32 copy in between; :func:`converted_copy`), run under autocast. The keypoint
  detector runs in bfloat16 too (its softmax and weighted sums stay float32) but stays float32 with float16,
  whose range is too small for un-normalised heatmap logits;
* ``compile``: torch.compile of the per-frame networks (the first frames take a minute or more);
* backend ``openvino``: the ONNX graphs of the float32 networks compiled by OpenVINO (:mod:`.openvino`).

On the CPU each fused convolution runs the exact form measured fastest on this machine where it has been tuned
(:mod:`.tune`), else the fixed rule of :class:`~.conv.FusedConv`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ...device import cpu_has_native_bfloat16
from ..family import InferenceNetworks, MotionModel
from ..fomm_networks import FommNetworks
from ..nets import KPDetector, OcclusionAwareGenerator
from .backends import BACKENDS
from .fuse import enable_winograd, enable_winograd_f2, fuse_for_inference, mark_channels_last_output
from .tune import use_tuning

if TYPE_CHECKING:
    from ..model import FommModel


def inference_networks(model: MotionModel, *, dtype: torch.dtype = torch.float32, backend: str = "torch",
                       compile: bool = False, tune: bool | None = None, batch_size: int = 1) -> InferenceNetworks:
    """The networks ``backend`` runs for ``model`` in ``dtype`` (its ``dtype`` says what it runs: OpenVINO falls
    back to float32 where the CPU lacks a native reduced precision), built once per variant.

    Families other than FOMM build their torch variants themselves (their ``inference_networks``).

    On the CPU, the torch networks' fused convolutions run the forms tuned for this machine (:mod:`.tune`):
    tune None: from the tuning cache when it holds a valid file for this machine, thread count and precision
    (else the untuned rule); True: measure what the cache lacks first (seconds; ``batch_size`` driving frames per
    batch); False: the untuned rule. Compiled graphs keep the untuned rule (the choices are measured eagerly)."""
    nets = _networks(model, dtype, backend, compile)
    if backend == "torch" and model.device.type == "cpu":
        eager = nets if not compile else _networks(model, dtype, backend, False)
        use_tuning(model, eager, dtype, tune=tune, batch_size=batch_size)
    return nets


def _networks(model: MotionModel, dtype: torch.dtype, backend: str, compile: bool) -> InferenceNetworks:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "openvino":
        if compile:
            raise ValueError("compile=True applies to the torch backend only (OpenVINO compiles its graphs itself)")
        if model.family != "fomm":
            raise ValueError(f"the openvino backend runs FOMM models only, not {model.family} models")
        from .openvino import openvino_networks

        return openvino_networks(cast("FommModel", model), dtype=dtype)
    if model.family != "fomm":
        return model.inference_networks(dtype=dtype, compile=compile)
    fomm = cast("FommModel", model)
    return model.variant((dtype, compile), lambda: _torch_networks(fomm, dtype, compile))


def _torch_networks(model: FommModel, dtype: torch.dtype, compile: bool) -> FommNetworks:
    kp_detector, generator = reduced_networks(model, dtype) if dtype != torch.float32 else float32_networks(model)
    if dtype == torch.float32 and model.device.type == "cpu":
        enable_winograd(kp_detector)
        enable_winograd(generator)
    wrap = (lambda fn: compiled(fn, freeze=dtype != torch.float32)) if compile else (lambda fn: fn)
    dense_motion = generator.dense_motion_network
    return FommNetworks(
        kp_detector=wrap(kp_detector),
        encode=generator.encode,
        prepare_motion=dense_motion.prepare,
        dense_motion=wrap(cast(Callable, dense_motion)),
        decode=wrap(generator.decode),
        dtype=dtype,
        keypoint_dtype=dtype if dtype == torch.bfloat16 else torch.float32,
        channels_last=dtype != torch.float32,
    )


def float32_networks(model: FommModel) -> tuple[KPDetector, OcclusionAwareGenerator]:
    """The float32 networks in their inference form: the model's own when ``fused``, else a fused copy (made
    once). Same inputs and outputs as the checkpoint's networks (up to float rounding)."""
    if model.fused:
        return model.kp_detector, model.generator
    if "float32-modules" not in model._inference:
        kp_detector = cast(KPDetector, fuse_for_inference(model.kp_detector))
        generator = cast(OcclusionAwareGenerator, fuse_for_inference(model.generator))
        mark_channels_last_output(generator)
        model._inference["float32-modules"] = (kp_detector, generator)
    return model._inference["float32-modules"]


def reduced_networks(model: FommModel, dtype: torch.dtype) -> tuple[KPDetector, OcclusionAwareGenerator]:
    """The fused networks with weights in ``dtype`` (channels-last), one copy per dtype. On a CPU that
    emulates ``dtype``, the generator's output layer stays float32 (:class:`InFloat32`); on one where F(2x2, 3x3)
    pays in bfloat16, its wide layers run it untuned (:func:`~.fuse.enable_winograd_f2`)."""
    name = f"{dtype}-modules"
    if name not in model._inference:
        kp_detector, generator = float32_networks(model)
        if dtype == torch.bfloat16:
            kp_detector = cast(KPDetector, converted_copy(kp_detector, dtype))
        emulated = model.device.type == "cpu" and not (dtype == torch.bfloat16 and cpu_has_native_bfloat16())
        reduced = cast(OcclusionAwareGenerator,
                       converted_copy(generator, dtype, keep=generator.final if emulated else None))
        if emulated:
            reduced.final = InFloat32(reduced.final)
        if dtype == torch.bfloat16 and model.device.type == "cpu":
            enable_winograd_f2(kp_detector)
            enable_winograd_f2(reduced)
        model._inference[name] = (kp_detector, reduced)
    return model._inference[name]


def converted_copy(module: nn.Module, dtype: torch.dtype, *, keep: nn.Module | None = None) -> nn.Module:
    """A copy of ``module`` whose floating-point parameters and buffers are in ``dtype`` (4-D ones channels-last),
    made tensor by tensor: the module is never copied in its own precision first. Batch and instance norms (left
    in the residual streams of the inference form; TPSMM's instance norms) keep float32, which CPU batch norm
    accepts with either input, and so does the submodule ``keep``."""
    memo: dict[int, object] = {}
    kept: list[nn.Module] = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    if keep is not None:
        kept.append(keep)
    unconverted = {id(t) for m in kept for t in [*m.parameters(), *m.buffers()]}
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in memo or id(tensor) in unconverted:
            continue
        value = tensor.detach()
        if value.is_floating_point():
            layout = torch.channels_last if value.dim() == 4 else torch.contiguous_format
            value = value.to(dtype).contiguous(memory_format=layout)
        else:
            value = value.clone()
        memo[id(tensor)] = nn.Parameter(value, requires_grad=False) if isinstance(tensor, nn.Parameter) else value
    return copy.deepcopy(module, memo)


class InFloat32(nn.Module):
    """``module`` (float32 weights) run in float32 with autocast off; input (N, C, H, W) in any precision,
    output float32. Where the CPU emulates bfloat16 / float16, the generator's final 7x7 convolution (64 -> 3
    channels at full resolution) is several times faster in float32 and needs a far smaller scratch buffer than in
    the emulated precision; the networks' output gains the precision of float32 too."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


def compiled(fn: Callable, *, freeze: bool) -> Callable:
    """torch.compile ``fn`` for fixed shapes.

    freeze: inductor's weight freezing (patched in around each call, inside which compilation happens). It lets
    oneDNN pre-pack the weights and fuse convolution + ReLU, at the price of a second, packed copy of the
    weights: worth it for the reduced precisions (their copy is half the size), not for float32 (a second
    float32 copy of every weight). Without it, the graphs compute the Winograd kernel transforms per call
    (float32 on the CPU, :class:`~.conv.FusedConv`), so a compiled model keeps no transforms either."""
    import torch._inductor.config as inductor_config

    compiled_fn = torch.compile(fn, dynamic=False)
    if not freeze:
        return compiled_fn

    def call(*args):
        with inductor_config.patch(freezing=True):
            return compiled_fn(*args)

    return call
