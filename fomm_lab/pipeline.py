"""The one pipeline: photo -> face crop(s) -> driving crop(s) -> animation -> outputs.

The CLI (``fomm-lab animate``), the notebook and the Python API all run a job through these functions,
so they make the same decisions:

* **Face cropping** (``CropOptions.source`` / ``.driving`` = None): on for face models (vox, nemo ...),
  off for the others. A photo in which no face is found is an error (never a silent whole-photo
  animation); so is a driving clip without a face track. Both errors say how to go on without
  cropping or with a box given by hand.
* **Which track**: the longest face track of the driving clip (tracks shorter than
  :data:`~fomm_lab.faces.track.MIN_TRACK_FRAMES` frames are detector noise, unless the clip is shorter).
* **Which faces**: the largest face of the photo; ``CropOptions.faces="all"`` (or indices, left to
  right) animates several, each with the driving clip (or one clip per face) and composites them all
  back into the photo.
* **Reference frame**: the first driving frame, ``MotionOptions.best_frame`` or, with
  ``find_best_frame``, the frame whose face pose is closest to the photo's.

:func:`check_job` validates everything that needs no model (inputs, outputs, options) in well under
a second; :func:`run_job` then loads the model and runs :func:`prepare` and :func:`animate`, which
the notebook also calls one by one (one preparation, three animations).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine.config import ModelConfig, load_config
from .engine.smoothing import DEFAULT_STRENGTH
from .errors import FommLabError, MediaError, Remedy
from .faces.crop import DEFAULT_PADDING, PhotoCrop
from .faces.paste import DEFAULT_FEATHER
from .faces.track import CROP_MODES, MIN_TRACK_FRAMES, CropPlan
from .geometry import Box, Size
from .io.probe import VideoInfo

if TYPE_CHECKING:
    from .engine.model import FommModel
    from .faces.detect import FaceDetector

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
"""Where the pipeline says what it is doing (a line at a time); the CLI prints, the notebook displays."""


# ------------------------------------------------------------------------------------------ the job


@dataclass(frozen=True, kw_only=True)
class MotionOptions:
    """How the driving motion is transferred (paper Sec. 3.4).

    relative: move the photo's keypoints by the driving displacement since the reference frame (the
    recommended mode); False copies the driving keypoints (absolute). adapt_scale: scale relative motion
    by the ratio of the keypoint hulls. best_frame: index of the reference frame (None: the first).
    find_best_frame: pick the frame whose face pose is closest to the photo's (face-alignment's
    landmarks). smoothing: One-Euro filter strength on the driving keypoints (0: off).
    """

    relative: bool = True
    adapt_scale: bool = True
    best_frame: int | None = None
    find_best_frame: bool = False
    smoothing: float = DEFAULT_STRENGTH


@dataclass(frozen=True, kw_only=True)
class CropOptions:
    """How the photo and the driving clip are cut to the model's square frames.

    source / driving: crop the face (None: when the model animates faces). source_box / driving_box:
    the face box (x0, y0, x1, y1) in pixels, instead of detecting it. padding: margin around the
    photo's face (left, top, right, bottom fractions). increase: margin around a driving face track.
    mode: driving crop ``auto``, ``static`` or ``follow`` (see :mod:`fomm_lab.faces.track`).
    faces: ``largest``, ``all``, or indices of the photo's faces from left to right. detector:
    ``auto``, ``face_alignment`` or ``haar``; download_face_weights: let face-alignment fetch its weights.
    feather: paste-back mask feathering, as a fraction of the face box.
    """

    source: bool | None = None
    driving: bool | None = None
    source_box: tuple[float, float, float, float] | None = None
    driving_box: tuple[float, float, float, float] | None = None
    padding: tuple[float, float, float, float] = DEFAULT_PADDING
    increase: float = 0.1
    mode: str = "auto"
    faces: str | tuple[int, ...] = "largest"
    detector: str = "auto"
    download_face_weights: bool = False
    min_track_frames: int = MIN_TRACK_FRAMES
    feather: float = DEFAULT_FEATHER


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """What is written. video: ``.mp4``/``.mov``/``.mkv``, or a name without extension for a folder of
    lossless PNG frames. side_by_side: ``source | driving | result`` video. gif: the result as a GIF.
    audio: keep the driving clip's sound. paste_back: composite the animated face(s) into the full photo
    (always on with several faces)."""

    video: Path | None = None
    side_by_side: Path | None = None
    gif: Path | None = None
    audio: bool = True
    paste_back: bool = False


@dataclass(frozen=True, kw_only=True)
class RuntimeOptions:
    """Where and how the networks run: device (None: cuda > mps > cpu), dtype (``auto``: bfloat16 where
    the hardware has it, float16 on other GPUs, else float32), batch_size, compile (torch.compile),
    backend (``torch``, or ``openvino``: the ONNX graphs run by OpenVINO on the CPU)."""

    device: str | None = None
    dtype: str = "auto"
    batch_size: int = 1
    compile: bool = False
    backend: str = "torch"


@dataclass(frozen=True, kw_only=True)
class AnimateJob:
    """One animation: a photo, its driving clip(s), the model and every option.

    driving: one video (or folder of frames), or one per face when several faces are animated.
    model: a registry name (``vox``), a shipped config name or a yaml path; checkpoint: its weights.
    strict: a driving clip that ends before its header says is an error instead of a warning.
    """

    source: Path
    driving: Path | tuple[Path, ...]
    model: str | Path = "vox"
    checkpoint: Path | None = None
    cache_dir: Path | None = None
    motion: MotionOptions = field(default_factory=MotionOptions)
    crop: CropOptions = field(default_factory=CropOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    strict: bool = False

    @property
    def drivings(self) -> tuple[Path, ...]:
        if isinstance(self.driving, (tuple, list)):
            return tuple(Path(p) for p in self.driving)
        return (Path(self.driving),)


# ----------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class CheckedJob:
    """What :func:`check_job` learnt: the model's config and each driving clip's description."""

    config: ModelConfig
    drivings: tuple[VideoInfo, ...]


def model_config(model: str | Path) -> ModelConfig:
    """The config of a registry name, shipped config name or yaml path (no torch, no download)."""
    from .hub.registry import MODELS

    entry = MODELS.get(model) if isinstance(model, str) else None
    return load_config(entry.config if entry is not None and entry.config else model)


def crops_source(job_crop: CropOptions, config: ModelConfig) -> bool:
    return config.is_face_model if job_crop.source is None else job_crop.source


def crops_driving(job_crop: CropOptions, config: ModelConfig) -> bool:
    return config.is_face_model if job_crop.driving is None else job_crop.driving


def _check_outputs(job: AnimateJob) -> None:
    from .io.atomic import check_output_folder
    from .io.video import output_format

    out = job.output
    inputs = {p.resolve() for p in (job.source, *job.drivings, job.checkpoint) if p is not None}
    named = [(p, kind) for p, kind in ((out.video, "video"), (out.side_by_side, "side-by-side"), (out.gif, "gif"))
             if p is not None]
    if not named:
        raise ValueError("AnimateJob.output names no output: give output.video, output.side_by_side or output.gif")
    seen: set[Path] = set()
    for path, kind in named:
        path = Path(path)
        resolved = path.resolve()
        if resolved in inputs:
            raise MediaError(f"output {path} is also an input file; choose another output name")
        if resolved in seen:
            raise MediaError(f"{path} is given as two different outputs; give each output its own name")
        seen.add(resolved)
        if kind == "gif" and path.suffix.lower() != ".gif":
            raise MediaError(f"cannot write GIF {path}: give a file name ending in .gif")
        if kind == "video" and path.suffix == "":
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise MediaError(f"cannot save PNG frames into {path}: it exists and is not an empty folder; pick "
                                 "a new folder name")
        elif kind != "gif":
            output_format(path)
        check_output_folder(path)


def _check_backend(runtime: RuntimeOptions) -> None:
    from .engine.backends import BACKENDS, missing_openvino, openvino_installed

    if runtime.backend not in BACKENDS:
        raise FommLabError(f"backend {runtime.backend!r} is not one of {', '.join(BACKENDS)}")
    if runtime.backend == "openvino":
        if runtime.compile:
            raise FommLabError("compiling applies to the torch backend; OpenVINO compiles its graphs itself",
                               remedies=[Remedy("leave compiling off ({})", "runtime.compile", False)])
        if runtime.device not in (None, "cpu"):
            raise FommLabError(f"the OpenVINO backend runs on the CPU, not on device {runtime.device!r}",
                               remedies=[Remedy("use the CPU ({})", "runtime.device", "cpu"),
                                         Remedy("use the torch backend ({})", "runtime.backend", "torch")])
        if not openvino_installed():
            raise missing_openvino()


def check_job(job: AnimateJob) -> CheckedJob:
    """Every check that needs no model, before any heavy work: the config, the photo (readable), every
    driving clip (a video with frames), the outputs (extensions, folders, writable, distinct), the
    options (crop mode, faces, best frame within the clip). Raises the error a later stage would."""
    from .io.image import read_image
    from .io.video import read_video

    config = model_config(job.model)
    if job.checkpoint is not None and not Path(job.checkpoint).is_file():
        from .errors import CheckpointError

        raise CheckpointError(f"checkpoint {job.checkpoint} does not exist; check the path")
    read_image(job.source)
    infos = []
    for path in job.drivings:
        with read_video(path) as reader:
            infos.append(reader.info)
    if job.crop.mode not in CROP_MODES:
        raise FommLabError(f"crop mode {job.crop.mode!r} is not one of {', '.join(CROP_MODES)}")
    if job.runtime.batch_size < 1:
        raise FommLabError(f"batch size must be at least 1, got {job.runtime.batch_size}")
    _check_backend(job.runtime)
    motion = job.motion
    if motion.best_frame is not None:
        if motion.best_frame < 0:
            raise FommLabError(f"best frame must be 0 or more, got {motion.best_frame}")
        shortest = min((i.frame_count for i in infos if i.frame_count), default=None)
        if shortest is not None and motion.best_frame >= shortest:
            raise FommLabError(f"best frame {motion.best_frame} is past the end of the driving clip (about {shortest} "
                               "frames)", remedies=[Remedy(f"give a frame from 0 to {shortest - 1} ({{}})",
                                                           "motion.best_frame", shortest - 1)])
    if motion.best_frame is not None and motion.find_best_frame:
        raise ValueError("give either MotionOptions.best_frame or find_best_frame, not both")
    _check_outputs(job)
    return CheckedJob(config, tuple(infos))


# ---------------------------------------------------------------------------------------- preparing


@dataclass
class SourcePlan:
    """The photo and what is animated of it: one crop per face, or the whole photo (``crops`` empty)."""

    photo: np.ndarray
    images: list[np.ndarray]
    crops: list[PhotoCrop]

    @property
    def boxes(self) -> list[Box]:
        return [crop.box for crop in self.crops]


@dataclass
class DrivingPlan:
    """A driving clip as animated: the file read (the face crop, or the clip itself), its rate, its exact
    frame count, the crop plan when it was cropped, and the file whose sound is kept."""

    path: Path
    fps: float
    frames: int
    plan: CropPlan | None
    audio_from: Path | None


@dataclass
class Prepared:
    """Everything decided before the networks run."""

    config: ModelConfig
    source: SourcePlan
    drivings: list[DrivingPlan]
    best_frame: int | None = None


def get_detector_for(crop: CropOptions, device: str | None = None) -> FaceDetector:
    """The face detector the crop options ask for."""
    from .faces.detect import get_detector

    return get_detector(crop.detector, device=device, download=crop.download_face_weights)


def prepare_source(photo: np.ndarray | Path, size: Size, crop: CropOptions, config: ModelConfig,
                   detector: FaceDetector | None = None, name: str | None = None) -> SourcePlan:
    """The photo cut to the model's size: the face crop(s) when cropping, else the centre square."""
    from .faces.crop import crop_faces
    from .io.image import read_image
    from .io.resize import resize_to_model

    if isinstance(photo, (str, Path)):
        name, photo = str(photo), read_image(photo)
    if not crops_source(crop, config):
        return SourcePlan(photo, [resize_to_model(photo, size)], [])
    faces = list(crop.faces) if isinstance(crop.faces, (tuple, list)) else crop.faces
    found = crop_faces(photo, size.width, faces=faces, padding=crop.padding,
                       detector=None if crop.source_box is not None else (detector or get_detector_for(crop)),
                       box=crop.source_box, name=name)
    return SourcePlan(photo, [c.image for c in found], found)


