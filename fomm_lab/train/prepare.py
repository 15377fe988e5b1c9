"""``fomm-lab prepare-data VIDEOS... --out DIR``: raw videos -> a dataset in the official layout.

Each video's face track is cut out as square frames of ``size`` pixels with the package's video crop
(:func:`fomm_lab.faces.track.plan_video_crop`: the longest track, or every track with ``all_tracks``), or,
with ``crop=False`` (objects other than faces), its frames are centre-cropped to a square and scaled. The
result goes to ``DIR/train/NAME`` or ``DIR/test/NAME`` -- a folder of PNG frames (lossless and the fastest
to sample from; the default) or an H.264 mp4. NAME is the video's file name without its extension, followed
by ``#N`` for track N with ``all_tracks`` (so ``id_sampling`` groups a video's tracks as one identity).

Videos are split by a hash of their name (:func:`split_of`): about a ``test_fraction`` of them go to
``test`` (at least one when there are two or more), each always to the same side. A destination that exists
already is kept (a preparation can be re-run to add videos); each is written under a temporary name and
renamed when complete. A video in which no face is found does not stop the others: it is reported in
:class:`PrepareResult`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError, FommLabError, MediaError
from ..geometry import Size

log = logging.getLogger(__name__)

FORMATS = ("png", "mp4")


@dataclass(frozen=True, kw_only=True)
class PrepareOptions:
    """size: the side of the square frames (the config's frame_shape). test_fraction: share of the videos put
    in ``test``. format: ``png`` (frame folders) or ``mp4``. crop: cut the face track (False: the centre
    square of the whole frame). detector: ``auto``, ``face_alignment`` or ``haar``; download_face_weights: let
    face-alignment fetch its weights. increase, mode, min_frames: as for ``fomm-lab crop``. all_tracks: every
    face track, not only the longest."""

    size: int = 256
    test_fraction: float = 0.2
    format: str = "png"
    crop: bool = True
    detector: str = "auto"
    download_face_weights: bool = False
    increase: float = 0.1
    mode: str = "auto"
    min_frames: int = 10
    all_tracks: bool = False
    progress: bool = True


@dataclass
class PrepareResult:
    """What was written (destination paths), kept (already there) and which videos failed (with the error)."""

    out: Path
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, FommLabError]] = field(default_factory=list)


def _rank(path: Path) -> float:
    """A number in [0, 1) fixed by the video's name (the first 8 hex digits of the sha1 of its name)."""
    return int(hashlib.sha1(path.name.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def split_of(videos: Sequence[Path], test_fraction: float) -> dict[Path, str]:
    """``train`` or ``test`` for each video: ``test`` when the number its name hashes to is below
    ``test_fraction`` -- so a video stays on its side when others are added -- and, when that leaves the test
    side empty and there are two videos or more, the video of the lowest number goes to ``test``."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    splits = {video: "test" if _rank(video) < test_fraction else "train" for video in videos}
    if test_fraction > 0 and len(videos) >= 2 and "test" not in splits.values():
        splits[min(videos, key=_rank)] = "test"
    if "train" not in splits.values():
        splits[max(videos, key=_rank)] = "train"
    return splits


def _destination(out: Path, split: str, name: str, fmt: str) -> Path:
    return out / split / (name if fmt == "png" else f"{name}.mp4")


def _whole_frames(path: Path, size: int) -> tuple[Iterator[np.ndarray], float]:
    from ..io.resize import resize_to_model
    from ..io.video import read_video

    reader = read_video(path)

    def frames() -> Iterator[np.ndarray]:
        with reader:
            for frame in reader:
                yield resize_to_model(frame, Size.square(size))

    return frames(), reader.info.fps


def _write(frames: Iterator[np.ndarray], destination: Path, fmt: str, fps: float) -> None:
    from ..io.export import save_png_frames
    from ..io.video import write_video

    if fmt == "png":
        save_png_frames(frames, destination, progress=False)
    else:
        write_video(destination, frames, fps, progress=False)


def prepare_data(videos: Sequence[str | Path], out: str | Path, options: PrepareOptions = PrepareOptions(),
                 say: Callable[[str], None] = log.info) -> PrepareResult:
    """Write the dataset ``out`` from ``videos`` (see the module's description)."""
    from tqdm.auto import tqdm

    from ..faces.detect import get_detector
    from ..faces.track import plan_video_crop

    if options.format not in FORMATS:
        raise FommLabError(f"dataset format {options.format!r} is not one of {', '.join(FORMATS)}")
    if options.size < 16:
        raise FommLabError(f"frame size {options.size} is too small: give 16 pixels or more (the config's frame_shape)")
    paths = [Path(v) for v in videos]
    if not paths:
        raise DatasetError("no videos given: name the videos to prepare (files or folders of frames)")
    for path in paths:
        if not path.exists():
            raise MediaError(f"video {path} does not exist; check the path")
    stems: dict[str, Path] = {}
    for path in paths:
        name = path.stem if path.is_file() else path.name
        if name in stems:
            raise DatasetError(f"{stems[name]} and {path} would both be named {name!r} in the dataset; rename one")
        stems[name] = path
    out = Path(out)
    splits = split_of(paths, options.test_fraction)
    result = PrepareResult(out)
    detector = get_detector(options.detector, download=options.download_face_weights) if options.crop else None
    for path in tqdm(paths, desc="preparing videos", unit="video", disable=not options.progress):
        name, split = (path.stem if path.is_file() else path.name), splits[path]
        try:
            if not options.crop:
                destination = _destination(out, split, name, options.format)
                if destination.exists():
                    result.kept.append(destination)
                    continue
                frames, fps = _whole_frames(path, options.size)
                _write(frames, destination, options.format, fps)
                result.written.append(destination)
                continue
            known = _destination(out, split, name, options.format)
            if not options.all_tracks and known.exists():
                result.kept.append(known)
                continue
            plan = plan_video_crop(path, options.size, increase=options.increase, min_frames=options.min_frames,
                                   detector=detector, mode=options.mode, progress=False)
            tracks = range(len(plan.tracks)) if options.all_tracks else range(1)
            for track in tracks:
                label = f"{name}#{track + 1}" if options.all_tracks else name
                destination = _destination(out, split, label, options.format)
                if destination.exists():
                    result.kept.append(destination)
                    continue
                _write(plan.frames(track), destination, options.format, plan.fps)
                result.written.append(destination)
                say(f"{path} track {track + 1} ({plan.tracks[track].frames} frames) -> {destination}")
        except FommLabError as exc:
            result.failed.append((path, exc))
            say(f"{path}: skipped: {exc.first_line()}")
    for split in ("train", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
    if not any(p for p in (out / "test").iterdir() if not p.name.startswith(".")):
        say(f"warning: {out / 'test'} holds no video (fomm-lab reconstruct evaluates those): move one there or "
            "give a --test-fraction")
    return result
