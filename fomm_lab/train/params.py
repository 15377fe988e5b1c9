"""The training sections of an official FOMM yaml, read into typed dataclasses.

The shipped configs keep the paper's layout; this module reads what training needs from them:
``train_params`` (epochs, repeats, learning rates and milestones, batch size, pyramid scales, the random
transform of the equivariance constraint, loss weights), ``model_params.discriminator_params``,
``dataset_params`` (frame shape, ``id_sampling``, ``augmentation_params``), ``visualizer_params`` and
``animate_params.normalization_params``. Every problem is a :class:`~fomm_lab.errors.ConfigError` naming the
file and the key.

A Thin-Plate Spline Motion Model yaml (the authors' layout, Zhao & Zhang, CVPR 2022) is read into a
:class:`TpsmmTrainingConfig`: its ``train_params`` (:class:`TpsmmTrainParams`: the dropout of TPS transformations,
``bg_start``, the loss weights ``perceptual``, ``equivariance_value``, ``warp_loss``, ``bg``) and
``train_avd_params`` (:class:`AvdTrainParams`, the second stage), with the same ``dataset_params`` and
``visualizer_params`` as FOMM's. :func:`load_any_training_config` reads either family's yaml.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.config import ModelConfig, load_config
from ..engine.tpsmm.config import TpsmmConfig
from ..errors import ConfigError
from ..geometry import Size

VGG_LAYERS = 5
"""Feature layers of the perceptual loss (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of VGG19)."""


@dataclass(frozen=True, kw_only=True)
class TransformParams:
    """The random transform of the equivariance constraint: affine noise ``sigma_affine`` and, when both
    are given, a thin-plate-spline deformation of ``points_tps`` x ``points_tps`` control points with
    weights of standard deviation ``sigma_tps``. ``rotation`` (degrees, not in the paper; 0 leaves its
    transform as it is) turns the affine part by a uniform random angle within +-rotation about the frame's
    centre, so that jacobians learn to turn with objects that turn further than the affine noise does."""

    sigma_affine: float
    sigma_tps: float | None = None
    points_tps: int | None = None
    rotation: float = 0.0

    @property
    def tps(self) -> bool:
        return self.sigma_tps is not None and self.points_tps is not None


@dataclass(frozen=True, kw_only=True)
class LossWeights:
    """Weights of the losses (0 or an empty tuple: the loss is not computed).

    generator_gan / discriminator_gan: LSGAN terms; feature_matching: one weight per discriminator block;
    perceptual: one weight per VGG19 layer (at most 5); equivariance_value / equivariance_jacobian;
    pixel (not in the paper): the mean absolute pixel difference of every pyramid level of the reconstruction to
    the driving frame; keypoint_prior (not in the paper; face-vid2vid's): pushes every two keypoints of a frame
    at least keypoint_distance apart (normalised coordinates, the frame is 2 wide).
    """

    generator_gan: float = 0.0
    discriminator_gan: float = 1.0
    feature_matching: tuple[float, ...] = ()
    perceptual: tuple[float, ...] = ()
    equivariance_value: float = 0.0
    equivariance_jacobian: float = 0.0
    pixel: float = 0.0
    keypoint_prior: float = 0.0
    keypoint_distance: float = 0.1

    @property
    def uses_perceptual(self) -> bool:
        return any(w != 0 for w in self.perceptual)

    @property
    def uses_feature_matching(self) -> bool:
        return any(w != 0 for w in self.feature_matching)

    @property
    def uses_equivariance(self) -> bool:
        return self.equivariance_value != 0 or self.equivariance_jacobian != 0


@dataclass(frozen=True, kw_only=True)
class TrainParams:
    """``train_params`` of the yaml. Learning rates drop tenfold at each of ``epoch_milestones``; an epoch
    is ``num_repeats`` passes over the training videos; ``checkpoint_freq`` is in epochs; ``scales`` are
    the image pyramid of the perceptual loss (1 = full size)."""

    num_epochs: int
    num_repeats: int = 1
    epoch_milestones: tuple[int, ...] = ()
    lr_generator: float
    lr_discriminator: float
    lr_kp_detector: float
    batch_size: int
    scales: tuple[float, ...] = (1,)
    checkpoint_freq: int = 1
    transform_params: TransformParams | None = None
    loss_weights: LossWeights = field(default_factory=LossWeights)


@dataclass(frozen=True, kw_only=True)
class DiscriminatorParams:
    """``model_params.discriminator_params``: one pix2pix-like discriminator per scale of ``scales``;
    ``sn``: spectral normalisation of every convolution; ``use_kp``: keypoint heatmaps as extra input."""

    scales: tuple[float, ...] = (1,)
    block_expansion: int = 64
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = False
    use_kp: bool = False
    kp_variance: float = 0.01


@dataclass(frozen=True, kw_only=True)
class FlipParams:
    horizontal_flip: bool = False
    time_flip: bool = False


@dataclass(frozen=True, kw_only=True)
class JitterParams:
    """Colour jitter: factors drawn from [max(0, 1 - x), 1 + x] (hue: a shift in [-hue, hue] turns)."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RotationParams:
    degrees: tuple[float, float]


@dataclass(frozen=True, kw_only=True)
class ResizeParams:
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


@dataclass(frozen=True, kw_only=True)
class CropParams:
    size: tuple[int, int]
    """(height, width) of the crop."""


@dataclass(frozen=True, kw_only=True)
class AugmentationParams:
    """``dataset_params.augmentation_params``: each part None when the yaml leaves it out. Applied in the
    official order: flip, rotation, resize, crop, colour jitter."""

    flip: FlipParams | None = None
    rotation: RotationParams | None = None
    resize: ResizeParams | None = None
    crop: CropParams | None = None
    jitter: JitterParams | None = None


@dataclass(frozen=True, kw_only=True)
class DatasetParams:
    frame_shape: Size
    id_sampling: bool = False
    root_dir: str | None = None
    pairs_list: str | None = None
    augmentation: AugmentationParams = field(default_factory=AugmentationParams)


@dataclass(frozen=True, kw_only=True)
class VisualizerParams:
    kp_size: int = 5
    draw_border: bool = True
    colormap: str = "gist_rainbow"


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Everything training reads from one yaml: the networks' :class:`ModelConfig` and the sections above."""

    model: ModelConfig
    train: TrainParams
    discriminator: DiscriminatorParams
    dataset: DatasetParams
    visualizer: VisualizerParams

    @property
    def path(self) -> Path | None:
        return self.model.path

    @property
    def frame_size(self) -> Size:
        return self.dataset.frame_shape


# --------------------------------------------------------------------------------------------- parsing


class _Reader:
    """Builds the dataclasses from yaml mappings with errors naming the file and the key."""

    def __init__(self, path: Path | None, name: str) -> None:
        self.where = str(path or name)

    def error(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"config {self.where}: {key} {what}")

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, "must be a mapping of parameters")
        return value

    def number(self, value: Any, key: str, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self.error(key, f"must be a number, not {value!r}")
        if positive and value <= 0:
            raise self.error(key, f"must be more than 0, not {value!r}")
        return value  # type: ignore[return-value]  # int stays int: scale names ("1", "0.5") come from it

    def integer(self, value: Any, key: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, not {value!r}")
        if value < minimum:
            raise self.error(key, f"must be {minimum} or more, not {value}")
        return value

    def numbers(self, value: Any, key: str, length: int | None = None) -> tuple[float, ...]:
        """A list of numbers; a single number stands for ``length`` copies of it (``perceptual: 0``)."""
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return () if value == 0 else (float(value),) * (length or 1)
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"must be a list of numbers, not {value!r}")
        return tuple(self.number(v, f"{key}[{i}]") for i, v in enumerate(value))

    def build(self, cls: type, values: dict[str, Any], key: str, **converted: Any) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - set(converted))
        if unknown:
            raise self.error(key, f"has unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        plain = {k: v for k, v in values.items() if k not in converted}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in plain and f.name not in converted
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise self.error(key, f"is missing {', '.join(missing)}")
        return cls(**plain, **converted)


def _transform(r: _Reader, raw: Any) -> TransformParams:
    values = r.mapping(raw, "train_params.transform_params")
    key = "train_params.transform_params"
    sigma_tps = values.get("sigma_tps")
    points_tps = values.get("points_tps")
    return r.build(TransformParams, values, key,
                   sigma_affine=r.number(values.get("sigma_affine", 0.0), f"{key}.sigma_affine"),
                   sigma_tps=None if sigma_tps is None else r.number(sigma_tps, f"{key}.sigma_tps"),
                   points_tps=None if points_tps is None else r.integer(points_tps, f"{key}.points_tps", 2),
                   rotation=r.number(values.get("rotation", 0.0), f"{key}.rotation"))


def _loss_weights(r: _Reader, raw: Any, disc_blocks: int) -> LossWeights:
    key = "train_params.loss_weights"
    values = r.mapping(raw, key)
    scalars = {name: r.number(values[name], f"{key}.{name}", positive=name == "keypoint_distance") for name in
               ("generator_gan", "discriminator_gan", "equivariance_value", "equivariance_jacobian", "pixel",
                "keypoint_prior", "keypoint_distance")
               if name in values}
    perceptual = r.numbers(values.get("perceptual", ()), f"{key}.perceptual", VGG_LAYERS)
    if len(perceptual) > VGG_LAYERS:
        raise r.error(f"{key}.perceptual", f"has {len(perceptual)} weights but VGG19 gives {VGG_LAYERS} feature "
                      "layers (relu1_1 ... relu5_1); give at most 5")
    matching = r.numbers(values.get("feature_matching", ()), f"{key}.feature_matching", disc_blocks)
    weights = r.build(LossWeights, values, key, perceptual=perceptual, feature_matching=matching, **scalars)
    if weights.generator_gan != 0 and matching and len(matching) != disc_blocks:
        raise r.error(f"{key}.feature_matching", f"has {len(matching)} weights but the discriminator has "
                      f"{disc_blocks} blocks (model_params.discriminator_params.num_blocks); give one per block")
    return weights


def _scales(r: _Reader, value: Any, key: str) -> tuple[float, ...]:
    scales = r.numbers(value, key)
    for i, scale in enumerate(scales):
        if not 0 < scale <= 1:
            raise r.error(f"{key}[{i}]", f"must be in (0, 1] (1 = full size), not {scale}")
    if not scales:
        raise r.error(key, "must name at least one scale (1 = full size)")
    return scales


def _train(r: _Reader, raw: Any, disc_blocks: int) -> TrainParams:
    key = "train_params"
    values = r.mapping(raw, key)
    if not values:
        raise ConfigError(f"config {r.where} has no train_params: training reads its epochs, learning rates and "
                          "loss weights from there; start from a shipped config (vox-256.yaml, ...)")
    ints = {name: r.integer(values[name], f"{key}.{name}", 1) for name in
            ("num_epochs", "num_repeats", "batch_size", "checkpoint_freq") if name in values}
    floats = {name: r.number(values[name], f"{key}.{name}") for name in
              ("lr_generator", "lr_discriminator", "lr_kp_detector") if name in values}
    for name, value in floats.items():
        if value < 0:
            raise r.error(f"{key}.{name}", f"must be 0 or more, not {value}")
    milestones = tuple(r.integer(v, f"{key}.epoch_milestones[{i}]")
                       for i, v in enumerate(values.get("epoch_milestones") or ()))
    transform = values.get("transform_params")
    return r.build(
        TrainParams, values, key, **ints, **floats, epoch_milestones=milestones,
        scales=_scales(r, values.get("scales", [1]), f"{key}.scales"),
        transform_params=None if transform is None else _transform(r, transform),
        loss_weights=_loss_weights(r, values.get("loss_weights"), disc_blocks))


def _discriminator(r: _Reader, raw: Any) -> DiscriminatorParams:
    key = "model_params.discriminator_params"
    values = r.mapping(raw, key)
    ints = {name: r.integer(values[name], f"{key}.{name}", 1) for name in
            ("block_expansion", "max_features", "num_blocks") if name in values}
    extra: dict[str, Any] = {"scales": _scales(r, values["scales"], f"{key}.scales")} if "scales" in values else {}
    if "kp_variance" in values:
        extra["kp_variance"] = r.number(values["kp_variance"], f"{key}.kp_variance", positive=True)
    return r.build(DiscriminatorParams, values, key, **ints, **extra)


def _pair(r: _Reader, value: Any, key: str) -> tuple[float, float]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (-abs(float(value)), abs(float(value)))
    pair = r.numbers(value, key)
    if len(pair) != 2 or pair[0] > pair[1]:
        raise r.error(key, f"must be [low, high] with low <= high, not {value!r}")
    return (float(pair[0]), float(pair[1]))


def _augmentation(r: _Reader, raw: Any) -> AugmentationParams:
    key = "dataset_params.augmentation_params"
    values = r.mapping(raw, key)
    known = {"flip_param", "jitter_param", "rotation_param", "resize_param", "crop_param"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise r.error(key, f"has unknown part(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    parts: dict[str, Any] = {}
    if values.get("flip_param") is not None:
        parts["flip"] = r.build(FlipParams, r.mapping(values["flip_param"], f"{key}.flip_param"), f"{key}.flip_param")
    if values.get("jitter_param") is not None:
        sub = f"{key}.jitter_param"
        jitter = r.mapping(values["jitter_param"], sub)
        factors = {name: r.number(v, f"{sub}.{name}") for name, v in jitter.items()
                   if name in ("brightness", "contrast", "saturation", "hue")}
        if not 0 <= factors.get("hue", 0) <= 0.5:
            raise r.error(f"{sub}.hue", f"must be in [0, 0.5], not {factors['hue']}")
        parts["jitter"] = r.build(JitterParams, jitter, sub, **factors)
    if values.get("rotation_param") is not None:
        sub = f"{key}.rotation_param"
        rotation = r.mapping(values["rotation_param"], sub)
        parts["rotation"] = r.build(RotationParams, rotation, sub,
                                    degrees=_pair(r, rotation.get("degrees", 0), f"{sub}.degrees"))
    if values.get("resize_param") is not None:
        sub = f"{key}.resize_param"
        resize = r.mapping(values["resize_param"], sub)
        ratio = _pair(r, resize["ratio"], f"{sub}.ratio") if "ratio" in resize else (3 / 4, 4 / 3)
        if ratio[0] <= 0:
            raise r.error(f"{sub}.ratio", "must be positive")
        parts["resize"] = r.build(ResizeParams, {k: v for k, v in resize.items() if k != "interpolation"}, sub,
                                  ratio=ratio)
    if values.get("crop_param") is not None:
        sub = f"{key}.crop_param"
        crop = r.mapping(values["crop_param"], sub)
        size = crop.get("size")
        side = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
        if not isinstance(side, (list, tuple)) or len(side) != 2:
            raise r.error(f"{sub}.size", f"must be [height, width], not {size!r}")
        height, width = (r.integer(v, f"{sub}.size", 1) for v in side)
        parts["crop"] = r.build(CropParams, crop, sub, size=(height, width))
    return AugmentationParams(**parts)


def _dataset(r: _Reader, raw: Any, model: ModelConfig | TpsmmConfig) -> DatasetParams:
    key = "dataset_params"
    values = r.mapping(raw, key)
    shape = values.get("frame_shape") or [model.frame_size.height, model.frame_size.width, 3]
    if not isinstance(shape, (list, tuple)) or len(shape) != 3 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape):
        raise r.error(f"{key}.frame_shape", f"must be [height, width, channels], not {shape!r}")
    if shape[2] != model.common.num_channels:
        raise r.error(f"{key}.frame_shape", f"has {shape[2]} channels but model_params.common_params.num_channels "
                      f"is {model.common.num_channels}")
    plain = {k: v for k, v in values.items() if k != "augmentation_params"}
    return r.build(DatasetParams, plain, key, frame_shape=Size(int(shape[1]), int(shape[0])),
                   augmentation=_augmentation(r, values.get("augmentation_params")),
                   id_sampling=bool(values.get("id_sampling", False)))


def _visualizer(r: _Reader, raw: Any) -> VisualizerParams:
    values = r.mapping(raw, "visualizer_params")
    return r.build(VisualizerParams, values, "visualizer_params")


def training_config(model: ModelConfig) -> TrainingConfig:
    """The training sections of ``model``'s yaml (official layout only)."""
    if model.paddle:
        raise ConfigError(f"config {model.path or model.name} is in PaddleGAN's layout; training reads the official "
                          "FOMM layout (train_params, model_params.discriminator_params): start from a shipped "
                          "config such as vox-256.yaml")
    r = _Reader(model.path, model.name)
    raw = model.raw
    params = r.mapping(raw.get("model_params"), "model_params")
    discriminator = _discriminator(r, params.get("discriminator_params"))
    dataset = _dataset(r, raw.get("dataset_params"), model)
    return TrainingConfig(model=model, train=_train(r, raw.get("train_params"), discriminator.num_blocks),
                          discriminator=discriminator, dataset=dataset,
                          visualizer=_visualizer(r, raw.get("visualizer_params")))


def load_training_config(name_or_path: str | Path) -> TrainingConfig:
    """Read a shipped config name or a yaml path for training."""
    return training_config(load_config(name_or_path))


# ------------------------------------------------------------------------------------------- TPSMM


@dataclass(frozen=True, kw_only=True)
class TpsmmLossWeights:
    """TPSMM's ``train_params.loss_weights`` (paper Sec. 3.5; 0 or an empty tuple: the loss is not computed).

    perceptual: one weight per VGG19 layer (at most 5); equivariance_value: the keypoints under a random warp;
    warp_loss: the driving frame's encoder features against the warped source features; bg: the background
    affine transformations of (source, driving) and (driving, source) composing to the identity.
    """

    perceptual: tuple[float, ...] = ()
    equivariance_value: float = 0.0
    warp_loss: float = 0.0
    bg: float = 0.0

    @property
    def uses_perceptual(self) -> bool:
        return any(w != 0 for w in self.perceptual)


@dataclass(frozen=True, kw_only=True)
class TpsmmTrainParams:
    """TPSMM's ``train_params`` (first stage). One Adam optimiser with ``lr_generator`` for the keypoint detector,
    dense motion and inpainting networks and one for the background predictor, both divided by 10 at each of
    ``epoch_milestones``. The background predictor joins at epoch ``bg_start``. Whole TPS transformations are
    dropped (paper Eq. 7-8) while the epoch is below ``dropout_epoch``, with probability :meth:`dropout_p`.
    ``dataloader_workers`` is the authors' data-loading setting, read and not used (``--workers`` decides)."""

    num_epochs: int
    num_repeats: int = 1
    epoch_milestones: tuple[int, ...] = ()
    lr_generator: float
    batch_size: int
    scales: tuple[float, ...] = (1,)
    checkpoint_freq: int = 1
    dataloader_workers: int | None = None
    dropout_epoch: int = 0
    dropout_maxp: float = 0.0
    dropout_startp: float = 0.0
    dropout_inc_epoch: int = 1
    bg_start: int = 0
    transform_params: TransformParams | None = None
    loss_weights: TpsmmLossWeights = field(default_factory=TpsmmLossWeights)

    def dropout_p(self, epoch: int) -> float:
        """The probability of dropping each TPS transformation in 0-based ``epoch``: 0 from ``dropout_epoch`` on,
        else ``dropout_startp`` raised by ``dropout_maxp`` every ``dropout_inc_epoch`` epochs, at most
        ``dropout_maxp`` (the authors' rule: min(epoch / inc * maxp + startp, maxp))."""
        if epoch >= self.dropout_epoch:
            return 0.0
        return float(min(epoch / self.dropout_inc_epoch * self.dropout_maxp + self.dropout_startp,
                         self.dropout_maxp))


@dataclass(frozen=True, kw_only=True)
class AvdTrainParams:
    """TPSMM's ``train_avd_params``: the second stage, which trains the AVD network alone (Adam with ``lr``,
    divided by 10 at each of ``epoch_milestones``) on the frozen keypoint detector: it must give back the driving
    keypoints from the source's keypoints and the driving keypoints scaled by a random factor in
    [1 - random_scale, 1 + random_scale], loss weight ``lambda_shift``."""

    num_epochs: int
    num_repeats: int = 1
    epoch_milestones: tuple[int, ...] = ()
    lr: float
    batch_size: int
    checkpoint_freq: int = 1
    dataloader_workers: int | None = None
    lambda_shift: float = 1.0
    random_scale: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TpsmmTrainingConfig:
    """Everything TPSMM training reads from one yaml: the networks' :class:`TpsmmConfig`, ``train_params``,
    ``train_avd_params`` (None when the yaml has none) and the dataset and visualizer sections."""

    model: TpsmmConfig
    train: TpsmmTrainParams
    avd: AvdTrainParams | None
    dataset: DatasetParams
    visualizer: VisualizerParams

    @property
    def path(self) -> Path | None:
        return self.model.path

    @property
    def frame_size(self) -> Size:
        return self.dataset.frame_shape


def _schedule(r: _Reader, values: dict[str, Any], key: str, lr: str) -> dict[str, Any]:
    """The keys every training stage has: counts, milestones and its learning rate (the key ``lr``)."""
    converted: dict[str, Any] = {name: r.integer(values[name], f"{key}.{name}", 1) for name in
                                 ("num_epochs", "num_repeats", "batch_size", "checkpoint_freq") if name in values}
    if "dataloader_workers" in values:
        converted["dataloader_workers"] = r.integer(values["dataloader_workers"], f"{key}.dataloader_workers")
    if lr in values:
        converted[lr] = r.number(values[lr], f"{key}.{lr}")
        if converted[lr] < 0:
            raise r.error(f"{key}.{lr}", f"must be 0 or more, not {converted[lr]}")
    converted["epoch_milestones"] = tuple(r.integer(v, f"{key}.epoch_milestones[{i}]")
                                          for i, v in enumerate(values.get("epoch_milestones") or ()))
    return converted


def _tpsmm_loss_weights(r: _Reader, raw: Any) -> TpsmmLossWeights:
    key = "train_params.loss_weights"
    values = r.mapping(raw, key)
    scalars = {name: r.number(values[name], f"{key}.{name}") for name in ("equivariance_value", "warp_loss", "bg")
               if name in values}
    perceptual = r.numbers(values.get("perceptual", ()), f"{key}.perceptual", VGG_LAYERS)
    if len(perceptual) > VGG_LAYERS:
        raise r.error(f"{key}.perceptual", f"has {len(perceptual)} weights but VGG19 gives {VGG_LAYERS} feature "
                      "layers (relu1_1 ... relu5_1); give at most 5")
    return r.build(TpsmmLossWeights, values, key, perceptual=perceptual, **scalars)


def _tpsmm_train(r: _Reader, raw: Any) -> TpsmmTrainParams:
    key = "train_params"
    values = r.mapping(raw, key)
    if not values:
        raise ConfigError(f"config {r.where} has no train_params: TPSMM training reads its epochs, learning rate, "
                          "dropout and loss weights from there; start from the authors' yaml (config/vox-256.yaml "
                          "of their repository) or tests/fixtures/tpsmm-golden/tiny-vox.yaml")
    converted = _schedule(r, values, key, "lr_generator")
    for name in ("dropout_epoch", "bg_start"):
        if name in values:
            converted[name] = r.integer(values[name], f"{key}.{name}")
    if "dropout_inc_epoch" in values:
        converted["dropout_inc_epoch"] = r.integer(values["dropout_inc_epoch"], f"{key}.dropout_inc_epoch", 1)
    for name in ("dropout_maxp", "dropout_startp"):
        if name in values:
            converted[name] = float(r.number(values[name], f"{key}.{name}"))
            if not 0 <= converted[name] < 1:
                raise r.error(f"{key}.{name}", f"is a probability of dropping a transformation: give a value in "
                              f"[0, 1), not {converted[name]}")
    transform = values.get("transform_params")
    return r.build(TpsmmTrainParams, values, key, **converted,
                   scales=_scales(r, values.get("scales", [1]), f"{key}.scales"),
                   transform_params=None if transform is None else _transform(r, transform),
                   loss_weights=_tpsmm_loss_weights(r, values.get("loss_weights")))


def _avd_train(r: _Reader, raw: Any) -> AvdTrainParams | None:
    key = "train_avd_params"
    if raw is None:
        return None
    values = r.mapping(raw, key)
    converted = _schedule(r, values, key, "lr")
    if "lambda_shift" in values:
        converted["lambda_shift"] = r.number(values["lambda_shift"], f"{key}.lambda_shift")
    if "random_scale" in values:
        converted["random_scale"] = r.number(values["random_scale"], f"{key}.random_scale")
        if not 0 <= converted["random_scale"] < 1:
            raise r.error(f"{key}.random_scale", f"must be in [0, 1) (scales from 1 - it to 1 + it), not "
                          f"{converted['random_scale']}")
    return r.build(AvdTrainParams, values, key, **converted)


def tpsmm_training_config(model: TpsmmConfig) -> TpsmmTrainingConfig:
    """The training sections of a TPSMM yaml (the authors' layout)."""
    r = _Reader(model.path, model.name)
    raw = model.raw
    return TpsmmTrainingConfig(model=model, train=_tpsmm_train(r, raw.get("train_params")),
                               avd=_avd_train(r, raw.get("train_avd_params")),
                               dataset=_dataset(r, raw.get("dataset_params"), model),
                               visualizer=_visualizer(r, raw.get("visualizer_params")))


def load_any_training_config(name_or_path: str | Path) -> TrainingConfig | TpsmmTrainingConfig:
    """Read a shipped config name or a yaml path of any family for training (the family told by
    :func:`fomm_lab.engine.families.config_and_family`)."""
    from ..engine.families import config_and_family

    config, family = config_and_family(name_or_path)
    if isinstance(config, TpsmmConfig):
        return tpsmm_training_config(config)
    if isinstance(config, ModelConfig):
        return training_config(config)
    raise ConfigError(f"config {name_or_path} is of the {family.name} family, which fomm-lab cannot train; "
                      "training covers FOMM and TPSMM configs")