def exact_frame_count(info: VideoInfo) -> int:
    """The number of frames a reader will give (packets counted without decoding; estimated for
    variable-rate video, which is resampled)."""
    from .io.probe import count_frames

    if info.path.is_dir() or info.variable_rate:
        return int(info.frame_count or 0)
    return count_frames(info.path)[0] or int(info.frame_count or 0)


def prepare_driving(path: Path, size: Size, crop: CropOptions, config: ModelConfig, workdir: Path,
                    detector: FaceDetector | None = None, audio: bool = True, progress: bool = True,
                    index: int = 0) -> DrivingPlan:
    """The driving clip cut to its longest face track (when cropping) and written at the model's size
    into ``workdir``; or the clip as it is (frames are then centre-cropped while animating)."""
    from .faces.track import plan_video_crop
    from .io.probe import probe_video

    path = Path(path)
    if not crops_driving(crop, config):
        info = probe_video(path) if not path.is_dir() else None
        fps = info.fps if info is not None else 25.0
        frames = exact_frame_count(info) if info is not None else len(list(path.iterdir()))
        return DrivingPlan(path, fps, frames, None, path if audio and info is not None and info.has_audio else None)
    plan = plan_video_crop(path, size.width, increase=crop.increase, min_frames=crop.min_track_frames,
                           detector=None if crop.driving_box is not None else (detector or get_detector_for(crop)),
                           box=crop.driving_box, mode=crop.mode, progress=progress)
    cropped = plan.write(workdir / f"driving-{index + 1}-crop.mp4", audio=audio)
    track = plan.track()
    return DrivingPlan(cropped, plan.fps, track.frames, plan, cropped if audio and plan.has_audio else None)


