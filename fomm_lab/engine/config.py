"""Model configs: the yaml files (official FOMM layout or PaddleGAN's) read into a typed :class:`ModelConfig`.

The yaml files stay byte-compatible with the official ones (they ship as package data in
``fomm_lab/engine/configs``); only this module reads them. Official layout: ``model_params`` with
``common_params``, ``kp_detector_params``, ``generator_params`` (holding ``dense_motion_params``) and
``dataset_params.frame_shape``. PaddleGAN's layout: ``model.common_params`` and ``model.generator``
with ``kp_detector_cfg`` and ``generator_cfg``; the frame size is ``frame_size`` (fomm_lab's key: PaddleGAN
passes it to its predictor as ``image_size``, 512 for ``vox-cpk-512``), else PaddleGAN's own
``dataset.test.frame_shape`` / ``dataset.train.frame_shape``, else 256. It also selects PaddleGAN's
inference semantics (:attr:`ModelConfig.paddle`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..geometry import Size


@dataclass(frozen=True, kw_only=True)
class CommonParams:
    num_kp: int
    num_channels: int = 3
    estimate_jacobian: bool = False


@dataclass(frozen=True, kw_only=True)
class KPDetectorParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    temperature: float
    scale_factor: float = 1
    single_jacobian_map: bool = False
    pad: int = 0
    mobile_net: bool = False


@dataclass(frozen=True, kw_only=True)
class DenseMotionParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    scale_factor: float = 1
    mobile_net: bool = False


@dataclass(frozen=True, kw_only=True)
class GeneratorParams:
    """``generator_params``. align_corners (fomm_lab's key, official layout): the grid convention of the generator's
    ``grid_sample`` calls, False (the authors' code on PyTorch >= 1.3) unless the yaml says true (PyTorch 1.0's, for
    which the paper's code was written; the deformation and occlusion maps are then also resized corner to corner);
    PaddleGAN's configs always sample with True."""

    block_expansion: int
    max_features: int
    num_down_blocks: int
    num_bottleneck_blocks: int
    estimate_occlusion_map: bool = False
    dense_motion: DenseMotionParams
    mobile_net: bool = False
    align_corners: bool = False


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """One model's topology and runtime semantics.

    name: the config's name (the file's stem). path: the yaml it was read from. frame_size: the size
    the model was trained on. paddle: PaddleGAN's inference semantics (``grid_sample`` with
    ``align_corners=True``, deformation blended to the identity in a 5-pixel border, occlusion forced
    to 1 there for the standard topology). raw: the whole yaml, for the training and dataset sections.
    """

    name: str
    path: Path | None
    common: CommonParams
    kp_detector: KPDetectorParams
    generator: GeneratorParams
    frame_size: Size = Size(256, 256)
    paddle: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_face_model(self) -> bool:
        """True for models of faces, whose inputs are face-cropped by default: the yaml's own ``face: true`` when
        it says so, else for a shipped config what the registry's checkpoints for it say; False otherwise."""
        declared = self.raw.get("face")
        if isinstance(declared, bool):
            return declared
        if self.path is None or self.path.parent != Path(str(_configs_folder())):
            return False
        from ..hub.registry import is_face_config

        return bool(is_face_config(self.name))

    @property
    def mobile(self) -> bool:
        return self.kp_detector.mobile_net or self.generator.mobile_net

    def section(self, name: str) -> dict[str, Any]:
        """A top-level yaml section (``train_params``, ``dataset_params`` ...), {} when absent."""
        value = self.raw.get(name)
        return value if isinstance(value, dict) else {}


def params_from(cls: type, values: Any, where: str, path: Path | None, **extra: Any) -> Any:
    """Build dataclass ``cls`` from a yaml mapping, with errors naming the file and the key."""
    if not isinstance(values, dict):
        raise ConfigError(f"config {path}: {where} must be a mapping of parameters")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"config {path}: {where} has unknown parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(names - set(extra)))}")
    try:
        return cls(**values, **extra)
    except TypeError as exc:
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and f.name not in extra
                   and f.default is dataclasses.MISSING]
        raise ConfigError(f"config {path}: {where} is missing {', '.join(missing) or 'parameters'}") from exc


