"""Building the networks from a config and loading checkpoint weights into them."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch
from torch import nn

from ..device import cpu_has_native_bfloat16, pick_device
from ..errors import CheckpointError, Placeholder, Remedy, shorten
from ..geometry import Size
from .checkpoint import checkpoint_format, describe_mismatch, mismatch, non_finite, read_checkpoint, strip_prefix
from .config import ModelConfig, available_configs, load_config
from .nets import KPDetector, OcclusionAwareGenerator
from .nets.fuse import enable_winograd, fuse_for_inference, mark_channels_last_output

log = logging.getLogger(__name__)


@dataclass
class FommModel:
    """A keypoint detector and a generator built from one config, in eval mode on one device.

    ``fused`` (the default of :func:`load_model`): the networks are in their exact inference form
    (:func:`~fomm_lab.engine.nets.fuse.fuse_for_inference`, rewritten in place, so the checkpoint's unfused
    blocks are not kept): they take the same inputs and give the same outputs up to float rounding, but their
    state dicts are not the checkpoint's. ``fused=False`` keeps the checkpoint's networks (training, export of
    the original graphs, exactness tests).
    """

    kp_detector: KPDetector
    generator: OcclusionAwareGenerator
    config: ModelConfig
    device: torch.device
    name: str = "custom"
    checkpoint: Path | None = None
    fused: bool = False
    _inference: dict = field(default_factory=dict, repr=False)

    @property
    def frame_size(self) -> Size:
        """The frame size the model was trained on; every input is brought to it."""
        return self.config.frame_size

    def float32_networks(self) -> tuple[KPDetector, OcclusionAwareGenerator]:
        """The float32 networks in their inference form: the model's own when ``fused``, else a fused copy (made
        once). Same inputs and outputs as the checkpoint's networks (up to float rounding)."""
        if self.fused:
            return self.kp_detector, self.generator
        if "float32-modules" not in self._inference:
            kp_detector = cast(KPDetector, fuse_for_inference(self.kp_detector))
            generator = cast(OcclusionAwareGenerator, fuse_for_inference(self.generator))
            mark_channels_last_output(generator)
            self._inference["float32-modules"] = (kp_detector, generator)
        return self._inference["float32-modules"]

    def inference_networks(self, *, dtype: torch.dtype = torch.float32, compile: bool = False) -> InferenceNetworks:
        """The networks in their inference form for ``dtype``, built once per variant and shared by every Animator.

        float32: the fused networks (exact rewrites, :mod:`fomm_lab.engine.nets.fuse`), with Winograd
        convolutions on the CPU. bfloat16 / float16: one copy of the fused networks with weights in that
        precision and channels-last layout (made once, without a float32 copy in between), run under autocast;
        the keypoint detector runs in bfloat16 too (its softmax and weighted sums stay float32) but stays
        float32 with float16, whose range is too small for un-normalised heatmap logits.
        ``compile``: torch.compile of the per-frame networks (the first frames take a minute or more).
        """
        key = (dtype, compile)
        if key in self._inference:
            return self._inference[key]
        kp_detector, generator = self._reduced(dtype) if dtype != torch.float32 else self.float32_networks()
        if dtype == torch.float32 and self.device.type == "cpu":
            enable_winograd(kp_detector)
            enable_winograd(generator)
        wrap = (lambda fn: _compiled(fn, freeze=dtype != torch.float32)) if compile else (lambda fn: fn)
        dense_motion = generator.dense_motion_network
        networks = InferenceNetworks(
            kp_detector=wrap(kp_detector),
            encode=generator.encode,
            prepare_motion=dense_motion.prepare,
            dense_motion=wrap(cast(Callable, dense_motion)),
            decode=wrap(generator.decode),
            dtype=dtype,
            keypoint_dtype=dtype if dtype == torch.bfloat16 else torch.float32,
            channels_last=dtype != torch.float32,
        )
        self._inference[key] = networks
        return networks

    def variant(self, key: object, build: Callable[[], InferenceNetworks]) -> InferenceNetworks:
        """The inference networks cached under ``key`` (another backend's), built by ``build`` the first time."""
        if key not in self._inference:
            self._inference[key] = build()
        return self._inference[key]

    def _reduced(self, dtype: torch.dtype) -> tuple[KPDetector, OcclusionAwareGenerator]:
        """The fused networks with weights in ``dtype`` (channels-last), one copy per dtype. On a CPU that
        emulates ``dtype``, the generator's output layer stays float32 (:class:`InFloat32`)."""
        name = f"{dtype}-modules"
        if name not in self._inference:
            kp_detector, generator = self.float32_networks()
            if dtype == torch.bfloat16:
                kp_detector = cast(KPDetector, converted_copy(kp_detector, dtype))
            emulated = self.device.type == "cpu" and not (dtype == torch.bfloat16 and cpu_has_native_bfloat16())
            reduced = cast(OcclusionAwareGenerator,
                           converted_copy(generator, dtype, keep=generator.final if emulated else None))
            if emulated:
                reduced.final = InFloat32(reduced.final)
            self._inference[name] = (kp_detector, reduced)
        return self._inference[name]


