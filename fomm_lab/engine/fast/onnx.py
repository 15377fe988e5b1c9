"""ONNX export of a loaded model: the four graphs the Animator runs, for ONNX Runtime, OpenVINO and others.

``export_onnx(model, "vox-onnx")`` writes, into a new folder (atomically: a failed export leaves nothing), for a
First Order Motion Model:

* ``kp_detector.onnx``:    image (N, 3, H, W) float32 in [0, 1] -> kp_value (N, K, 2) [, kp_jacobian (N, K, 2, 2)];
* ``source_encoder.onnx``: source (1, 3, H, W) -> features (1, F, h', w'), the generator's encoder;
* ``dense_motion.onnx``:   the source's motion inputs (its :class:`~fomm_lab.engine.nets.SourceMotionCache`,
  field by field, e.g. ``source_image``, ``source_heatmaps``, ``source_kp_value`` ...) and the driving
  keypoints ``kp_value`` (N, K, 2) [, ``kp_jacobian``] -> deformation (N, h, w, 2) [, occlusion (N, 1, h, w)]
  (paper Eq. 4-8);
* ``decode.onnx``:         features, deformation [, occlusion] -> prediction (N, 3, H, W) in [0, 1];
* ``manifest.json``:       the model (name, family, config, frame size, the motion modes the graphs run), each
  graph's file, inputs and outputs, and the motion inputs' structure, so a runtime can rebuild the stages
  without this package's source.

For a Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022) the same four graphs, with K splines of 5 control
points each (``num_kp`` = 5K in the manifest) and D encoder scales, M occlusion masks (4 in the released models):

* ``kp_detector.onnx``:    image (N, 3, H, W) -> kp_value (N, 5K, 2), the splines' control points (Sec. 3.1);
* ``source_encoder.onnx``: source (1, 3, H, W) -> features_0 (1, C_0, H, W) ... features_D (finest first), the
  inpainting network's encoder;
* ``dense_motion.onnx``:   the source's :class:`~fomm_lab.engine.nets.tpsmm.SourceMotion` (``source_image``,
  ``source_heatmaps``, ``source_keypoints``, ``source_grid``) and the transferred control points ``kp_value``
  (N, 5K, 2) -> deformation (N, h, w, 2), occlusion_0 ... occlusion_{M-1} (coarsest first; Eq. 2 and 6). The
  8x8 thin-plate-spline systems are solved in the graph by Gauss-Jordan elimination with partial pivoting
  (:func:`~fomm_lab.engine.nets.tpsmm.solve.gauss_jordan_solve`: ONNX has no matrix inverse);
* ``decode.onnx``:         source, features_0..D, deformation, occlusion_0..M-1 -> prediction (N, 3, H, W);
* ``avd_network.onnx``, only for a model with the AVD network (the ``avd`` mode): kp_source (1, 5K, 2),
  kp_driving (N, 5K, 2) -> kp_value (N, 5K, 2). The manifest's ``modes`` lists the modes the export can run.

The batch axis N of the per-frame inputs is dynamic. The graphs are those of the fused float32 networks
(exact rewrites: :mod:`fomm_lab.engine.fast.fuse`, :mod:`fomm_lab.engine.fast.tpsmm`) in standard operators
(opset 17: GridSample, Einsum, DepthToSpace, InstanceNormalization): any topology the engine builds exports,
since the export traces the networks' own code. What is between the graphs is small and stays with the caller:
the keypoint normalisation (FOMM's Eq. 9-10, TPSMM's relative mode: ``model.transfer``) and the source's motion
inputs (``dense_motion_network.prepare``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ...errors import FommLabError
from ..keypoints import Keypoints

if TYPE_CHECKING:
    from ..family import MotionModel
    from ..model import FommModel
    from ..nets import KPDetector, OcclusionAwareGenerator
    from ..nets.tpsmm import AVDNetwork, DenseMotionNetwork, InpaintingNetwork
    from ..nets.tpsmm import KPDetector as TpsmmKPDetector
    from ..tpsmm.model import TpsmmModel

log = logging.getLogger(__name__)

OPSET = 17
FORMAT_VERSION = 1
GRAPHS = ("kp_detector", "source_encoder", "dense_motion", "decode")
"""The graphs every export has (a TPSMM model with the AVD network adds ``avd_network``)."""
FAMILIES = ("fomm", "tpsmm")
"""The model families that export."""


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its file (relative to the export folder), input and output names."""

    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class ExportedModel:
    """What :func:`export_onnx` wrote (or :func:`read_manifest` read): the folder, the graphs and the model facts."""

    folder: Path
    graphs: dict[str, GraphSpec]
    frame_size: tuple[int, int]  # (width, height)
    num_kp: int
    jacobian: bool
    occlusion: bool
    motion_fields: tuple[str, ...]  # dense_motion's source inputs, in order: paths into the SourceMotionCache
    model: str = ""
    family: str = "fomm"
    modes: tuple[str, ...] = ()  # the motion modes the graphs run (labels of the family's MotionMode)

    def path(self, graph: str) -> Path:
        return self.folder / self.graphs[graph].file