def _official(raw: dict, name: str, path: Path | None) -> ModelConfig:
    params = raw["model_params"]
    for key in ("common_params", "kp_detector_params", "generator_params"):
        if not isinstance(params, dict) or key not in params:
            raise ConfigError(f"config {path} has no model_params.{key}; it must follow the official FOMM layout "
                              "(see the shipped vox-256.yaml)")
    generator = dict(params["generator_params"])
    if "dense_motion_params" not in generator:
        raise ConfigError(f"config {path} has no model_params.generator_params.dense_motion_params")
    dense = params_from(DenseMotionParams, generator.pop("dense_motion_params"),
                        "model_params.generator_params.dense_motion_params", path)
    dataset = raw.get("dataset_params") or {}
    shape = dataset.get("frame_shape") or (256, 256, 3)
    return ModelConfig(
        name=name, path=path,
        common=params_from(CommonParams, params["common_params"], "model_params.common_params", path),
        kp_detector=params_from(KPDetectorParams, params["kp_detector_params"], "model_params.kp_detector_params",
                                path),
        generator=params_from(GeneratorParams, generator, "model_params.generator_params", path, dense_motion=dense),
        frame_size=Size(int(shape[1]), int(shape[0])), raw=raw)


def _paddle(raw: dict, name: str, path: Path | None) -> ModelConfig:
    model = raw["model"]
    generator = model.get("generator") if isinstance(model, dict) else None
    if not isinstance(generator, dict) or "kp_detector_cfg" not in generator or "generator_cfg" not in generator:
        raise ConfigError(f"config {path} has no model.generator.kp_detector_cfg / generator_cfg; it must follow "
                          "PaddleGAN's first-order layout (or the official FOMM layout)")
    gen = dict(generator["generator_cfg"])
    if "dense_motion_params" not in gen:
        raise ConfigError(f"config {path} has no model.generator.generator_cfg.dense_motion_params")
    dense = dict(gen.pop("dense_motion_params"))
    dense.setdefault("mobile_net", bool(gen.get("mobile_net", False)))
    side = _paddle_frame_size(raw, path)
    return ModelConfig(
        name=name, path=path,
        common=params_from(CommonParams, model.get("common_params"), "model.common_params", path),
        kp_detector=params_from(KPDetectorParams, generator["kp_detector_cfg"], "model.generator.kp_detector_cfg",
                                path),
        generator=params_from(GeneratorParams, gen, "model.generator.generator_cfg", path,
                              dense_motion=params_from(DenseMotionParams, dense,
                                                       "model.generator.generator_cfg.dense_motion_params", path)),
        frame_size=Size(int(side), int(side)), paddle=True, raw=raw)


def _paddle_frame_size(raw: dict, path: Path | None) -> int:
    """The square frame side of a PaddleGAN-layout config (see the module's description)."""
    side: Any = raw.get("frame_size")
    where = "frame_size"
    if side is None:
        dataset = raw.get("dataset")
        for split in ("test", "train"):
            part = dataset.get(split) if isinstance(dataset, dict) else None
            shape = part.get("frame_shape") if isinstance(part, dict) else None
            if shape:
                if not isinstance(shape, (list, tuple)) or len(shape) < 2 or shape[0] != shape[1]:
                    raise ConfigError(f"config {path}: dataset.{split}.frame_shape {shape!r} is not a square "
                                      "[side, side, 3] frame shape")
                side, where = shape[0], f"dataset.{split}.frame_shape"
                break
    if side is None:
        return 256
    if isinstance(side, bool) or not isinstance(side, int) or side < 16:
        raise ConfigError(f"config {path}: {where} must be a whole number of pixels, 16 or more (e.g. 256 or "
                          f"512), got {side!r}")
    return side


def parse_config(raw: Any, name: str, path: Path | None = None) -> ModelConfig:
    """A :class:`ModelConfig` from a yaml document already loaded (either layout)."""
    if isinstance(raw, dict) and "model_params" in raw:
        return _official(raw, name, path)
    if isinstance(raw, dict) and "model" in raw:
        return _paddle(raw, name, path)
    raise ConfigError(f"config {path or name} has neither model_params (the official FOMM layout) nor model "
                      "(PaddleGAN's layout); see the shipped vox-256.yaml")


def _configs_folder():
    return resources.files("fomm_lab.engine") / "configs"


def available_configs() -> list[str]:
    """Names of the shipped configs (e.g. ``vox-256``), sorted."""
    return sorted(p.name[: -len(".yaml")] for p in _configs_folder().iterdir() if p.name.endswith(".yaml"))


