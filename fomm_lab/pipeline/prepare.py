"""Preparing a job: the photo and the driving clip(s) cut to the model's square frames, the reference frame.

* **Face cropping** (``CropOptions.source`` / ``.driving`` = None): on for face models (the registry's face
  flag), off for the others. A photo in which no face is found is an error (never a silent whole-photo
  animation); so is a driving clip without a face track. Both errors say how to go on without cropping or with a
  box given by hand.
* **Which track**: the longest face track of the driving clip (tracks shorter than ``crop.min_track_frames``
  frames are detector noise, unless the clip is shorter).
* **Which faces**: the largest face of the photo; ``CropOptions.faces="all"`` (or indices, numbered from 0 left
  to right) animates several, each with the driving clip (or one clip per face), pasted back into the photo.
* **Reference frame**: the first driving frame, ``MotionOptions.best_frame`` or, with ``find_best_frame``,
  the frame whose face pose is closest to the photo's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..engine.config import ModelConfig
from ..engine.reference import check_reference
from ..errors import FommLabError, Remedy
from ..faces.crop import PhotoCrop
from ..faces.track import CropPlan
from ..geometry import Box, Size
from ..io.probe import VideoInfo
from .check import crops_driving, crops_source
from .job import AnimateJob, CropOptions

if TYPE_CHECKING:
    from ..faces.detect import FaceDetector

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
"""Where the pipeline says what it is doing (a line at a time); the CLI prints, the notebook displays."""


def _needed(detector: FaceDetector | None) -> FaceDetector:
    if detector is None:
        raise ValueError("cropping a face without a given box needs the face detector (Animation.detector)")
    return detector


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
    """The face detector the crop options ask for (made by :class:`~fomm_lab.pipeline.session.Animation`, once)."""
    from ..faces.detect import get_detector

    return get_detector(crop.detector, device=device, download=crop.download_face_weights)


def prepare_source(photo: np.ndarray | Path, size: Size, crop: CropOptions, config: ModelConfig,
                   detector: FaceDetector | None = None, name: str | None = None) -> SourcePlan:
    """The photo cut to the model's size: the face crop(s) when cropping, else the centre square."""
    from ..faces.crop import crop_faces
    from ..io.image import read_image
    from ..io.resize import resize_to_model

    if isinstance(photo, (str, Path)):
        name, photo = str(photo), read_image(photo)
    if not crops_source(crop, config):
        return SourcePlan(photo, [resize_to_model(photo, size)], [])
    faces = list(crop.faces) if isinstance(crop.faces, (tuple, list)) else crop.faces
    found = crop_faces(photo, size.width, faces=faces, padding=crop.padding,
                       detector=None if crop.source_box is not None else _needed(detector),
                       box=crop.source_box, name=name)
    return SourcePlan(photo, [c.image for c in found], found)


def exact_frame_count(info: VideoInfo) -> int:
    """The number of frames a reader will give (packets counted without decoding; estimated for
    variable-rate video, which is resampled)."""
    from ..io.probe import count_frames

    if info.path.is_dir() or info.variable_rate:
        return int(info.frame_count or 0)
    return count_frames(info.path)[0] or int(info.frame_count or 0)


def prepare_driving(path: Path, size: Size, crop: CropOptions, config: ModelConfig, workdir: Path,
                    detector: FaceDetector | None = None, audio: bool = True, progress: bool = True,
                    index: int = 0) -> DrivingPlan:
    """The driving clip cut to its longest face track (when cropping) and written at the model's size
    into ``workdir``; or the clip as it is (frames are then centre-cropped while animating)."""
    from ..faces.track import plan_video_crop
    from ..io.probe import probe_video

    path = Path(path)
    if not crops_driving(crop, config):
        info = probe_video(path) if not path.is_dir() else None
        fps = info.fps if info is not None else 25.0
        frames = exact_frame_count(info) if info is not None else len(list(path.iterdir()))
        return DrivingPlan(path, fps, frames, None, path if audio and info is not None and info.has_audio else None)
    plan = plan_video_crop(path, size.width, increase=crop.increase, min_frames=crop.min_track_frames,
                           detector=None if crop.driving_box is not None else _needed(detector),
                           box=crop.driving_box, mode=crop.mode, progress=progress)
    cropped = plan.write(workdir / f"driving-{index + 1}-crop.mp4", audio=audio)
    track = plan.track()
    return DrivingPlan(cropped, plan.fps, track.frames, plan, cropped if audio and plan.has_audio else None)


def prepare(job: AnimateJob, config: ModelConfig, workdir: Path, detector: FaceDetector | None = None,
            landmarks: Callable[[np.ndarray], np.ndarray | None] | None = None, progress: bool = True,
            say: Progress = log.info, source: SourcePlan | None = None) -> Prepared:
    """Crop the photo (unless ``source``, its :func:`prepare_source`, is given) and the driving clip(s);
    pick the reference frame. ``workdir`` receives the driving crops; ``detector`` is needed when a face is
    cropped without a given box, ``landmarks`` for ``find_best_frame``."""
    size = config.frame_size
    if source is None:
        source = prepare_source(job.source, size, job.crop, config, detector)
    if source.crops:
        say(f"photo: {len(source.crops)} face(s) animated (numbered from 0 left to right): " + ", ".join(
            "{} at x0={} y0={} x1={} y1={}".format(c.label, *c.box.as_ints()) for c in source.crops))
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
    if best is not None:
        check_reference(best, min(d.frames for d in drivings))
    return Prepared(config, source, drivings, best)


def driving_frames(plan: DrivingPlan, size: Size, strict: bool = False) -> Iterator[np.ndarray]:
    """The clip's frames at the model's size (centre square when it was not cropped), streamed."""
    from ..io.resize import resize_to_model
    from ..io.video import read_video

    with read_video(plan.path, strict=strict) as reader:
        for frame in reader:
            yield resize_to_model(frame, size)


def find_reference(source: np.ndarray, driving: DrivingPlan, size: Size,
                   landmarks: Callable[[np.ndarray], np.ndarray | None] | None, progress: bool = True) -> int:
    """The driving frame whose face pose is closest to the photo's (needs face-alignment's landmarks)."""
    from tqdm.auto import tqdm

    from ..engine.best_frame import find_best_frame
    from ..errors import DownloadError
    from ..faces.detect import MISSING_WEIGHTS_REMEDIES

    if landmarks is None:
        from ..faces.detect import get_landmarker

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