# ---------------------------------------------------------------------------------- flat tensor structures


_CONSTANTS = (type(None), bool, int, float, str)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """The tensors of a (nested) dataclass of tensors, Keypoints and constants (None, numbers, strings), as
    (dotted path, tensor), in field order; the constants stay with the structure (traced into the graph)."""
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, _CONSTANTS):
        return []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = []
        for f in dataclasses.fields(value):
            out += flatten(getattr(value, f.name), f"{prefix}.{f.name}" if prefix else f.name)
        return out
    raise TypeError(f"cannot flatten {type(value).__name__} at {prefix or 'top level'} for export")


def unflatten(template: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Rebuild ``template``'s structure with the tensors of ``tensors`` (dotted path -> tensor); constants stay."""
    if isinstance(template, torch.Tensor):
        return tensors[prefix]
    if isinstance(template, _CONSTANTS):
        return template
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        changes = {f.name: unflatten(getattr(template, f.name), tensors, f"{prefix}.{f.name}" if prefix else f.name)
                   for f in dataclasses.fields(template)}
        return dataclasses.replace(template, **changes)
    raise TypeError(f"cannot rebuild {type(template).__name__} at {prefix or 'top level'}")


def onnx_name(path: str) -> str:
    """The graph input name of a motion field: ``keypoints.value`` -> ``source_keypoints_value``."""
    return "source_" + path.replace(".", "_")


# ---------------------------------------------------------------------------------------- graph modules


class KeypointGraph(nn.Module):
    """image (N, 3, H, W) -> kp_value (N, K, 2) [, kp_jacobian (N, K, 2, 2)]."""

    kp_detector: KPDetector

    def __init__(self, kp_detector: KPDetector):
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: torch.Tensor):
        keypoints = self.kp_detector(image)
        return keypoints.value if keypoints.jacobian is None else (keypoints.value, keypoints.jacobian)


