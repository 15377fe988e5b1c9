"""Building the networks from a config and loading checkpoint weights into them."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, cast

import torch

from ..device import pick_device
from ..errors import CheckpointError, Placeholder, Remedy, shorten
from ..geometry import Size
from .checkpoint import checkpoint_format, describe_mismatch, mismatch, non_finite, read_checkpoint, strip_prefix
from .config import ModelConfig, available_configs, load_config
from .family import MotionMode, MotionModel
from .fast import variants
from .fast.fuse import fuse_for_inference, mark_channels_last_output
from .fomm_networks import FommNetworks
from .nets import KPDetector, OcclusionAwareGenerator

log = logging.getLogger(__name__)


FOMM_MODES = (
    MotionMode("relative", relative=True, adapt_scale=False),
    MotionMode("absolute + adapt scale", relative=False, adapt_scale=True),
    MotionMode("relative + adapt scale", relative=True, adapt_scale=True),
)
"""FOMM's motion modes, the three combinations of the paper's demo (Sec. 3.4): relative motion with and without
the adapt-movement-scale, and absolute motion (where the scale has no effect); the last is the recommended
one."""


@dataclass
class FommModel(MotionModel):
    """The First Order Motion Model family: a keypoint detector and a generator built from one config, in eval
    mode on one device.

    ``fused`` (the default of :func:`load_model`): the networks are in their exact inference form
    (:func:`~fomm_lab.engine.fast.fuse.fuse_for_inference`, rewritten in place, so the checkpoint's unfused
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

    family: ClassVar[str] = "fomm"
    modes: ClassVar[tuple[MotionMode, ...]] = FOMM_MODES

    @property
    def frame_size(self) -> Size:
        """The frame size the model was trained on; every input is brought to it."""
        return self.config.frame_size

    def float32_networks(self) -> tuple[KPDetector, OcclusionAwareGenerator]:
        """The float32 networks in their inference form: the model's own when ``fused``, else a fused copy (made
        once; :func:`fomm_lab.engine.fast.variants.float32_networks`)."""
        return variants.float32_networks(self)

    def inference_networks(self, *, dtype: torch.dtype = torch.float32, compile: bool = False) -> FommNetworks:
        """The torch networks in their inference form for ``dtype``, built once per variant and shared by every
        Animator (:func:`fomm_lab.engine.fast.variants.inference_networks`)."""
        return cast(FommNetworks, variants.inference_networks(self, dtype=dtype, compile=compile))


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
    gen = {k: v for k, v in dataclasses.asdict(config.generator).items() if k not in ("dense_motion", "align_corners")}
    dense = dataclasses.asdict(config.generator.dense_motion)
    paddle = config.paddle
    with torch.device(device):
        kp_detector = KPDetector(**kp, **common)
        generator = OcclusionAwareGenerator(**gen, dense_motion_params=dense, **common,
                                            align_corners=paddle or config.generator.align_corners,
                                            border=PADDLE_BORDER if paddle else 0,
                                            occlusion_border=paddle and not config.generator.mobile_net,
                                            corner_resize=config.generator.align_corners and not paddle)
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


def load_fomm(
    config: ModelConfig | str | Path,
    checkpoint: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    fuse: bool = True,
    label: str | None = None,
) -> FommModel:
    """Build a FOMM model from its config (a :class:`ModelConfig`, shipped config name or yaml path) and load its
    weights (a ``.pth.tar`` file or PaddleGAN's ``.pdparams``, told apart by content; None leaves random weights,
    with a warning). The config decides the semantics (PaddleGAN's for its yaml layout). Registry names are
    resolved by :func:`fomm_lab.engine.families.load_model`, the public entry point.

    device: None picks cuda > mps > cpu. fuse: rewrite the networks in place into their exact inference form
    (:attr:`FommModel.fused`); False keeps the checkpoint's networks (for training, or to compare against).
    label: how errors name the config (default its name).
    """
    cfg = config if isinstance(config, ModelConfig) else load_config(config)
    label = label or str(cfg.path or cfg.name)
    chosen = pick_device(device)
    kp_detector, generator = build_networks(cfg, device="cpu")
    if checkpoint is not None:
        load_weights(kp_detector, generator, checkpoint, label)
    else:
        log.warning("no checkpoint given for config %s: the model has random weights", label)
    kp_detector.to(chosen).eval().requires_grad_(False)
    generator.to(chosen).eval().requires_grad_(False)
    if fuse:
        fuse_networks(kp_detector, generator)
    return FommModel(kp_detector, generator, cfg, chosen, name=cfg.name,
                     checkpoint=Path(checkpoint) if checkpoint is not None else None, fused=fuse)


def fuse_networks(kp_detector: KPDetector, generator: OcclusionAwareGenerator) -> None:
    """Rewrite both networks in place into their exact inference form (each unfused block is freed as soon as
    its replacement exists)."""
    fuse_for_inference(kp_detector, inplace=True)
    fuse_for_inference(generator, inplace=True)
    mark_channels_last_output(generator)
