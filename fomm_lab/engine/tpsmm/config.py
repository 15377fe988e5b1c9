"""TPSMM configs: the authors' yaml layout (``config/vox-256.yaml`` ... of yoyo-nb/Thin-Plate-Spline-Motion-Model)
read into a typed :class:`TpsmmConfig`.

Layout: ``model_params`` with ``common_params`` (``num_tps``, ``num_channels``, ``bg``, ``multi_mask``),
``generator_params`` (the inpainting network), ``dense_motion_params`` and ``avd_network_params``, all side by
side (FOMM nests the dense motion parameters in the generator's and has ``kp_detector_params``). The yaml's
``dataset_params.frame_shape`` is null in every official config: the authors' demo takes the size from its
command line (384 for ted, 256 for the others), and so does this reader, from the config's name or dataset folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...errors import ConfigError
from ...geometry import Size
from ..config import params_from

SECTIONS = ("common_params", "generator_params", "dense_motion_params")
"""The ``model_params`` sections every TPSMM config has (``avd_network_params`` may be absent)."""

_TED = re.compile(r"(^|[-_/])ted", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class CommonParams:
    num_tps: int
    num_channels: int = 3
    bg: bool = False
    multi_mask: bool = True


@dataclass(frozen=True, kw_only=True)
class InpaintingParams:
    block_expansion: int
    max_features: int
    num_down_blocks: int


@dataclass(frozen=True, kw_only=True)
class DenseMotionParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    scale_factor: float = 0.25


@dataclass(frozen=True, kw_only=True)
class AvdParams:
    id_bottle_size: int = 64
    pose_bottle_size: int = 64


@dataclass(frozen=True, kw_only=True)
class TpsmmConfig:
    """One TPSMM model's topology.

    name: the config's name (the file's stem); path: the yaml it was read from (None for a dict); frame_size:
    the size the model works at; raw: the whole yaml (training and dataset sections).
    """

    name: str
    path: Path | None
    common: CommonParams
    generator: InpaintingParams
    dense_motion: DenseMotionParams
    avd: AvdParams
    frame_size: Size = Size(256, 256)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    family = "tpsmm"

    @property
    def num_keypoints(self) -> int:
        """5 per thin-plate spline."""
        return 5 * self.common.num_tps

    @property
    def is_face_model(self) -> bool:
        """True for models of faces, whose inputs are face-cropped by default: the yaml's own ``face: true`` when it
        says so, else for one of the authors' configs what the registry's checkpoint for it says."""
        declared = self.raw.get("face")
        if isinstance(declared, bool):
            return declared
        if self.path is not None:
            return False
        from ...hub.registry import is_face_config

        return bool(is_face_config(f"tpsmm-{self.name}"))

    @property
    def mobile(self) -> bool:
        return False

    @property
    def paddle(self) -> bool:
        return False

    def section(self, name: str) -> dict[str, Any]:
        """A top-level yaml section (``train_params``, ``dataset_params`` ...), {} when absent."""
        value = self.raw.get(name)
        return value if isinstance(value, dict) else {}


def is_tpsmm_config(data: Any) -> bool:
    """True when a parsed yaml document has TPSMM's layout: ``model_params`` with ``common_params.num_tps`` and
    ``dense_motion_params`` beside ``generator_params`` (FOMM's has ``kp_detector_params`` and ``num_kp``)."""
    params = data.get("model_params") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        return False
    common = params.get("common_params")
    return isinstance(common, dict) and "num_tps" in common and "dense_motion_params" in params


def _frame_size(raw: dict, name: str, path: Path | None) -> Size:
    section = raw.get("dataset_params")
    dataset: dict = section if isinstance(section, dict) else {}
    shape = dataset.get("frame_shape")
    if shape:
        if not isinstance(shape, (list, tuple)) or len(shape) < 2 or not all(isinstance(s, int) for s in shape[:2]):
            raise ConfigError(f"config {path or name}: dataset_params.frame_shape {shape!r} is not [height, width, 3]")
        return Size(int(shape[1]), int(shape[0]))
    root = str(dataset.get("root_dir") or "")
    side = 384 if _TED.search(name) or _TED.search(root) else 256
    return Size.square(side)


def parse_tpsmm_config(raw: Any, name: str, path: Path | None = None) -> TpsmmConfig:
    """A :class:`TpsmmConfig` from a yaml document already loaded (ConfigError naming the file and key)."""
    where = path or name
    if not is_tpsmm_config(raw):
        raise ConfigError(f"config {where} is not in the Thin-Plate Spline Motion Model layout (model_params with "
                          "common_params.num_tps and dense_motion_params, as the authors' config/vox-256.yaml)")
    params = raw["model_params"]
    for key in SECTIONS:
        if not isinstance(params.get(key), dict):
            raise ConfigError(f"config {where} has no model_params.{key} mapping")
    avd = params.get("avd_network_params") or {}
    return TpsmmConfig(
        name=name, path=path,
        common=params_from(CommonParams, params["common_params"], "model_params.common_params", path),
        generator=params_from(InpaintingParams, params["generator_params"], "model_params.generator_params", path),
        dense_motion=params_from(DenseMotionParams, params["dense_motion_params"], "model_params.dense_motion_params",
                                 path),
        avd=params_from(AvdParams, avd, "model_params.avd_network_params", path),
        frame_size=_frame_size(raw, name, path), raw=raw)


def load_tpsmm_config(path: str | Path) -> TpsmmConfig:
    """Read a TPSMM yaml file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML", details=[str(exc)]) from exc
    return parse_tpsmm_config(raw, path.stem, path)


OFFICIAL = ("vox-256", "taichi-256", "ted-384", "mgif-256")
"""The authors' configs. Their model_params are identical except ``bg: False`` for mgif; ted works at 384."""


def official_config(name: str) -> TpsmmConfig:
    """The model part of one of the authors' configs (:data:`OFFICIAL`), without reading a file."""
    if name not in OFFICIAL:
        raise ConfigError(f"unknown TPSMM config {name!r}; the authors' configs are {', '.join(OFFICIAL)}")
    raw = {
        "dataset_params": {"frame_shape": None},
        "model_params": {
            "common_params": {"num_tps": 10, "num_channels": 3, "bg": not name.startswith("mgif"), "multi_mask": True},
            "generator_params": {"block_expansion": 64, "max_features": 512, "num_down_blocks": 3},
            "dense_motion_params": {"block_expansion": 64, "max_features": 1024, "num_blocks": 5,
                                    "scale_factor": 0.25},
            "avd_network_params": {"id_bottle_size": 128, "pose_bottle_size": 128},
        },
    }
    return parse_tpsmm_config(raw, name)