def prepare(job: AnimateJob, checked: CheckedJob, workdir: Path, detector: FaceDetector | None = None,
            landmarks: Callable[[np.ndarray], np.ndarray | None] | None = None, progress: bool = True,
            say: Progress = log.info, source: SourcePlan | None = None) -> Prepared:
    """Crop the photo (unless ``source``, its :func:`prepare_source`, is given) and the driving clip(s);
    pick the reference frame. ``workdir`` receives the driving crops; ``landmarks`` is needed for
    ``find_best_frame``."""
    config = checked.config
    size = config.frame_size
    needs_detector = ((crops_source(job.crop, config) and job.crop.source_box is None)
                      or (crops_driving(job.crop, config) and job.crop.driving_box is None))
    if detector is None and needs_detector:
        detector = get_detector_for(job.crop, job.runtime.device)
    if source is None:
        source = prepare_source(job.source, size, job.crop, config, detector)
    if source.crops:
        say(f"photo: {len(source.crops)} face(s) at " + ", ".join(
            "x0={} y0={} x1={} y1={}".format(*c.box.as_ints()) for c in source.crops))
    drivings_in = job.drivings
    if len(drivings_in) > 1 and len(drivings_in) != len(source.images):
        raise FommLabError(f"{len(drivings_in)} driving clips for {len(source.images)} face(s): give one clip for "
                           "every face, in the same order, or one clip for all")
    drivings = []
    for index, path in enumerate(drivings_in):
        plan = prepare_driving(path, size, job.crop, config, workdir, detector, audio=job.output.audio,
                               progress=progress, index=index)
        if plan.plan is not None:
            say(plan.plan.describe())
        drivings.append(plan)
    best = job.motion.best_frame
    if job.motion.find_best_frame:
        best = find_reference(source.images[0], drivings[0], size, landmarks, progress)
        say(f"best reference frame: {best}")
    if best is not None and best >= min(d.frames for d in drivings):
        shortest = min(d.frames for d in drivings)
        raise FommLabError(f"best frame {best} is past the end of the driving clip ({shortest} frames after "
                           "cropping)", remedies=[Remedy(f"give a frame from 0 to {shortest - 1} ({{}})",
                                                         "motion.best_frame", shortest - 1)])
    return Prepared(config, source, drivings, best)


