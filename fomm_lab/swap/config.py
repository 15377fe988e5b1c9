"""The co-part segmentation model's yaml (the authors' layout of motion-cosegmentation) read into a typed
:class:`SegmentConfig`.

Layout: ``model_params`` with ``common_params`` (``num_segments``, ``num_channels``, ``estimate_affine_part``),
``segmentation_module_params`` and ``reconstruction_module_params``; the frame size is
``dataset_params.image_shape`` (256 when absent). Other sections (training, visualisation) are kept in
:attr:`SegmentConfig.raw` and not interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..engine.config import params_from
from ..errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class CommonParams:
    num_segments: int
    num_channels: int = 3
    estimate_affine_part: bool = False


@dataclass(frozen=True, kw_only=True)
class SegmentationParams:
    """The segmentation module's hourglass widths, the shift heatmaps' softmax temperature and the scale of
    its input (0.25: a 256x256 frame is segmented at 64x64)."""

    block_expansion: int
    max_features: int
    num_blocks: int
    temperature: float
    scale_factor: float = 1


@dataclass(frozen=True, kw_only=True)
class ReconstructionParams:
    block_expansion: int
    max_features: int
    num_down_blocks: int
    num_bottleneck_blocks: int
    estimate_visibility: bool = False


@dataclass(frozen=True, kw_only=True)
class SegmentConfig:
    """One co-part segmentation model's topology (paper Sec. 3, supplementary: architecture).

    name: the file's stem. path: the yaml it was read from. frame_size: the square frame side the model
    works at (256 for the published vox models). raw: the whole yaml.
    """

    name: str
    path: Path | None
    common: CommonParams
    segmentation: SegmentationParams
    reconstruction: ReconstructionParams
    frame_size: int = 256
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_segments(self) -> int:
        return self.common.num_segments

    @property
    def feature_size(self) -> int:
        """Side of the reconstruction module's feature maps: frame_size / 2**num_down_blocks (64 at 256)."""
        return self.frame_size // 2 ** self.reconstruction.num_down_blocks


_SECTIONS = ("common_params", "segmentation_module_params", "reconstruction_module_params")


def parse_segment_config(raw: Any, name: str, path: Path | None = None) -> SegmentConfig:
    """A :class:`SegmentConfig` from a yaml document already loaded; ConfigError naming the file otherwise."""
    params = raw.get("model_params") if isinstance(raw, dict) else None
    if isinstance(params, dict) and "kp_detector_params" in params:
        raise ConfigError(f"config {path or name} is a First Order Motion Model config (it has kp_detector_params), "
                          "not a co-part segmentation one: give the segment model's yaml, e.g. "
                          "config/vox-256-sem-10segments.yaml of motion-cosegmentation")
    missing = [key for key in _SECTIONS if not isinstance(params, dict) or key not in params]
    if missing:
        raise ConfigError(f"config {path or name} has no model_params.{missing[0]}; it must follow the layout of "
                          "motion-cosegmentation's config/vox-256-sem-10segments.yaml")
    assert isinstance(params, dict)
    where = "model_params."
    common = params_from(CommonParams, params["common_params"], where + "common_params", path)
    if common.num_segments < 1:
        raise ConfigError(f"config {path or name}: model_params.common_params.num_segments must be at least 1, "
                          f"got {common.num_segments}")
    dataset = raw.get("dataset_params") if isinstance(raw.get("dataset_params"), dict) else {}
    shape = dataset.get("image_shape") or dataset.get("frame_shape") or (256, 256, 3)
    if not isinstance(shape, (list, tuple)) or len(shape) < 2 or shape[0] != shape[1]:
        raise ConfigError(f"config {path or name}: dataset_params.image_shape {shape!r} is not a square "
                          "[side, side, 3] frame shape")
    return SegmentConfig(
        name=name, path=path, common=common,
        segmentation=params_from(SegmentationParams, params["segmentation_module_params"],
                                 where + "segmentation_module_params", path),
        reconstruction=params_from(ReconstructionParams, params["reconstruction_module_params"],
                                   where + "reconstruction_module_params", path),
        frame_size=int(shape[0]), raw=raw)


def load_segment_config(path: str | Path) -> SegmentConfig:
    """Read the segment model's yaml (ConfigError when it is missing, not YAML or not in the authors' layout)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"segment model config {path} does not exist; give the yaml the checkpoint was trained "
                          "with (motion-cosegmentation's config/vox-256-sem-{5,10,15}segments.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML", details=[str(exc)]) from exc
    return parse_segment_config(raw, path.stem, path)