def config_path(name: str) -> Path:
    """Path of the shipped config ``name`` (ConfigError listing the known names if unknown)."""
    names = available_configs()
    if name not in names:
        from ..hub.registry import available_models

        raise ConfigError(f"unknown model {name!r}: give a checkpoint name ({', '.join(available_models())}), "
                          f"a shipped config ({', '.join(names)}) or a .yaml file")
    return Path(str(_configs_folder() / f"{name}.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """The yaml file meant by a shipped config name or a path (ConfigError when there is none)."""
    text = str(name_or_path)
    path = Path(text) if (text.endswith((".yaml", ".yml")) or Path(text).exists()) else config_path(text)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; shipped configs: {', '.join(available_configs())}")
    return path


def load_config(name_or_path: str | Path) -> ModelConfig:
    """Read a config by shipped name or yaml path."""
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML", details=[str(exc)]) from exc
    return parse_config(raw, path.stem, path)


# ------------------------------------------------------------------------------------------ frame sizes

def _network_stages(config: Any) -> list[tuple[str, float, int, int]]:
    """(what, input scale, halvings, pixels its head removes) of each network of ``config`` whose input must halve
    evenly: an hourglass (keypoint detector, dense motion) on the frame scaled by ``scale_factor`` -- its encoder
    pools by 2 ``num_blocks`` times and its decoder concatenates each upsampled map with the encoder's map of the
    same size, so the scaled side must be a multiple of 2**num_blocks -- and the generator's encoder-decoder
    (``num_down_blocks``). FOMM's keypoint head (a 7x7 convolution, or three 3x3 ones for mobile models, with
    ``pad``) removes 6 - 2 pad (mobile: 6 - 6 pad) pixels of the heatmap. Works for FOMM and TPSMM configs."""
    stages: list[tuple[str, float, int, int]] = []
    kp = getattr(config, "kp_detector", None)
    if isinstance(kp, KPDetectorParams):
        head = 6 - (6 if kp.mobile_net else 2) * kp.pad
        stages.append(("kp_detector_params (keypoint detector)", kp.scale_factor, kp.num_blocks, head))
    generator = getattr(config, "generator", None)
    dense = getattr(generator, "dense_motion", None) or getattr(config, "dense_motion", None)
    if dense is not None:
        stages.append(("dense_motion_params (dense motion network)", float(dense.scale_factor), int(dense.num_blocks),
                       0))
    if generator is not None and hasattr(generator, "num_down_blocks"):
        stages.append(("generator_params (generator)", 1.0, int(generator.num_down_blocks), 0))
    return stages


def _side_problem(stages: list[tuple[str, float, int, int]], side: int) -> str | None:
    """Why a frame side does not fit the networks (None when it does)."""
    for what, scale, halvings, head in stages:
        scaled = math.floor(side * scale + 1e-9)
        step = 2 ** halvings
        if scaled < 1:
            return (f"{what}: scale_factor {scale:g} leaves {side * scale:.2g} pixel(s) of a {side}-pixel side, "
                    "less than one")
        if scaled < step:
            return (f"{what}: its {halvings} down-sampling blocks halve the {scaled}-pixel input ({side} x scale "
                    f"{scale:g}) to less than a pixel")
        if scaled % step:
            return (f"{what}: its {halvings} down-sampling blocks need an input side that is a multiple of {step}, "
                    f"got {scaled} ({side} x scale {scale:g})")
        if scaled - head < 1:
            return f"{what}: its keypoint head leaves no heatmap of a {scaled}-pixel input (set pad or a larger size)"
    return None


def smallest_frame_side(config: Any, at_least: int = 1, limit: int = 8192) -> int | None:
    """The smallest square frame side, ``at_least`` or more, that every network of ``config`` can take
    (see :func:`check_frame_size`); None when none up to ``limit`` pixels does."""
    stages = _network_stages(config)
    return next((side for side in range(max(1, at_least), limit + 1) if _side_problem(stages, side) is None), None)


def check_frame_size(config: Any, size: Size | int | None = None) -> None:
    """ConfigError, before any model is built or any data read, when frames of ``size`` (default: the config's
    ``frame_size``: ``dataset_params.frame_shape``) cannot go through the config's networks: a keypoint or
    dense-motion ``scale_factor`` that leaves less than a pixel, more down-sampling blocks (``num_blocks``,
    ``num_down_blocks``) than the scaled side can be halved, or a side that does not halve evenly (the
    hourglass's skip connections need equal sizes). The message names the smallest frame size that fits and
    the next one at or above the asked size. FOMM and TPSMM configs (other objects pass)."""
    if size is None:
        size = config.frame_size
    if isinstance(size, int):
        size = Size.square(size)
    stages = _network_stages(config)
    if not stages:
        return
    for side, axis in ((size.width, "width"), (size.height, "height")):
        problem = _side_problem(stages, side)
        if problem is None:
            continue
        where = getattr(config, "path", None) or getattr(config, "name", "the config")
        smallest, above = smallest_frame_side(config), smallest_frame_side(config, at_least=side)
        fits = (f"the smallest frame size that fits is {smallest}x{smallest}" if smallest is not None
                else "no frame size fits: lower num_blocks / num_down_blocks or raise scale_factor")
        if above is not None and above != smallest:
            fits += f" (the next one from {side}: {above}x{above})"
        raise ConfigError(f"config {where}: frame size {size.width}x{size.height} (dataset_params.frame_shape) does "
                          f"not fit its networks (its {axis}, {side}): {problem}; {fits}, or lower the blocks' count")