def driving_frames(plan: DrivingPlan, size: Size, strict: bool = False) -> Iterator[np.ndarray]:
    """The clip's frames at the model's size (centre square when it was not cropped), streamed."""
    from .io.resize import resize_to_model
    from .io.video import read_video

    with read_video(plan.path, strict=strict) as reader:
        for frame in reader:
            yield resize_to_model(frame, size)


def find_reference(source: np.ndarray, driving: DrivingPlan, size: Size,
                   landmarks: Callable[[np.ndarray], np.ndarray | None] | None, progress: bool = True) -> int:
    """The driving frame whose face pose is closest to the photo's (needs face-alignment's landmarks)."""
    from tqdm.auto import tqdm

    from .engine.best_frame import find_best_frame
    from .errors import DownloadError
    from .faces.detect import MISSING_WEIGHTS_REMEDIES

    if landmarks is None:
        from .faces.detect import get_landmarker

        try:
            landmarks = get_landmarker()
        except DownloadError as exc:
            raise DownloadError("finding the best frame needs face-alignment's landmarks, whose weights are not "
                                "here", details=exc.details,
                                remedies=[MISSING_WEIGHTS_REMEDIES[0],
                                          Remedy("give the reference frame ({})", "motion.best_frame", 0)]) from exc
    frames = tqdm(driving_frames(driving, size), total=driving.frames, desc="finding the best frame", unit="frame",
                  disable=not progress)
    return find_best_frame(source, frames, landmarks)


