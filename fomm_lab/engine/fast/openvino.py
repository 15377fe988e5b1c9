"""The OpenVINO backend: the model's ONNX graphs (:mod:`fomm_lab.engine.fast.onnx`) compiled by OpenVINO for the CPU.

``Animator(model, backend="openvino")`` (or ``fomm-lab animate --backend openvino``) runs the keypoint
detector, dense motion network and generator decode (and, once per source, the encoder) through OpenVINO
instead of PyTorch; what is between them (keypoint normalisation, Eq. 9-10 of the paper, and the source's
motion inputs) stays in PyTorch. Needs ``pip install fomm-lab[openvino]``.

Precision: float32, or bfloat16 / float16 (OpenVINO's ``INFERENCE_PRECISION_HINT``) on CPUs that compute them
natively (OpenVINO's ``OPTIMIZATION_CAPABILITIES``); elsewhere a reduced precision falls back to float32 with
a warning, since OpenVINO would silently run float32 anyway. Threads: ``torch.get_num_threads()``.
The graphs are exported and compiled once per model and precision, and shared by every Animator.
"""

from __future__ import annotations

import importlib
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ...errors import FommLabError
from ..fomm_networks import FommNetworks
from ..keypoints import Keypoints
from .backends import missing_openvino
from .onnx import GRAPHS, ExportedModel, export_onnx, flatten, read_manifest

if TYPE_CHECKING:
    from ..model import FommModel

log = logging.getLogger(__name__)

_PRECISIONS = {torch.float32: ("f32", "FP32"), torch.bfloat16: ("bf16", "BF16"), torch.float16: ("f16", "FP16")}


def require_openvino() -> Any:
    """The ``openvino`` module, or a FommLabError saying how to install it."""
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise missing_openvino() from exc


def native_precisions(core: Any) -> set[torch.dtype]:
    """The precisions this CPU computes natively according to OpenVINO."""
    capabilities = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {dtype for dtype, (_, name) in _PRECISIONS.items() if name in capabilities}


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to(torch.float32).cpu().numpy())


class _Graph:
    """One compiled graph called with tensors by name; returns its outputs as CPU torch tensors, in order."""

    def __init__(self, compiled: Any, inputs: tuple[str, ...]):
        self.compiled = compiled
        self.inputs = inputs
        self.outputs = list(compiled.outputs)

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        result = self.compiled({name: _to_numpy(t) for name, t in zip(self.inputs, tensors)})
        return [torch.from_numpy(np.array(result[out], copy=True)) for out in self.outputs]


def compile_graphs(exported: ExportedModel, dtype: torch.dtype,
                   threads: int | None = None) -> tuple[dict[str, _Graph], torch.dtype]:
    """Compile the exported graphs for the CPU in ``dtype`` (float32 where the CPU lacks it, with a warning);
    returns them by name and the precision used."""
    ov = require_openvino()
    core = ov.Core()
    if dtype != torch.float32 and dtype not in native_precisions(core):
        warnings.warn(f"this CPU has no native {str(dtype).replace('torch.', '')} for OpenVINO: running float32",
                      stacklevel=3)
        dtype = torch.float32
    config = {"INFERENCE_PRECISION_HINT": _PRECISIONS[dtype][0], "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
    graphs = {}
    for name in GRAPHS:
        spec = exported.graphs[name]
        graphs[name] = _Graph(core.compile_model(core.read_model(str(exported.path(name))), "CPU", config),
                              spec.inputs)
    return graphs, dtype


def openvino_networks(model: FommModel, *, dtype: torch.dtype = torch.float32, folder: str | Path | None = None,
                      threads: int | None = None) -> FommNetworks:
    """The :class:`~fomm_lab.engine.fomm_networks.FommNetworks` of ``model`` run by OpenVINO.

    folder: an existing ONNX export of this model (``fomm-lab export``) to compile instead of exporting anew.
    Made once per model, precision and folder.
    """
    require_openvino()
    key = ("openvino", dtype, str(folder) if folder is not None else None, threads)
    return cast(FommNetworks, model.variant(key, lambda: _build(model, dtype, folder, threads)))


def _build(model: FommModel, dtype: torch.dtype, folder: str | Path | None, threads: int | None) -> FommNetworks:
    if folder is not None:
        exported = read_manifest(folder)
        _check_fits(exported, model)
        graphs, used = compile_graphs(exported, dtype, threads)
    else:
        with tempfile.TemporaryDirectory(prefix="fomm-lab-onnx-") as tmp:
            log.info("fomm_lab: exporting the ONNX graphs for OpenVINO")
            exported = export_onnx(model, Path(tmp) / "graphs")
            graphs, used = compile_graphs(exported, dtype, threads)  # OpenVINO holds them in memory from here on
    kp_graph, encoder, motion, decoder = (graphs[name] for name in GRAPHS)
    fields = exported.motion_fields
    jacobian, occlusion = exported.jacobian, exported.occlusion
    _, generator = model.float32_networks()

    def kp_detector(image: torch.Tensor) -> Keypoints:
        outs = kp_graph(image)
        return Keypoints(outs[0], outs[1] if jacobian else None)

    def encode(source: torch.Tensor) -> torch.Tensor:
        return encoder(source)[0]

    def prepare_motion(source: torch.Tensor, keypoints: Keypoints):
        with torch.inference_mode():
            return generator.dense_motion_network.prepare(source.to(model.device), _on(keypoints, model.device))

    def dense_motion(cache, keypoints: Keypoints):
        tensors = dict(flatten(cache))
        kp = [keypoints.value] + ([keypoints.jacobian] if jacobian and keypoints.jacobian is not None else [])
        outs = motion(*[tensors[path] for path in fields], *kp)
        return outs[0], (outs[1] if occlusion else None)

    def decode(features: torch.Tensor, deformation: torch.Tensor, occlusion_map: torch.Tensor | None):
        return decoder(features, deformation, *([occlusion_map] if occlusion and occlusion_map is not None else []))[0]

    calls: dict[str, Callable] = {"kp_detector": kp_detector, "encode": encode, "prepare_motion": prepare_motion,
                                  "dense_motion": dense_motion, "decode": decode}
    return FommNetworks(**calls, dtype=used, keypoint_dtype=used if used == torch.bfloat16 else torch.float32,
                        channels_last=False, autocast=False, backend="openvino")


def _on(keypoints: Keypoints, device: torch.device) -> Keypoints:
    jac = keypoints.jacobian.to(device) if keypoints.jacobian is not None else None
    return Keypoints(keypoints.value.to(device), jac)


def _check_fits(exported: ExportedModel, model: FommModel) -> None:
    size = tuple(model.frame_size)
    problems = []
    if exported.family != model.family:
        problems.append(f"a {exported.family} model vs a {model.family} model")
    if exported.frame_size != size:
        problems.append(f"frame size {exported.frame_size[0]}x{exported.frame_size[1]} vs {size[0]}x{size[1]}")
    if exported.num_kp != model.config.common.num_kp:
        problems.append(f"{exported.num_kp} keypoints vs {model.config.common.num_kp}")
    if problems:
        raise FommLabError(f"the ONNX export in {exported.folder} is not of this model ({'; '.join(problems)}); "
                           "export this model's graphs with `fomm-lab export --format onnx`")