def converted_copy(module: nn.Module, dtype: torch.dtype, *, keep: nn.Module | None = None) -> nn.Module:
    """A copy of ``module`` whose floating-point parameters and buffers are in ``dtype`` (4-D ones channels-last),
    made tensor by tensor: the module is never copied in its own precision first. Batch norms (left in the
    residual streams of the inference form) keep float32, which CPU batch norm accepts with either input, and
    so does the submodule ``keep``."""
    memo: dict[int, object] = {}
    kept: list[nn.Module] = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
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
    channels at full resolution) is 4x faster in float32 and needs a 17 MB instead of a 390 MB scratch buffer
    (vox-256, AVX2, measured); the networks' output gains the precision of float32 too."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


@dataclass(frozen=True)
class InferenceNetworks:
    """What :class:`~fomm_lab.engine.animator.Animator` runs (the torch networks, or another backend's).

    kp_detector:    (N, 3, H, W) float32 in [0, 1] -> Keypoints (N, K, .), per driving frame.
    encode:         source (1, 3, H, W) -> generator features (1, F, h', w'), once per source.
    prepare_motion: (source (1, 3, H, W), its Keypoints) -> SourceMotionCache, once per source.
    dense_motion:   (SourceMotionCache, Keypoints (N, K, .)) -> (deformation (N, h, w, 2), occlusion (N, 1, h, w)
                    or None), per driving frame.
    decode:         (features, deformation, occlusion) -> prediction (N, 3, H, W) in [0, 1], per driving frame.
    dtype:          precision of encode, dense_motion and decode (run under autocast when not float32);
    keypoint_dtype: that of kp_detector. channels_last: inputs are given in channels-last layout.
    autocast:       the Animator wraps the calls in torch.autocast for the reduced precisions (torch backend).
    """

    kp_detector: Callable
    encode: Callable
    prepare_motion: Callable
    dense_motion: Callable
    decode: Callable
    dtype: torch.dtype = torch.float32
    keypoint_dtype: torch.dtype = torch.float32
    channels_last: bool = False
    autocast: bool = True
    backend: str = "torch"