# ---------------------------------------------------------------------------------------- animating


@dataclass
class AnimateResult:
    """What :func:`animate` wrote: ``outputs`` by kind (video, side_by_side, gif), the frame count and rate."""

    outputs: dict[str, Path]
    frames: int
    fps: float
    prepared: Prepared
    dtype: str = "float32"


def make_animator(model: FommModel, motion: MotionOptions, runtime: RuntimeOptions) -> Any:
    """The Animator for these motion and runtime options."""
    from .engine.animator import Animator

    return Animator(model, relative=motion.relative, adapt_scale=motion.adapt_scale, batch_size=runtime.batch_size,
                    dtype=runtime.dtype, compile=runtime.compile, smoothing=motion.smoothing, backend=runtime.backend)


def _composite(prepared: Prepared, streams: list[Iterator[np.ndarray]], feather: float) -> Iterator[np.ndarray]:
    """Every animated face pasted back into the full photo, frame by frame."""
    from .faces.paste import Compositor

    compositor = Compositor(prepared.source.photo, prepared.source.boxes,
                            [c.face for c in prepared.source.crops], feather=feather)
    for frames in zip(*streams):
        yield compositor.paste(list(frames))


def animate(prepared: Prepared, model: FommModel, motion: MotionOptions, output: OutputOptions,
            runtime: RuntimeOptions = RuntimeOptions(), crop: CropOptions = CropOptions(), strict: bool = False,
            progress: bool = True, animators: list[Any] | None = None) -> AnimateResult:
    """Animate every face of ``prepared`` and write the outputs in one streamed pass.

    The result is the animated crop, or, with ``output.paste_back`` or several faces, the full photo
    with every face pasted back. ``animators`` (one per face) may be given to reuse compiled networks.
    """
    from tqdm.auto import tqdm

    from .device import dtype_name

    size = prepared.config.frame_size
    faces = len(prepared.source.images)
    if animators is None:
        animators = [make_animator(model, motion, runtime) for _ in range(faces)]
    plans = prepared.drivings if len(prepared.drivings) == faces else prepared.drivings * faces
    frames = min(p.frames for p in plans)
    streams = [animator.animate(image, driving_frames(plan, size, strict), best_frame=prepared.best_frame)
               for animator, image, plan in zip(animators, prepared.source.images, plans)]
    paste = (output.paste_back or faces > 1) and bool(prepared.source.crops)
    results = _composite(prepared, streams, crop.feather) if paste else streams[0]
    results = tqdm(results, total=frames, desc="animating", unit="frame", disable=not progress)
    first = plans[0]
    audio = first.audio_from if output.audio else None
    written = _write_outputs(results, output, first, prepared, size, audio, paste)
    return AnimateResult(written.outputs, written.frames, first.fps, prepared, dtype_name(animators[0].dtype))


