"""Square face crops at the model size: of a photo (:func:`crop_photo`) and of a video
(:func:`plan_video_crop` -> :class:`CropPlan` -> :meth:`CropPlan.write`, or :func:`crop_video`).

Video crops follow faces through the clip: faces are detected every ``stride`` frames, linked into
tracks by box overlap (IoU), tracks end at scene cuts (a jump of the colour histogram between two
frames) or when the face is lost for longer than ``max_gap_s``; each track gets one square box that
holds the face over its whole motion plus a margin, and ffmpeg writes that span cropped to 256x256
with the audio of the same span.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fomm_lab.errors import FommLabError, MediaError, NoFaceError
from fomm_lab.faces import Box, FaceDetector, get_detector
from fomm_lab.resize import resize_image

DEFAULT_PADDING = (0.4, 0.5, 0.4, 0.35)
"""Photo-crop padding (left, top, right, bottom) as fractions of the face box width/height: more room
above for hair and forehead, as in the VoxCeleb crops the face models were trained on."""


class CropError(FommLabError, ValueError):
    """A crop argument does not fit the image or video (box outside the frame, size not square, ...)."""


class FaceIndexError(CropError, IndexError):
    """A face or track index is out of range."""


def _square_size(size: int | tuple[int, int]) -> int:
    w, h = (size, size) if isinstance(size, int) else size
    if w != h or w <= 0:
        raise CropError(f"crop size must be square and positive (the models take square frames), got {size}")
    return int(w)


# ----------------------------------------------------------------------------------------------- photo


@dataclass(frozen=True)
class PhotoCrop:
    """A face crop of a photo.

    image: RGB uint8 (size, size, 3). box: the square cropped region in the full photo's pixels (integer
    corners, inside the photo) -- paste results back there. face: the detected face box.
    """

    image: np.ndarray
    box: Box
    face: Box


def crop_photo(img: np.ndarray | str | Path, face_index: int | None = None,
               padding: tuple[float, float, float, float] = DEFAULT_PADDING,
               size: int | tuple[int, int] = (256, 256), detector: FaceDetector | None = None) -> PhotoCrop:
    """Crop a face out of a photo as a padded square, resized to ``size``.

    Args:
        img: RGB uint8 HxWx3 array, or an image file path (read with ``fomm_lab.media.read_image``).
        face_index: None for the largest face, else the index among faces ordered left to right.
        padding: (left, top, right, bottom) growth of the face box, fractions of its width/height. The
            padded box is then made square around its centre, shifted into the photo, and shrunk to the
            photo's shorter side if larger.
        size: output side in pixels (square).
        detector: a ``fomm_lab.faces`` detector; None picks ``get_detector("auto")``.

    Raises NoFaceError when no face is found, FaceIndexError when ``face_index`` is out of range.
    """
    name = "the image"
    if isinstance(img, (str, Path)):
        from fomm_lab.media import read_image

        name, img = str(img), read_image(img)
    side = _square_size(size)
    detector = detector or get_detector("auto")
    faces = detector.detect(img)
    if not faces:
        raise NoFaceError(f"no face found in {name} by the {detector.name} detector; crop it by hand to a square "
                          "around the face, or use it uncropped (it is then resized to the model size).")
    if face_index is None:
        face = max(faces, key=lambda b: b.area)
    else:
        ordered = sorted(faces, key=lambda b: b.x0)
        if not -len(ordered) <= face_index < len(ordered):
            raise FaceIndexError(f"face_index={face_index} but {name} has {len(ordered)} face(s) (numbered 0.. "
                                 "from left to right); pick one of those or None for the largest.")
        face = ordered[face_index]
    h, w = img.shape[:2]
    box = face.pad(*padding).square_in(w, h)
    region = img[int(box.y0):int(box.y1), int(box.x0):int(box.x1)]
    return PhotoCrop(image=resize_image(region, (side, side)), box=box, face=face)


# ----------------------------------------------------------------------------------------------- video


@dataclass
class Track:
    """One face followed through frames [start, end) of a video.

    box: square crop box in frame pixels (integer corners, inside the frame). faces: the detections
    (frame index, face box) it was built from.
    """

    box: Box
    start: int
    end: int
    fps: float
    faces: list[tuple[int, Box]] = field(default_factory=list, repr=False)

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def start_s(self) -> float:
        return self.start / self.fps

    @property
    def end_s(self) -> float:
        return self.end / self.fps

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.fps


@dataclass
class CropPlan:
    """Where the faces of a video are and how to cut them out; print it to preview, ``write`` to run it.

    tracks: face tracks, longest first. size: output side in pixels.
    """

    path: Path
    fps: float
    width: int
    height: int
    frame_count: int
    has_audio: bool
    tracks: list[Track]
    size: int = 256

    def track(self, index: int | None = None) -> Track:
        """Track ``index`` (tracks are ordered longest first), or the longest for None."""
        index = 0 if index is None else index
        if not -len(self.tracks) <= index < len(self.tracks):
            raise FaceIndexError(f"track={index} but {self.path} has {len(self.tracks)} face track(s); "
                                 "pick one of those or None for the longest.")
        return self.tracks[index]

    def command(self, output: str | Path | None = None, track: int | None = None, audio: bool = True) -> list[str]:
        """The ffmpeg command (argument list) writing ``track`` (None: longest) to ``output``
        (default ``<input stem>-crop.mp4`` beside the input): trimmed to the track's span, cropped to its
        box, scaled to ``size`` with Lanczos, H.264 yuv420p + faststart, AAC audio of the same span."""
        import ffmpeg

        from fomm_lab.media import ffmpeg_exe

        if self.path.is_dir():
            raise CropError(f"{self.path} is a folder of frames: there is no ffmpeg command for it; "
                            "CropPlan.write() crops it frame by frame.")
        chosen = self.track(track)
        output = self.path.with_name(f"{self.path.stem}-crop.mp4") if output is None else output
        box = chosen.box
        src = ffmpeg.input(str(self.path), ss=f"{chosen.start_s:.6f}", t=f"{chosen.duration:.6f}")
        video = (src.video
                 .filter("crop", int(box.width), int(box.height), int(box.x0), int(box.y0))
                 .filter("scale", self.size, self.size, flags="lanczos")
                 .filter("setsar", 1))
        streams, options = [video], {}
        if audio and self.has_audio:
            streams.append(src.audio)
            options = {"acodec": "aac", "b:a": "128k"}
        out = ffmpeg.output(*streams, str(output), vcodec="libx264", pix_fmt="yuv420p", crf=18,
                            preset="veryfast", movflags="+faststart", **{"frames:v": chosen.frames}, **options)
        return out.global_args("-hide_banner", "-loglevel", "error").compile(cmd=ffmpeg_exe(),
                                                                            overwrite_output=True)

    @property
    def ffmpeg_args(self) -> list[str]:
        """The command writing the longest track beside the input (for previews)."""
        return self.command()

    def write(self, output: str | Path, track: int | None = None, audio: bool = True) -> Path:
        """Run :meth:`command` into a temporary file beside ``output``, then rename it to ``output``;
        nothing is left at ``output`` when ffmpeg fails (MediaError with ffmpeg's message). A folder of
        frames is cropped frame by frame instead (it has no audio)."""
        output = Path(output)
        if self.path.is_dir():
            return self._write_frames(output, self.track(track))
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=output.suffix or ".mp4", dir=output.parent)
        os.close(fd)
        try:
            result = subprocess.run(self.command(tmp, track, audio), capture_output=True, text=True)
            if result.returncode != 0:
                raise MediaError(f"ffmpeg failed to write the face crop of {self.path} to {output}: "
                                 f"{result.stderr.strip()[-800:]}")
            os.replace(tmp, output)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return output

    def _write_frames(self, output: Path, chosen: Track) -> Path:
        from fomm_lab.media import read_video, write_video

        b = chosen.box
        with read_video(self.path) as reader:
            frames = (resize_image(frame[int(b.y0):int(b.y1), int(b.x0):int(b.x1)], (self.size, self.size))
                      for frame in itertools.islice(reader, chosen.start, chosen.end))
            return write_video(output, frames, self.fps)

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.width}x{self.height}, {self.frame_count} frames at {self.fps:g} fps, "
                 f"{len(self.tracks)} face track(s)"]
        for i, t in enumerate(self.tracks):
            b = t.box
            lines.append(f"  track {i}: frames {t.start}-{t.end - 1} ({t.start_s:.2f}-{t.end_s:.2f} s), "
                         f"box x={int(b.x0)} y={int(b.y0)} side={int(b.width)}")
        if self.tracks and not self.path.is_dir():
            lines.append("  " + " ".join(self.ffmpeg_args))
        return "\n".join(lines)


def _histogram(frame: np.ndarray) -> np.ndarray:
    """Per-channel 16-bin colour histogram of a subsampled frame, each channel summing to 1: (3, 16)."""
    small = frame[::8, ::8]
    hist = np.stack([np.bincount(small[..., c].ravel() >> 4, minlength=16) for c in range(3)]).astype(np.float64)
    return hist / hist.sum(axis=1, keepdims=True)


def _hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean total-variation distance of the channel histograms, in [0, 1]."""
    return float(np.abs(a - b).sum(axis=1).mean() / 2)


MATCH_SCALE = 2.0
"""Boxes are compared at twice their size, so a face that moved up to about a face width between two
detections still overlaps its track."""


class _Tracker:
    """Links per-frame detections into tracks by IoU; one instance per video."""

    def __init__(self, iou_threshold: float, max_gap: int, stride: int):
        self.iou_threshold, self.max_gap, self.stride = iou_threshold, max_gap, stride
        self.open: list[list[tuple[int, Box]]] = []
        self.closed: list[tuple[list[tuple[int, Box]], int]] = []  # (detections, end frame exclusive)

    def _close(self, track: list[tuple[int, Box]], boundary: int) -> None:
        self.closed.append((track, min(track[-1][0] + self.stride, boundary)))

    def cut(self, frame: int) -> None:
        """A scene cut (or the end of the video) at ``frame``: every open track ends."""
        for track in self.open:
            self._close(track, frame)
        self.open = []

    def update(self, frame: int, boxes: list[Box]) -> None:
        """Detections ``boxes`` at ``frame``: tracks lost for too long end, the rest take the best-matching
        detection, unmatched detections start new tracks."""
        for track in [t for t in self.open if frame - t[-1][0] > self.max_gap]:
            self._close(track, frame)
            self.open.remove(track)
        grown = [b.scaled(MATCH_SCALE) for b in boxes]
        pairs = sorted(((t[-1][1].scaled(MATCH_SCALE).iou(g), ti, bi)
                        for ti, t in enumerate(self.open) for bi, g in enumerate(grown)), reverse=True)
        used_tracks, used_boxes = set(), set()
        for iou, ti, bi in pairs:
            if iou < self.iou_threshold:
                break
            if ti not in used_tracks and bi not in used_boxes:
                self.open[ti].append((frame, boxes[bi]))
                used_tracks.add(ti)
                used_boxes.add(bi)
        self.open += [[(frame, b)] for bi, b in enumerate(boxes) if bi not in used_boxes]


def plan_video_crop(path: str | Path, increase: float = 0.1, min_frames: int = 25,
                    detector: FaceDetector | None = None, stride: int = 5, iou_threshold: float = 0.2,
                    max_gap_s: float = 1.0, cut_threshold: float = 0.35,
                    box: tuple[float, float, float, float] | None = None, size: int = 256,
                    progress: bool = True) -> CropPlan:
    """Find the faces of a video and plan one square crop (``size`` pixels a side) per face track.

    Args:
        path: any video ``fomm_lab.media.read_video`` reads.
        increase: margin around the union of a track's face boxes, as a fraction of its longer side on
            each side (0.1 -> the square's side is 1.2x). The square is shifted into the frame and shrunk
            to the frame's shorter side if needed.
        min_frames: drop tracks shorter than this many frames (or than the whole clip, if it is shorter).
        detector: a ``fomm_lab.faces`` detector; None picks ``get_detector("auto")``.
        stride: detect faces on every ``stride``-th frame (and on the first frame after a cut).
        iou_threshold: minimum IoU of a detection and a track's last box, both scaled by ``MATCH_SCALE``
            around their centres, to link them.
        max_gap_s: a track without detection for longer than this many seconds ends.
        cut_threshold: histogram distance in [0, 1] between consecutive frames that counts as a scene cut.
        box: (x0, y0, x1, y1) pixels to skip detection: one track over the whole video, made square
            around the box's centre.
        size: output side in pixels.
        progress: show a tqdm bar while scanning.

    Raises NoFaceError when no track of ``min_frames`` frames exists.
    """
    from tqdm.auto import tqdm

    from fomm_lab.media import read_video

    path = Path(path)
    if stride < 1 or min_frames < 1:
        raise CropError(f"stride and min_frames must be >= 1, got stride={stride}, min_frames={min_frames}")
    with read_video(path) as reader:
        info = reader.info
    fps, width, height = float(info.fps), int(info.width), int(info.height)
    plan = CropPlan(path, fps, width, height, info.frame_count or 0, bool(info.has_audio), [], _square_size(size))
    if box is not None:
        manual = Box(*map(float, box))
        if not (0 <= manual.x0 < manual.x1 <= width and 0 <= manual.y0 < manual.y1 <= height):
            raise CropError(f"crop box {box} is not inside the {width}x{height} frame of {path}; "
                            "give (x0, y0, x1, y1) pixels with x0 < x1 <= width and y0 < y1 <= height.")
        if not plan.frame_count:
            with read_video(path) as reader:
                plan.frame_count = sum(1 for _ in reader)
        plan.tracks = [Track(manual.square_in(width, height), 0, plan.frame_count, fps)]
        return plan
    detector = detector or get_detector("auto")
    tracker = _Tracker(iou_threshold, max(stride, round(max_gap_s * fps)), stride)
    previous, next_detection, count = None, 0, 0
    with read_video(path) as reader:
        for i, frame in enumerate(tqdm(reader, total=info.frame_count, desc=f"finding faces in {path.name}",
                                       unit="frame", disable=not progress)):
            hist = _histogram(frame)
            if previous is not None and _hist_distance(previous, hist) > cut_threshold:
                tracker.cut(i)
                next_detection = i
            previous = hist
            if i >= next_detection:
                tracker.update(i, detector.detect(frame))
                next_detection = i + stride
            count = i + 1
    tracker.cut(count)
    plan.frame_count = count
    tracks = []
    for faces, end in tracker.closed:
        union = faces[0][1]
        for _, face in faces[1:]:
            union = union.union(face)
        tracks.append(Track(union.square_in(width, height, increase), faces[0][0], end, fps, faces))
    needed = min(min_frames, count)  # a face through a whole clip shorter than min_frames is kept
    plan.tracks = sorted((t for t in tracks if t.frames >= needed), key=lambda t: (-t.frames, t.start))
    if not plan.tracks:
        found = (f"faces were seen only in {len(tracks)} track(s) shorter than min_frames={min_frames} "
                 f"(longest {max(t.frames for t in tracks)} frames); lower min_frames, " if tracks
                 else f"no face found in any of its {count} frames by the {detector.name} detector; ")
        raise NoFaceError(f"{path}: {found}or pass a manual crop box (box=(x0, y0, x1, y1) in pixels), "
                          "or use the video uncropped.")
    return plan


def crop_video(path: str | Path, output: str | Path, track: int | None = None, audio: bool = True,
               **plan_options) -> CropPlan:
    """Plan (:func:`plan_video_crop` with ``plan_options``) and write the ``track`` crop (None: longest)
    to ``output``; returns the plan."""
    plan = plan_video_crop(path, **plan_options)
    plan.write(output, track=track, audio=audio)
    return plan
