"""A job: the photo, its driving clip(s), the model and every option, in the dataclasses the shells fill in.

Every field's default comes from :data:`fomm_lab.options.OPTIONS` (one default whatever the route).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..options import default


def _paths(obj: object, *names: str) -> None:
    """Paths given as strings become :class:`~pathlib.Path` (``OutputOptions(video="out.mp4")`` works)."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, str):
            object.__setattr__(obj, name, Path(value))


@dataclass(frozen=True, kw_only=True)
class MotionOptions:
    """How the driving motion is transferred (paper Sec. 3.4).

    relative: move the photo's keypoints by the driving displacement since the reference frame (the
    recommended mode); False copies the driving keypoints (absolute; TPSMM's ``standard``). adapt_scale: scale
    relative motion by the ratio of the keypoint hulls. avd: TPSMM's AVD mode. best_frame: index of the
    reference frame (None: the first). find_best_frame: pick the frame whose face pose is closest to the photo's
    (face-alignment's landmarks). smoothing: One-Euro filter strength on the driving keypoints (0: off).
    """

    relative: bool = default("motion.relative")
    adapt_scale: bool = default("motion.adapt_scale")
    avd: bool = default("motion.avd")
    best_frame: int | None = default("motion.best_frame")
    find_best_frame: bool = default("motion.find_best_frame")
    smoothing: float = default("motion.smoothing")


@dataclass(frozen=True, kw_only=True)
class CropOptions:
    """How the photo and the driving clip are cut to the model's square frames.

    source / driving: crop the face (None: when the model animates faces). source_box / driving_box:
    the face box (x0, y0, x1, y1) in pixels, instead of detecting it. padding: margin around the
    photo's face (left, top, right, bottom fractions). increase: margin around a driving face track.
    mode: driving crop ``auto``, ``static`` or ``follow`` (see :mod:`fomm_lab.faces.track`).
    faces: ``largest``, ``all``, or indices of the photo's faces from left to right (0 is the leftmost); chosen
    faces are pasted back into the photo. detector: ``auto``, ``face_alignment`` or ``haar``;
    download_face_weights: let face-alignment fetch its weights. feather: paste-back mask feathering, as a
    fraction of the face box.
    """

    source: bool | None = default("crop.source")
    driving: bool | None = default("crop.driving")
    source_box: tuple[float, float, float, float] | None = default("crop.source_box")
    driving_box: tuple[float, float, float, float] | None = default("crop.driving_box")
    padding: tuple[float, float, float, float] = default("crop.padding")
    increase: float = default("crop.increase")
    mode: str = default("crop.mode")
    faces: str | tuple[int, ...] = default("crop.faces")
    detector: str = default("crop.detector")
    download_face_weights: bool = default("crop.download_face_weights")
    min_track_frames: int = default("crop.min_track_frames")
    feather: float = default("crop.feather")


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """What is written. video: ``.mp4``/``.mov``/``.mkv``, or a name without extension for a folder of
    lossless PNG frames. side_by_side: ``source | driving | result`` video. gif: the result as a GIF.
    audio: keep the driving clip's sound. paste_back: composite the animated face(s) into the full photo
    (always on when faces are chosen by index or with several faces). enhance: ``gpen`` or ``gfpgan`` sharpens
    each animated face (to 512x512, or to its size in the photo when pasting back), blended by
    enhance_strength; enhancer_weights: its weights file instead of the registry's."""

    video: Path | None = default("output.video")
    side_by_side: Path | None = default("output.side_by_side")
    gif: Path | None = default("output.gif")
    audio: bool = default("output.audio")
    paste_back: bool = default("output.paste_back")
    enhance: str | None = default("output.enhance")
    enhance_strength: float = default("output.enhance_strength")
    enhancer_weights: Path | None = default("output.enhancer_weights")

    def __post_init__(self) -> None:
        _paths(self, "video", "side_by_side", "gif", "enhancer_weights")


@dataclass(frozen=True, kw_only=True)
class RuntimeOptions:
    """Where and how the networks run: device (None: cuda > mps > cpu), dtype (``auto``: bfloat16 where
    the hardware has it, float16 on other GPUs, else float32), batch_size, compile (torch.compile),
    backend (``torch``, or ``openvino``: the ONNX graphs run by OpenVINO on the CPU)."""

    device: str | None = default("runtime.device")
    dtype: str = default("runtime.dtype")
    batch_size: int = default("runtime.batch_size")
    compile: bool = default("runtime.compile")
    backend: str = default("runtime.backend")


@dataclass(frozen=True, kw_only=True)
class AnimateJob:
    """One animation: a photo, its driving clip(s), the model and every option.

    driving: one video (or folder of frames), or one per face when several faces are animated.
    model: a registry name (``vox``), a shipped config name or a yaml path; checkpoint: its weights.
    random_weights: allow a model without weights (tests, timing): otherwise a config without a checkpoint is an
    error before any work. strict: a driving clip that ends before its header says is an error instead of a
    warning.
    """

    source: Path
    driving: Path | tuple[Path, ...]
    model: str | Path = default("model")
    checkpoint: Path | None = default("checkpoint")
    random_weights: bool = default("random_weights")
    cache_dir: Path | None = default("cache_dir")
    motion: MotionOptions = field(default_factory=MotionOptions)
    crop: CropOptions = field(default_factory=CropOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    strict: bool = default("strict")

    def __post_init__(self) -> None:
        _paths(self, "source", "checkpoint", "cache_dir")
        if isinstance(self.driving, (tuple, list)):
            object.__setattr__(self, "driving", tuple(Path(p) for p in self.driving))
        else:
            _paths(self, "driving")

    @property
    def drivings(self) -> tuple[Path, ...]:
        if isinstance(self.driving, (tuple, list)):
            return tuple(Path(p) for p in self.driving)
        return (Path(self.driving),)