class EncoderGraph(nn.Module):
    """source (1, 3, H, W) -> features (1, F, h', w')."""

    generator: OcclusionAwareGenerator

    def __init__(self, generator: OcclusionAwareGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.generator.encode(source)


class DenseMotionGraph(nn.Module):
    """(motion fields of the source..., kp_value [, kp_jacobian]) -> deformation [, occlusion]."""

    dense_motion: nn.Module

    def __init__(self, dense_motion: nn.Module, template: Any, jacobian: bool):
        super().__init__()
        self.dense_motion = dense_motion
        self.template = template
        self.paths = [path for path, _ in flatten(template)]
        self.jacobian = jacobian

    def forward(self, *inputs: torch.Tensor):
        fields = dict(zip(self.paths, inputs))
        cache = unflatten(self.template, fields)
        rest = inputs[len(self.paths):]
        keypoints = Keypoints(rest[0], rest[1] if self.jacobian else None)
        deformation, occlusion = self.dense_motion(cache, keypoints)
        return deformation if occlusion is None else (deformation, occlusion)


class DecodeGraph(nn.Module):
    """(features (1, F, h', w'), deformation (N, h, w, 2) [, occlusion (N, 1, h, w)]) -> prediction (N, 3, H, W)."""

    generator: OcclusionAwareGenerator

    def __init__(self, generator: OcclusionAwareGenerator, occlusion: bool):
        super().__init__()
        self.generator = generator
        self.occlusion = occlusion

    def forward(self, features: torch.Tensor, deformation: torch.Tensor, *occlusion: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(features, deformation, occlusion[0] if self.occlusion else None)


class TpsmmKeypointGraph(nn.Module):
    """TPSMM: image (N, 3, H, W) -> kp_value (N, 5K, 2), the control points of the K thin-plate splines."""

    kp_detector: TpsmmKPDetector

    def __init__(self, kp_detector: TpsmmKPDetector):
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.kp_detector(image)


class TpsmmEncoderGraph(nn.Module):
    """TPSMM: source (1, 3, H, W) -> (features_0 (1, C_0, H, W), ..., features_D (1, C_D, H / 2^D, W / 2^D))."""

    inpainting: InpaintingNetwork

    def __init__(self, inpainting: InpaintingNetwork):
        super().__init__()
        self.inpainting = inpainting

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.inpainting.encode(source))


class TpsmmDenseMotionGraph(nn.Module):
    """TPSMM: (the SourceMotion's tensors..., kp_value (N, 5K, 2)) -> (deformation (N, h, w, 2), occlusion masks
    (N, 1, ., .) coarsest first)."""

    dense_motion: DenseMotionNetwork

    def __init__(self, dense_motion: DenseMotionNetwork, template: Any):
        super().__init__()
        self.dense_motion = dense_motion
        self.template = template
        self.paths = [path for path, _ in flatten(template)]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        source = unflatten(self.template, dict(zip(self.paths, inputs)))
        motion = self.dense_motion(source, inputs[len(self.paths)])
        return (motion.deformation, *motion.occlusion)


class TpsmmDecodeGraph(nn.Module):
    """TPSMM: (source (1, 3, H, W), features_0..D, deformation (N, h, w, 2), occlusion masks...) -> prediction
    (N, 3, H, W) in [0, 1]."""

    inpainting: InpaintingNetwork

    def __init__(self, inpainting: InpaintingNetwork, num_features: int):
        super().__init__()
        self.inpainting = inpainting
        self.num_features = num_features

    def forward(self, source: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        features, deformation = list(rest[:self.num_features]), rest[self.num_features]
        return self.inpainting.decode(source, features, deformation, list(rest[self.num_features + 1:]))


class AvdGraph(nn.Module):
    """TPSMM's AVD network: (kp_source (1, 5K, 2), kp_driving (N, 5K, 2)) -> kp_value (N, 5K, 2)."""

    avd_network: AVDNetwork

    def __init__(self, avd_network: AVDNetwork):
        super().__init__()
        self.avd_network = avd_network

    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return self.avd_network(kp_source, kp_driving)


# ----------------------------------------------------------------------------------------------- export


def _example_frames(model: MotionModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Real example frames for tracing: a smooth random source (1, 3, H, W) and a batch of 2 driving frames."""
    size = model.frame_size
    lowres = torch.rand(3, 3, size.height // 8, size.width // 8, generator=torch.Generator().manual_seed(0))
    frames = torch.nn.functional.interpolate(lowres, size=(size.height, size.width), mode="bilinear")
    return frames[:1].contiguous().to(model.device), frames[1:].contiguous().to(model.device)


Job = tuple[str, nn.Module, list[torch.Tensor], dict[str, dict[int, str]]]
"""One graph to write: its name, the module to trace, example inputs and dynamic axes (by input/output name)."""


@dataclass(frozen=True)
class _Plan:
    """What :func:`export_onnx` writes for one model: the graphs, how to trace them, and the manifest's facts."""

    specs: dict[str, GraphSpec]
    jobs: list[Job]
    num_kp: int
    jacobian: bool
    occlusion: bool
    motion_fields: tuple[str, ...]
    modes: tuple[str, ...]


_BATCH = {0: "batch"}


def _fomm_plan(model: FommModel) -> _Plan:
    kp_detector, generator = model.float32_networks()
    source, driving = _example_frames(model)
    with torch.no_grad():
        kp_source, kp_driving = kp_detector(source), kp_detector(driving)
        cache = generator.dense_motion_network.prepare(source, kp_source)
        features = generator.encode(source)
        deformation, occlusion = generator.dense_motion_network(cache, kp_driving)
    jacobian = kp_driving.jacobian is not None
    kp_outputs = ("kp_value", "kp_jacobian") if jacobian else ("kp_value",)
    motion = flatten(cache)
    motion_names = tuple(onnx_name(path) for path, _ in motion)
    batch = _BATCH
    specs = {
        "kp_detector": GraphSpec("kp_detector.onnx", ("image",), kp_outputs),
        "source_encoder": GraphSpec("source_encoder.onnx", ("source",), ("features",)),
        "dense_motion": GraphSpec("dense_motion.onnx", motion_names + kp_outputs,
                                  ("deformation", "occlusion") if occlusion is not None else ("deformation",)),
        "decode": GraphSpec("decode.onnx", ("features", "deformation") + (("occlusion",) if occlusion is not None
                                                                          else ()), ("prediction",)),
    }
    kp_args = [kp_driving.value] + ([kp_driving.jacobian] if jacobian else [])
    jobs: list[Job] = [
        ("kp_detector", KeypointGraph(kp_detector), [driving], {"image": batch, **{n: batch for n in kp_outputs}}),
        ("source_encoder", EncoderGraph(generator), [source], {}),
        ("dense_motion", DenseMotionGraph(generator.dense_motion_network, cache, jacobian),
         [t for _, t in motion] + kp_args, {n: batch for n in kp_outputs + specs["dense_motion"].outputs}),
        ("decode", DecodeGraph(generator, occlusion is not None),
         [features, deformation] + ([occlusion] if occlusion is not None else []),
         {"deformation": batch, "occlusion": batch, "prediction": batch}),
    ]
    return _Plan(specs, jobs, int(kp_driving.value.shape[1]), jacobian, occlusion is not None,
                 tuple(p for p, _ in motion), tuple(mode.label for mode in model.modes))


def _tpsmm_plan(model: TpsmmModel) -> _Plan:
    kp_detector, dense, inpainting = model.inference_modules(torch.float32)
    avd = model.networks.avd_network
    source, driving = _example_frames(model)
    with torch.no_grad():
        kp_source, kp_driving = kp_detector(source), kp_detector(driving)
        motion_inputs = dense.prepare(source, kp_source)
        features = inpainting.encode(source)
        motion = dense(motion_inputs, kp_driving)
    fields = flatten(motion_inputs)
    feature_names = tuple(f"features_{i}" for i in range(len(features)))
    occlusion_names = tuple(f"occlusion_{i}" for i in range(len(motion.occlusion)))
    batch = _BATCH
    specs = {
        "kp_detector": GraphSpec("kp_detector.onnx", ("image",), ("kp_value",)),
        "source_encoder": GraphSpec("source_encoder.onnx", ("source",), feature_names),
        "dense_motion": GraphSpec("dense_motion.onnx", tuple(onnx_name(path) for path, _ in fields) + ("kp_value",),
                                  ("deformation",) + occlusion_names),
        "decode": GraphSpec("decode.onnx", ("source",) + feature_names + ("deformation",) + occlusion_names,
                            ("prediction",)),
    }
    per_frame = {name: batch for name in ("kp_value", "deformation", "prediction") + occlusion_names}
    jobs: list[Job] = [
        ("kp_detector", TpsmmKeypointGraph(kp_detector), [driving], {"image": batch, "kp_value": batch}),
        ("source_encoder", TpsmmEncoderGraph(inpainting), [source], {}),
        ("dense_motion", TpsmmDenseMotionGraph(dense, motion_inputs), [t for _, t in fields] + [kp_driving],
         per_frame),
        ("decode", TpsmmDecodeGraph(inpainting, len(features)),
         [source, *features, motion.deformation, *motion.occlusion], per_frame),
    ]
    modes = tuple(mode.label for mode in model.modes if not mode.avd)
    if avd is not None:
        specs["avd_network"] = GraphSpec("avd_network.onnx", ("kp_source", "kp_driving"), ("kp_value",))
        jobs.append(("avd_network", AvdGraph(avd), [kp_source, kp_driving], {"kp_driving": batch, "kp_value": batch}))
        modes += tuple(mode.label for mode in model.modes if mode.avd)
    return _Plan(specs, jobs, int(kp_driving.shape[1]), False, True, tuple(p for p, _ in fields), modes)


def _export(module: nn.Module, args: Sequence[torch.Tensor], path: Path, inputs: Sequence[str],
            outputs: Sequence[str], dynamic: dict[str, dict[int, str]], opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python values recorded as constants (frame sizes)
        torch.onnx.export(module.eval(), tuple(args), str(path), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)


def export_onnx(model: MotionModel, folder: str | Path, *, opset: int = OPSET) -> ExportedModel:
    """Write the model's ONNX graphs (see the module's description: FOMM or TPSMM) and ``manifest.json`` into the
    new folder ``folder``.

    The folder must not exist or be empty; it appears only when every graph is written (a failure leaves
    nothing). The graphs are traced in float32 on the model's device.
    """
    from ...io.atomic import atomic_output

    folder = Path(folder)
    if model.family not in FAMILIES:
        raise FommLabError(f"ONNX export handles {' and '.join(FAMILIES)} models; {model.name} is a {model.family} "
                           "model")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FommLabError(f"cannot export into {folder}: it exists and is not an empty folder; give a new folder name")
    plan = _tpsmm_plan(cast("TpsmmModel", model)) if model.family == "tpsmm" else _fomm_plan(cast("FommModel", model))
    with atomic_output(folder, directory=True) as tmp:
        for name, module, args, dynamic in plan.jobs:
            spec = plan.specs[name]
            dynamic = {k: v for k, v in dynamic.items() if k in spec.inputs + spec.outputs}
            log.info("fomm_lab: exporting %s", spec.file)
            with torch.no_grad():
                _export(module, args, tmp / spec.file, spec.inputs, spec.outputs, dynamic, opset)
        size = (model.frame_size.width, model.frame_size.height)
        exported = ExportedModel(folder, plan.specs, size, plan.num_kp, plan.jacobian, plan.occlusion,
                                 plan.motion_fields, model.name, model.family, plan.modes)
        (tmp / "manifest.json").write_text(json.dumps(_manifest(exported, model, opset), indent=2) + "\n",
                                           encoding="utf-8")
    return exported


def _manifest(exported: ExportedModel, model: MotionModel, opset: int) -> dict:
    return {
        "format": "fomm-lab-onnx", "version": FORMAT_VERSION, "opset": opset, "torch": torch.__version__,
        "model": model.name, "family": exported.family, "config": model.config.name,
        "checkpoint": model.checkpoint.name if model.checkpoint is not None else None,
        "frame_size": {"width": exported.frame_size[0], "height": exported.frame_size[1]},
        "num_kp": exported.num_kp, "jacobian": exported.jacobian, "occlusion": exported.occlusion,
        "motion_fields": list(exported.motion_fields), "modes": list(exported.modes),
        "graphs": {name: {"file": g.file, "inputs": list(g.inputs), "outputs": list(g.outputs)}
                   for name, g in exported.graphs.items()},
    }


def read_manifest(folder: str | Path) -> ExportedModel:
    """The :class:`ExportedModel` of an export folder (FommLabError naming what is missing or wrong)."""
    folder = Path(folder)
    path = folder / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FommLabError(f"{folder} is not an ONNX export of fomm-lab: it has no manifest.json; export one with "
                           "`fomm-lab export --format onnx`") from None
    except (OSError, ValueError) as exc:
        raise FommLabError(f"cannot read {path}: {exc}") from exc
    if data.get("format") != "fomm-lab-onnx" or data.get("version") != FORMAT_VERSION:
        raise FommLabError(f"{path} is not a fomm-lab ONNX manifest of version {FORMAT_VERSION}; export again")
    graphs = {name: GraphSpec(g["file"], tuple(g["inputs"]), tuple(g["outputs"])) for name, g in data["graphs"].items()}
    missing = [name for name in dict.fromkeys([*GRAPHS, *graphs])
               if name not in graphs or not (folder / graphs[name].file).is_file()]
    if missing:
        raise FommLabError(f"the ONNX export in {folder} lacks {', '.join(missing)}; export again")
    family = str(data.get("family", "fomm"))  # exports made before TPSMM exported are FOMM's
    if family not in FAMILIES:
        raise FommLabError(f"{path} is of a {family} model, which this version of fomm-lab does not run; export again")
    size = data["frame_size"]
    return ExportedModel(folder, graphs, (int(size["width"]), int(size["height"])), int(data["num_kp"]),
                         bool(data["jacobian"]), bool(data["occlusion"]), tuple(data["motion_fields"]),
                         str(data.get("model", "")), family, tuple(data.get("modes", ())))