@dataclass
class _Written:
    outputs: dict[str, Path]
    frames: int


def _side_by_side_height(prepared: Prepared, size: Size, paste: bool) -> int:
    """Common height of the side-by-side columns: the model's size, or for a paste-back the photo's
    height up to twice the model's (so the full photo is not squeezed into a face-sized column)."""
    if not paste:
        return size.height
    return int(min(prepared.source.photo.shape[0], 2 * size.height)) // 2 * 2


def _write_outputs(results: Iterator[np.ndarray], output: OutputOptions, driving: DrivingPlan, prepared: Prepared,
                   size: Size, audio: Path | None, paste: bool) -> _Written:
    """Stream the frames into the video (or PNG folder) and the side-by-side at once, then make the GIF.
    Each file is published only once complete; a failure leaves none of them half-written."""
    from .io.export import SideBySideWriter, make_gif, save_png_frames
    from .io.video import VideoWriter

    fps = driving.fps
    outputs: dict[str, Path] = {}
    count = 0
    with tempfile.TemporaryDirectory(prefix="fomm-lab-") as tmpdir:
        video = output.video if output.video is not None else (Path(tmpdir) / "result.mp4" if output.gif else None)
        frames_folder = video is not None and video.suffix == ""
        with contextlib.ExitStack() as stack:
            sinks: list[Callable[[np.ndarray], None]] = []
            if video is not None and not frames_folder:
                sinks.append(stack.enter_context(VideoWriter(video, fps, audio_from=audio)).write)
            if output.side_by_side is not None:
                column = prepared.source.photo if paste else prepared.source.images[0]
                sbs = stack.enter_context(SideBySideWriter(
                    output.side_by_side, ["source", "driving", "result"], fps,
                    height=_side_by_side_height(prepared, size, paste), audio_from=audio))
                drive = driving_frames(driving, size)
                sinks.append(lambda frame: sbs.write([column, next(drive), frame]))

            def tee() -> Iterator[np.ndarray]:
                nonlocal count
                for frame in results:
                    for sink in sinks:
                        sink(frame)
                    count += 1
                    yield frame

            if frames_folder:
                assert video is not None
                save_png_frames(tee(), video, progress=False)
            else:
                for _ in tee():
                    pass
        if output.video is not None:
            outputs["video"] = output.video
        if output.side_by_side is not None:
            outputs["side_by_side"] = output.side_by_side
        if output.gif is not None:
            assert video is not None
            make_gif(video, output.gif, source_fps=fps, width=2 * size.width if paste else size.width,
                     progress=False)
            outputs["gif"] = output.gif
    return _Written(outputs, count)


# ---------------------------------------------------------------------------------------- one call


def run_job(job: AnimateJob, *, model: FommModel | None = None, detector: FaceDetector | None = None,
            progress: bool = True, say: Progress = log.info) -> AnimateResult:
    """Check, load the model, prepare and animate ``job``; returns what was written."""
    from .engine.model import load_model

    checked = check_job(job)
    if model is None:
        model = load_model(job.model, job.checkpoint, device=job.runtime.device, cache_dir=job.cache_dir,
                           progress=progress)
    with tempfile.TemporaryDirectory(prefix="fomm-lab-") as workdir:
        prepared = prepare(job, checked, Path(workdir), detector, progress=progress, say=say)
        return animate(prepared, model, job.motion, job.output, job.runtime, job.crop, job.strict, progress)


__all__ = [
    "AnimateJob",
    "AnimateResult",
    "CheckedJob",
    "CropOptions",
    "DrivingPlan",
    "MotionOptions",
    "OutputOptions",
    "Prepared",
    "RuntimeOptions",
    "SourcePlan",
    "animate",
    "check_job",
    "prepare",
    "run_job",
]
