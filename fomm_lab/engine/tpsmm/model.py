"""The Thin-Plate Spline Motion Model family (Zhao & Zhang, CVPR 2022): networks built from a config, weights
loaded from the authors' checkpoints, and the three motion modes of their demo (standard, relative, avd)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import nn

from ...device import pick_device
from ...errors import CheckpointError, FommLabError, shorten
from ...geometry import Size
from ..checkpoint import describe_mismatch, mismatch, non_finite, strip_prefix
from ..family import InferenceNetworks, MotionMode, MotionModel
from ..keypoints import Keypoints
from ..motion import movement_scale, normalize_keypoints
from ..nets.resnet import ResNet18
from ..nets.tpsmm import AVDNetwork, BGMotionPredictor, DenseMotionNetwork, InpaintingNetwork, KPDetector, SourceMotion
from ..nets.tpsmm.avd import HIDDEN
from .checkpoint import read_tpsmm_checkpoint
from .config import TpsmmConfig, load_tpsmm_config

log = logging.getLogger(__name__)

TPSMM_MODES = (
    MotionMode("relative", relative=True, adapt_scale=True),
    MotionMode("standard", relative=False, adapt_scale=False),
    MotionMode("avd", relative=False, adapt_scale=False, avd=True),
)
"""The authors' demo modes: ``relative`` (its default; the movement scale is always adapted), ``standard`` (the
driving keypoints as detected) and ``avd`` (the AVD network's keypoints; needs the second-stage checkpoint)."""

RESNET_BASE = 64
"""torchvision's ResNet-18 stem width, which the authors' keypoint detector and background predictor use."""


@dataclass(frozen=True)
class Widths:
    """The widths the yaml cannot state (hard-coded in the authors' code), as read from a checkpoint."""

    resnet: int = RESNET_BASE
    bg_resnet: int = RESNET_BASE
    avd_hidden: tuple[int, int, int] = HIDDEN

    @classmethod
    def of(cls, states: dict[str, dict[str, torch.Tensor]]) -> Widths:
        def base(name: str, prefix: str) -> int:
            state = states.get(name)
            key = f"{prefix}conv1.weight"
            return int(state[key].shape[0]) if state and key in state else RESNET_BASE

        avd = states.get("avd_network")
        hidden = HIDDEN
        if avd and all(f"id_encoder.{i}.weight" in avd for i in (0, 3, 6)):
            hidden = AVDNetwork.hidden_in(avd)
        return cls(base("kp_detector", "fg_encoder."), base("bg_predictor", "bg_encoder."), hidden)


@dataclass
class TpsmmNets:
    """The five networks of one TPSMM model, in the checkpoint contract's order (``bg_predictor`` / ``avd_network``:
    None when not loaded)."""

    kp_detector: KPDetector
    dense_motion_network: DenseMotionNetwork
    inpainting_network: InpaintingNetwork
    bg_predictor: BGMotionPredictor | None = None
    avd_network: AVDNetwork | None = None

    def named(self) -> dict[str, nn.Module]:
        """The networks that exist, by checkpoint entry."""
        return {name: module for name, module in vars(self).items() if module is not None}


def build_tpsmm_networks(config: TpsmmConfig, widths: Widths = Widths(), *, device: str | torch.device = "cpu",
                         avd: bool = True, bg_predictor: bool | None = None) -> TpsmmNets:
    """The networks of ``config`` with random weights on ``device`` (``"meta"`` builds them without memory).

    avd: build the AVD network; bg_predictor: build the background predictor (default: when the config has
    ``bg``). ``widths``: the hard-coded widths (the released models': torchvision's ResNet-18 and 256/512/1024).
    """
    common = config.common
    with torch.device(device):
        nets = TpsmmNets(
            kp_detector=KPDetector(common.num_tps, base_width=widths.resnet),
            dense_motion_network=DenseMotionNetwork(
                config.dense_motion.block_expansion, config.dense_motion.num_blocks, config.dense_motion.max_features,
                common.num_tps, common.num_channels, scale_factor=config.dense_motion.scale_factor, bg=common.bg,
                multi_mask=common.multi_mask),
            inpainting_network=InpaintingNetwork(
                common.num_channels, config.generator.block_expansion, config.generator.max_features,
                config.generator.num_down_blocks, multi_mask=common.multi_mask),
            avd_network=AVDNetwork(common.num_tps, config.avd.id_bottle_size, config.avd.pose_bottle_size,
                                   hidden=widths.avd_hidden) if avd else None,
            bg_predictor=(BGMotionPredictor(widths.bg_resnet)
                          if (common.bg if bg_predictor is None else bg_predictor) else None))
    return nets


@dataclass
class TpsmmModel(MotionModel):
    """A TPSMM model in eval mode on one device.

    networks: the keypoint detector, dense motion network, inpainting network, and the AVD network (None: the
    checkpoint is a first-stage one, so the ``avd`` mode is refused) and background predictor (None unless
    asked for: inference does not use it).
    """

    networks: TpsmmNets
    config: TpsmmConfig
    device: torch.device
    name: str = "custom"
    checkpoint: Path | None = None
    _inference: dict = field(default_factory=dict, repr=False)

    family: ClassVar[str] = "tpsmm"
    modes: ClassVar[tuple[MotionMode, ...]] = TPSMM_MODES

    @property
    def frame_size(self) -> Size:
        return self.config.frame_size

    @property
    def has_avd(self) -> bool:
        return self.networks.avd_network is not None

    def mode(self, *, relative: bool, adapt_scale: bool, avd: bool = False) -> MotionMode:
        """As :meth:`MotionModel.mode`; the avd mode also needs the AVD network's weights."""
        chosen = super().mode(relative=relative, adapt_scale=adapt_scale, avd=avd)
        if chosen.avd and not self.has_avd:
            raise no_avd_error(self.checkpoint)
        return chosen

    def movement_scale(self, source: Keypoints, reference: Keypoints, *, adapt_scale: bool) -> float:
        """sqrt(hull area of the source's keypoints) / sqrt(that of the reference's) (the authors' ``relative_kp``):
        TPSMM always adapts the scale of relative motion, whatever ``adapt_scale`` says. cv2's hull keeps the
        float32 keypoints exactly and its area is summed in float64, as scipy's ConvexHull.volume is."""
        return movement_scale(source, reference)

    def transfer(self, source: Keypoints, driving: Keypoints, reference: Keypoints | None, *, relative: bool,
                 scale: float, avd: bool = False) -> Keypoints:
        """standard: the driving keypoints; relative: (driving - reference) * scale + source; avd: the AVD
        network's keypoints of the source's identity in the driving pose (``reference`` unused)."""
        if avd:
            network = self.networks.avd_network
            if network is None:
                raise no_avd_error(self.checkpoint)
            with torch.autocast(self.device.type, enabled=False):
                return Keypoints(network(source.value.float(), driving.value.float()))
        return normalize_keypoints(source, driving, reference, relative=relative, scale=scale)

    def background_predictor(self) -> BGMotionPredictor | None:
        """The background predictor (Sec. 3.2), for reconstruction: the loaded one, else read once from the
        checkpoint when the config has ``bg`` and the file holds it; None otherwise (no background motion, as a
        first-stage checkpoint saved before ``bg_start``)."""
        if self.networks.bg_predictor is not None or not self.config.common.bg or self.checkpoint is None:
            return self.networks.bg_predictor
        if "bg_predictor" not in self._inference:
            data = read_tpsmm_checkpoint(self.checkpoint)
            network = None
            if "bg_predictor" in data:
                state = strip_prefix(_state(self.checkpoint, "bg_predictor", data["bg_predictor"]))
                network = build_tpsmm_networks(self.config, Widths.of({"bg_predictor": state}), device="meta",
                                               avd=False, bg_predictor=True).bg_predictor
                assert network is not None
                problems = describe_mismatch("bg_predictor", *mismatch(network, state))
                if problems:
                    raise CheckpointError(f"checkpoint {self.checkpoint}: its bg_predictor does not fit TPSMM config "
                                          f"{self.config.path or self.config.name}", details=problems)
                network.load_state_dict(state, strict=True, assign=True)
                network.to(self.device).eval().requires_grad_(False)
            else:
                log.warning("fomm_lab: checkpoint %s has no bg_predictor: reconstructing without background motion",
                            self.checkpoint)
            self._inference["bg_predictor"] = network
        return self._inference["bg_predictor"]

    def reconstruction(self, source: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The authors' reconstruction (``reconstruction.py``; the paper's Sec. 4 evaluation) from ``source``
        (1, 3, H, W) in [0, 1]: driving frames (N, 3, H, W) -> predictions (N, 3, H, W), with the driving keypoints
        as detected (the ``standard`` mode) and the background affine of :meth:`background_predictor` for each
        frame (``bg_param``, Sec. 3.2) when there is one. float32, as the authors evaluate."""
        nets = cast(TpsmmNetworks, self.inference_networks())
        kp_source = nets.kp_detector(source)
        state = nets.prepare(source, kp_source)
        background = self.background_predictor()

        def predict(driving: torch.Tensor) -> torch.Tensor:
            kp_driving = nets.kp_detector(driving)
            bg_param = None if background is None else background(source.expand(len(driving), -1, -1, -1), driving)
            motion = nets.dense_motion(state.motion, kp_driving.value, bg_param)
            return nets.decode(source, state.features, motion.deformation, motion.occlusion)

        return predict

    def inference_networks(self, *, dtype: torch.dtype = torch.float32, compile: bool = False) -> InferenceNetworks:
        """The networks as the Animator runs them, once per (dtype, compile). bfloat16 / float16 run the
        convolutions of the dense motion and inpainting networks under autocast (the TPS solve, the flow, the
        sampling and the blends stay float32); the keypoint detector stays float32."""
        return self.variant((dtype, compile), lambda: self._build_inference(dtype, compile))

    def inference_modules(self, dtype: torch.dtype = torch.float32
                          ) -> tuple[KPDetector, DenseMotionNetwork, InpaintingNetwork]:
        """The keypoint detector, dense motion and inpainting networks as inference runs them, made once per
        precision. The dense motion and inpainting networks in their exact inference form
        (:mod:`fomm_lab.engine.fast.tpsmm`): float32 with Winograd's convolutions on the CPU; bfloat16 / float16 a
        channels-last copy of the float32 form with the convolutions' weights in that precision (norms float32;
        bfloat16 runs the wide 3x3 layers by F(2x2, 3x3) on CPUs where it pays,
        :func:`~fomm_lab.engine.fast.fuse.enable_winograd_f2`). The keypoint detector is always the paper's
        float32 network, its batch norms unfolded: the TPS solve amplifies its rounding into the frames, and
        folding costs accuracy for no measurable time (docs/performance.md); with the reduced precisions, whose
        frames come channels-last, a copy with its weights channels-last (the convolutions would otherwise convert
        them on every call) and its convolutions as :class:`~fomm_lab.engine.fast.conv.FusedConv` (nothing
        folded; open to the tuner's forms)."""
        key = f"{dtype}-modules"
        if key not in self._inference:
            from ..fast.fuse import enable_winograd, enable_winograd_f2
            from ..fast.tpsmm import convolutions_as_fused, fuse_tpsmm
            from ..fast.variants import converted_copy

            if dtype == torch.float32:
                nets = self.networks
                modules = [nets.kp_detector, fuse_tpsmm(nets.dense_motion_network),
                           fuse_tpsmm(nets.inpainting_network)]
                if self.device.type == "cpu":
                    for module in modules[1:]:
                        enable_winograd(module)
            else:
                kp_detector, dense, inpainting = self.inference_modules(torch.float32)
                # the detector float32, its weights channels-last like the frames it is given, its convolutions
                # open to the exact forms (Winograd left out: slower than direct on its narrow layers)
                detector = converted_copy(convolutions_as_fused(kp_detector), torch.float32)
                modules = [detector, converted_copy(dense, dtype), converted_copy(inpainting, dtype)]
                if dtype == torch.bfloat16 and self.device.type == "cpu":
                    for module in modules[1:]:
                        enable_winograd_f2(module)  # where it pays on this CPU
            self._inference[key] = tuple(modules)
        return self._inference[key]

    def _build_inference(self, dtype: torch.dtype, compile: bool) -> TpsmmNetworks:
        kp_detector, dense, inpainting = self.inference_modules(dtype)
        wrap: Callable[[Callable], Callable] = ((lambda fn: torch.compile(fn, dynamic=False)) if compile
                                                else (lambda fn: fn))
        return TpsmmNetworks(
            kp_detector=wrap(KeypointsOf(kp_detector)),
            dense_motion=wrap(dense),
            prepare_motion=dense.prepare,
            encode=inpainting.encode,
            decode=wrap(inpainting.decode),
            dtype=dtype,
            channels_last=dtype != torch.float32,
        )


class KeypointsOf:
    """A keypoint detector returning :class:`Keypoints` (value (N, K * 5, 2), no jacobians)."""

    def __init__(self, detector: KPDetector):
        self.detector = detector

    def __call__(self, frames: torch.Tensor) -> Keypoints:
        return Keypoints(self.detector(frames).float())


@dataclass(frozen=True)
class TpsmmSource:
    """What TPSMM computes once per source image: the image (1, 3, H, W), the inpainting encoder's features
    (finest first) and the dense motion network's source inputs."""

    image: torch.Tensor
    features: list[torch.Tensor]
    motion: SourceMotion


@dataclass(frozen=True, kw_only=True)
class TpsmmNetworks(InferenceNetworks):
    """TPSMM's networks as the Animator runs them.

    prepare_motion: (source, keypoints (1, 5K, 2)) -> SourceMotion; encode: source -> encoder features (once per
    source). dense_motion: (SourceMotion, driving keypoints (N, 5K, 2)) -> DenseMotion; decode: (source, features,
    deformation, occlusion masks) -> (N, 3, H, W) in [0, 1] (per frame).
    """

    prepare_motion: Callable
    encode: Callable
    dense_motion: Callable
    decode: Callable

    def prepare(self, source: torch.Tensor, keypoints: Keypoints) -> TpsmmSource:
        motion = self.prepare_motion(source, keypoints.value)
        with self.autocast_to(source.device.type):
            features = self.encode(source)
        return TpsmmSource(source, features, motion)

    def generate(self, state: TpsmmSource, keypoints: Keypoints) -> torch.Tensor:
        motion = self.dense_motion(state.motion, keypoints.value)
        return self.decode(state.image, state.features, motion.deformation, motion.occlusion)


def no_avd_error(checkpoint: Path | None) -> FommLabError:
    where = f"checkpoint {checkpoint}" if checkpoint is not None else "this model (random weights)"
    return FommLabError(f"{where} has no avd_network: the avd mode needs the second-stage checkpoint that the "
                        "authors' train_avd.py writes; use the relative or standard mode, or that checkpoint")


def load_tpsmm(config: TpsmmConfig | str | Path, checkpoint: str | Path | None = None, *,
               device: str | torch.device | None = None, bg_predictor: bool = False,
               name: str | None = None) -> TpsmmModel:
    """Build a TPSMM model from a config (a :class:`TpsmmConfig` or the authors' yaml) and load a checkpoint.

    The ResNet-18 width and the AVD network's hidden widths, which the yaml cannot state, are read from the
    checkpoint. checkpoint None: random weights (tests, benchmarks; a warning says so). bg_predictor: also load
    the background predictor (reconstruction and training only). device: None picks cuda > mps > cpu.
    CheckpointError for a file that is not a TPSMM checkpoint (a FOMM one is named as such) or does not fit the
    config.
    """
    cfg = config if isinstance(config, TpsmmConfig) else load_tpsmm_config(config)
    chosen = pick_device(device)
    if checkpoint is None:
        log.warning("fomm_lab: no checkpoint given for TPSMM config %s: the model has random weights", cfg.name)
        nets = build_tpsmm_networks(cfg, bg_predictor=bg_predictor and cfg.common.bg)
    else:
        nets = _load_weights(cfg, Path(checkpoint), bg_predictor)
    for module in nets.named().values():
        module.to(chosen).eval().requires_grad_(False)
    return TpsmmModel(nets, cfg, chosen, name=name or cfg.name,
                      checkpoint=Path(checkpoint) if checkpoint is not None else None)


def _load_weights(cfg: TpsmmConfig, path: Path, bg_predictor: bool) -> TpsmmNets:
    return networks_from_checkpoint(cfg, path, read_tpsmm_checkpoint(path), bg_predictor=bg_predictor)


def networks_from_checkpoint(cfg: TpsmmConfig, path: Path, data: dict, *, bg_predictor: bool,
                             avd: bool = True) -> TpsmmNets:
    """The networks of ``cfg`` with the weights of the checkpoint dict ``data`` (read from ``path`` by
    :func:`~.checkpoint.read_tpsmm_checkpoint`), loaded strictly, in train mode on the CPU: the three inference
    networks, ``avd_network`` when ``avd`` and the file has it, ``bg_predictor`` when asked (CheckpointError when
    the file has none). The widths the yaml cannot state come from the file (:class:`Widths`)."""
    wanted = ["kp_detector", "dense_motion_network", "inpainting_network"] + (["avd_network"] if avd else [])
    if bg_predictor:
        if "bg_predictor" not in data:
            raise CheckpointError(f"checkpoint {path} has no bg_predictor (the config's bg is {cfg.common.bg}): the "
                                  "background predictor cannot be loaded; load without it")
        wanted.append("bg_predictor")
    states = {key: strip_prefix(_state(path, key, data[key])) for key in wanted if key in data}
    nets = build_tpsmm_networks(cfg, Widths.of(states), avd="avd_network" in states, bg_predictor=bg_predictor)
    modules = nets.named()
    problems = [line for key, module in modules.items()
                for line in describe_mismatch(key, *mismatch(module, states[key]))]
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit TPSMM config {cfg.path or cfg.name}",
                              details=[*_file_facts(states), *problems])
    bad = [f"{key}.{name}" for key in modules for name in non_finite(states[key])]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights ({shorten(bad, 3)}): it is damaged "
                              "or its training diverged; use another checkpoint")
    for key, module in modules.items():
        module.load_state_dict(states[key], strict=True)
    return nets


def _state(path: Path, key: str, value: Any) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict) or not all(torch.is_tensor(v) for v in value.values()):
        raise CheckpointError(f"checkpoint {path}: its {key!r} entry is not a state dict of tensors; it is damaged "
                              "or not a TPSMM checkpoint")
    return value


def _file_facts(states: dict[str, dict[str, torch.Tensor]]) -> list[str]:
    """What the file's shapes say about the model it was trained with (the yaml must agree)."""
    facts = []
    fc = states["kp_detector"].get("fg_encoder.fc.weight")
    if fc is not None:
        facts.append(f"the file has num_tps {fc.shape[0] // 10} (kp_detector.fg_encoder.fc.weight {tuple(fc.shape)})")
    first = states["inpainting_network"].get("first.conv.weight")
    if first is not None:
        facts.append(f"the file has generator_params.block_expansion {first.shape[0]}")
    if "fg_encoder.layer1.0.conv1.weight" in states["kp_detector"]:
        facts.append(f"its keypoint ResNet-18 widths are {ResNet18.widths_in(states['kp_detector'], 'fg_encoder.')}")
    return facts