def _compiled(fn: Callable, *, freeze: bool) -> Callable:
    """torch.compile ``fn`` for fixed shapes.

    freeze: inductor's weight freezing (patched in around each call, inside which compilation happens). It lets
    oneDNN pre-pack the weights and fuse convolution + ReLU, at the price of a second, packed copy of the
    weights: worth it for the reduced precisions (their copy is half the size), not for float32 (~250 MB more
    on vox-256). Without it, the graphs compute the Winograd kernel transforms per call (float32 on the CPU,
    :class:`~fomm_lab.engine.nets.fuse.FusedConv`), so a compiled model keeps no transforms either."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(fn, dynamic=False)
    if not freeze:
        return compiled

    def call(*args):
        with inductor_config.patch(freezing=True):
            return compiled(*args)

    return call


PADDLE_BORDER = 5
"""Width in pixels of the frame where PaddleGAN's generator, in inference mode, blends the deformation to
the identity (and, for its standard topology, forces the occlusion map to 1): its ``pad``."""


def build_networks(config: ModelConfig,
                   device: str | torch.device = "cpu") -> tuple[KPDetector, OcclusionAwareGenerator]:
    """Instantiate both networks from a config on ``device`` (random weights).

    The topology (``mobile_net`` of each network) and, for PaddleGAN's configs (``config.paddle``),
    PaddleGAN's inference semantics: ``grid_sample`` with ``align_corners=True`` and the border
    treatment of its inference mode (:data:`PADDLE_BORDER`; occlusion forced to 1 there for the standard
    topology only, as PaddleGAN does). Official configs get the official implementation's behaviour.
    """
    common = dataclasses.asdict(config.common)
    kp = dataclasses.asdict(config.kp_detector)
    gen = {k: v for k, v in dataclasses.asdict(config.generator).items() if k != "dense_motion"}
    dense = dataclasses.asdict(config.generator.dense_motion)
    paddle = config.paddle
    with torch.device(device):
        kp_detector = KPDetector(**kp, **common)
        generator = OcclusionAwareGenerator(**gen, dense_motion_params=dense, **common, align_corners=paddle,
                                            border=PADDLE_BORDER if paddle else 0,
                                            occlusion_border=paddle and not config.generator.mobile_net)
    return kp_detector, generator


def fitting_configs(states: dict[str, dict], paddle: bool | None = None) -> list[str]:
    """Shipped config names whose networks have exactly the keys and shapes of ``states``, sorted by name;
    with ``paddle`` given, those whose :attr:`ModelConfig.paddle` equals it come first (a ``.pdparams``
    file most likely wants one of PaddleGAN's configs)."""
    fits = []
    for name in available_configs():
        config = load_config(name)
        networks = dict(zip(("kp_detector", "generator"), build_networks(config, device="meta")))
        if all(not any(mismatch(networks[k], states[k])) for k in networks):
            fits.append((paddle is not None and config.paddle != paddle, name))
    return [name for _, name in sorted(fits)]


def load_weights(kp_detector: KPDetector, generator: OcclusionAwareGenerator, checkpoint: str | Path,
                 config_label: str) -> None:
    """Load a checkpoint file into the networks, with an error that explains any mismatch."""
    data = read_checkpoint(checkpoint)
    states = {name: strip_prefix(data[name]) for name in ("kp_detector", "generator")}
    problems = []
    for name, module in (("kp_detector", kp_detector), ("generator", generator)):
        diff = mismatch(module, states[name])
        if any(diff):
            problems += describe_mismatch(name, *diff)
    if problems:
        pdparams = checkpoint_format(checkpoint) == "pdparams"
        fits = fitting_configs(states, paddle=pdparams)  # PaddleGAN's configs first for a .pdparams file
        if fits:
            best = "vox-256" if "vox-256" in fits and not pdparams else fits[0]
            raise CheckpointError(f"checkpoint {checkpoint} does not fit config {config_label}",
                                  details=[f"shipped configs that fit this file: {', '.join(fits)}", *problems],
                                  remedies=[Remedy("use a config that fits it ({})", "model", best)])
        raise CheckpointError(f"checkpoint {checkpoint} does not fit config {config_label}, and no shipped config "
                              "fits it", details=problems,
                              remedies=[Remedy("give the yaml config it was trained with ({})", "model",
                                               Placeholder("CONFIG.yaml"))])
    bad = [f"{name}.{key}" for name in states for key in non_finite(states[name])]
    if bad:
        raise CheckpointError(f"checkpoint {checkpoint} holds NaN or infinite weights ({shorten(bad, 3)}): it is "
                              "damaged or its training diverged; use another checkpoint")
    kp_detector.load_state_dict(states["kp_detector"], strict=True)
    generator.load_state_dict(states["generator"], strict=True)


def load_model(
    config: str | Path,
    checkpoint: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    fuse: bool = True,
) -> FommModel:
    """Build a FOMM model and load its weights.

    config: a registry name (``"vox"``, ``"vox-adv"``, ``"vox-512"``, ``"vox-mobile"`` ...: the checkpoint is
    found in the
    cache or downloaded and verified), a shipped config name (``"vox-256"``) or a yaml path.
    checkpoint: a ``.pth.tar`` file or PaddleGAN's ``.pdparams`` (told apart by content); None with a
    registry name uses the registry; None with a config name or path leaves random weights (for tests and
    benchmarks; a warning says so). The config decides the semantics (PaddleGAN's for its yaml layout).
    device: None picks cuda > mps > cpu.
    fuse: rewrite the networks in place into their exact inference form (:attr:`FommModel.fused`); False keeps
    the checkpoint's networks as they are (for training, or to compare against).
    """
    from ..hub.registry import MODELS

    entry = MODELS.get(config) if isinstance(config, str) else None
    label = str(config)
    if entry is not None and entry.config is not None:
        cfg = load_config(entry.config)
        if checkpoint is None:
            from ..hub.download import ensure_checkpoint

            checkpoint = ensure_checkpoint(entry.name, cache_dir=cache_dir, progress=progress)
        label = f"{entry.config} ({entry.name})"
    else:
        cfg = load_config(config)
    chosen = pick_device(device)
    kp_detector, generator = build_networks(cfg, device="cpu")
    if checkpoint is not None:
        load_weights(kp_detector, generator, checkpoint, label)
    else:
        log.warning("fomm_lab: no checkpoint given for config %s: the model has random weights", label)
    kp_detector.to(chosen).eval().requires_grad_(False)
    generator.to(chosen).eval().requires_grad_(False)
    if fuse:
        fuse_networks(kp_detector, generator)
    name = entry.name if entry is not None and entry.config is not None else Path(str(config)).stem
    return FommModel(kp_detector, generator, cfg, chosen, name=name,
                     checkpoint=Path(checkpoint) if checkpoint is not None else None, fused=fuse)


def fuse_networks(kp_detector: KPDetector, generator: OcclusionAwareGenerator) -> None:
    """Rewrite both networks in place into their exact inference form (each unfused block is freed as soon as
    its replacement exists)."""
    fuse_for_inference(kp_detector, inplace=True)
    fuse_for_inference(generator, inplace=True)
    mark_channels_last_output(generator)
