"""Building the networks from a config and loading checkpoint weights into them."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from ..device import pick_device
from ..errors import CheckpointError, Placeholder, Remedy, shorten
from ..geometry import Size
from .checkpoint import checkpoint_format, describe_mismatch, mismatch, non_finite, read_checkpoint, strip_prefix
from .config import ModelConfig, available_configs, load_config
from .nets import KPDetector, OcclusionAwareGenerator
from .nets.fuse import fuse_for_inference

log = logging.getLogger(__name__)


@dataclass
class FommModel:
    """A keypoint detector and a generator built from one config, in eval mode on one device."""

    kp_detector: KPDetector
    generator: OcclusionAwareGenerator
    config: ModelConfig
    device: torch.device
    name: str = "custom"
    checkpoint: Path | None = None
    _inference: dict = field(default_factory=dict, repr=False)

    @property
    def frame_size(self) -> Size:
        """The frame size the model was trained on; every input is brought to it."""
        return self.config.frame_size

    def inference_networks(self, compile: bool = False, channels_last: bool = False) -> InferenceNetworks:
        """The networks in their inference form, built once per variant and shared by every Animator.

        Exact rewrites (BN folding, sub-pixel up-sampling; :mod:`fomm_lab.engine.nets.fuse`) always;
        ``channels_last`` memory layout (faster for bfloat16/float16 on CPU); ``compile``:
        torch.compile with frozen weights (the first frames take a minute or more to compile).
        """
        key = (compile, channels_last)
        if key not in self._inference:
            kp_detector = fuse_for_inference(self.kp_detector)
            generator = cast(OcclusionAwareGenerator, fuse_for_inference(self.generator))
            if channels_last:
                kp_detector = kp_detector.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
                generator = generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            wrap = _frozen_compile if compile else (lambda fn: fn)
            self._inference[key] = InferenceNetworks(
                kp_detector=wrap(kp_detector),
                dense_motion=wrap(cast(Callable, generator.dense_motion_network)),
                decode=wrap(generator.decode),
                generator=generator,
                channels_last=channels_last,
            )
        return self._inference[key]


@dataclass(frozen=True)
class InferenceNetworks:
    """What :class:`~fomm_lab.engine.animator.Animator` runs.

    kp_detector:  (N, 3, H, W) -> Keypoints, per driving frame.
    dense_motion: (SourceMotionCache, Keypoints) -> (deformation, occlusion), per driving frame.
    decode:       (features, deformation, occlusion) -> (N, 3, H, W), per driving frame.
    generator:    the fused generator, for the once-per-source ``encode`` and motion ``prepare``.
    """

    kp_detector: Callable
    dense_motion: Callable
    decode: Callable
    generator: OcclusionAwareGenerator
    channels_last: bool


def _frozen_compile(fn: Callable) -> Callable:
    """torch.compile ``fn`` with its weights frozen as constants (inductor ``freezing``).

    The setting is patched only around each call (compilation happens inside the call)."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(fn, dynamic=False)

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
) -> FommModel:
    """Build a FOMM model and load its weights.

    config: a registry name (``"vox"``, ``"vox-adv"``, ``"vox-512"``, ``"vox-mobile"`` ...: the checkpoint is
    found in the
    cache or downloaded and verified), a shipped config name (``"vox-256"``) or a yaml path.
    checkpoint: a ``.pth.tar`` file or PaddleGAN's ``.pdparams`` (told apart by content); None with a
    registry name uses the registry; None with a config name or path leaves random weights (for tests and
    benchmarks; a warning says so). The config decides the semantics (PaddleGAN's for its yaml layout).
    device: None picks cuda > mps > cpu.
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
    name = entry.name if entry is not None and entry.config is not None else Path(str(config)).stem
    return FommModel(kp_detector, generator, cfg, chosen, name=name,
                     checkpoint=Path(checkpoint) if checkpoint is not None else None)
