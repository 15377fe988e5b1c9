"""Face tracks of a video and the square crops that follow them.

:func:`plan_video_crop` -> :class:`CropPlan` -> :meth:`CropPlan.write`: faces are detected every
``stride`` frames and linked into tracks by box overlap (IoU); tracks end at scene cuts (a jump of
the colour histogram between two frames) or when the face is lost for longer than ``max_gap_s``.
Each track is cut out in one of two ways:

* ``static``: one square box that holds the face over the whole track plus a margin, as the paper's
  datasets were made; ffmpeg crops and scales the span in one command. Chosen (``mode="auto"``) when
  the face still fills at least :data:`MIN_FACE_FILL` of that box's width in every detection.
* ``follow``: a square of constant size (the face plus the margin) whose centre follows the face,
  interpolated between detections and smoothed over :data:`FOLLOW_SMOOTHING_S`; chosen when the head
  moves so far that a single box would leave the face small. Frames are cropped one by one.

:class:`FaceTracker` follows the largest face of a live stream frame by frame (the live loop).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BOX, CropError, FaceIndexError, NoFaceError, Remedy
from ..geometry import Box, Size
from ..io.resize import resize_image
from .crop import _square_size
from .detect import FaceDetector, get_detector

CROP_MODES = ("auto", "static", "follow")
MIN_FACE_FILL = 0.35
"""Smallest face width / crop width accepted for a static crop (the vox crops: about one half)."""
FOLLOW_SMOOTHING_S = 0.5
"""Width (seconds) of the moving average that smooths a following crop's centre."""
MIN_TRACK_FRAMES = 10
"""Shortest face track cropped (shorter ones are detector noise), or the whole clip when it is shorter."""


@dataclass
class Track:
    """One face followed through frames [start, end) of a video.

    box: the static square (integer corners, inside the frame); for a ``follow`` track, ``boxes`` holds
    one square per frame of the span. faces: the detections (frame index, face box). mode: ``static``
    or ``follow``; reason: why (for the printed plan).
    """

    box: Box
    start: int
    end: int
    fps: float
    faces: list[tuple[int, Box]] = field(default_factory=list, repr=False)
    mode: str = "static"
    reason: str = ""
    boxes: list[Box] = field(default_factory=list, repr=False)

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

    def box_at(self, frame: int) -> Box:
        """The crop square at ``frame`` (a video frame index inside the span)."""
        return self.boxes[frame - self.start] if self.boxes else self.box

    def face_fill(self) -> float:
        """The smallest detected face width over its crop width, over the track's detections."""
        return min((face.width / self.box_at(i).width for i, face in self.faces), default=1.0)


@dataclass
class CropPlan:
    """Where the faces of a video are and how to cut them out; print it to preview, ``write`` to run it.

    tracks: face tracks, longest first (numbered from 1 when printed and in file names). size: the
    output side in pixels (the model's frame size).
    """

    path: Path
    fps: float
    width: int
    height: int
    frame_count: int
    has_audio: bool
    tracks: list[Track]
    size: int

    def track(self, index: int | None = None) -> Track:
        """Track ``index`` (0-based, longest first), or the longest for None."""
        index = 0 if index is None else index
        if not -len(self.tracks) <= index < len(self.tracks):
            raise FaceIndexError(f"track={index} but {self.path} has {len(self.tracks)} face track(s); "
                                 "pick one of those or None for the longest")
        return self.tracks[index]

    def outputs(self, output: str | Path, all_tracks: bool = False) -> list[tuple[int, Path]]:
        """(track index, file) pairs written for ``output``: the longest track to ``output``, or with
        ``all_tracks`` track N (from 1) to ``OUT-N.mp4``."""
        output = Path(output)
        if not all_tracks:
            return [(0, output)]
        return [(i, output.with_name(f"{output.stem}-{i + 1}{output.suffix}")) for i in range(len(self.tracks))]

    def command(self, output: str | Path, track: int | None = None, audio: bool = True) -> list[str]:
        """The ffmpeg arguments that write static ``track`` (None: longest) to ``output``: trimmed to the
        track's span, cropped to its box, scaled to ``size`` with Lanczos, H.264 yuv420p + faststart, AAC
        audio of the same span. (:meth:`write` runs exactly this, into a temporary name it renames.)"""
        import ffmpeg

        chosen = self.track(track)
        if self.path.is_dir() or chosen.mode != "static":
            raise CropError(f"track {self.tracks.index(chosen) + 1} of {self.path} is cropped frame by frame "
                            "(a folder of frames or a following crop): it has no single ffmpeg command")
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
        return out.overwrite_output().get_args()

    def write(self, output: str | Path, track: int | None = None, audio: bool = True) -> Path:
        """Write ``track`` (None: longest) to ``output``: :meth:`command` for a static crop, frame by frame
        for a following crop or a folder of frames; into a temporary name beside ``output``, checked,
        then renamed. Nothing is left at ``output`` when it fails (MediaError)."""
        from ..io import ffmpeg
        from ..io.atomic import atomic_output
        from ..io.video import verify_video

        output = Path(output)
        chosen = self.track(track)
        if self.path.is_dir() or chosen.mode != "static":
            return self._write_frames(output, chosen, audio)
        with atomic_output(output) as tmp:
            ffmpeg.run(self.command(tmp, track, audio), what=f"writing the face crop of {self.path} to {output}",
                       output=output)
            verify_video(tmp, None, audio and self.has_audio, output)
        return output

    def frames(self, track: int | None = None) -> Iterator[np.ndarray]:
        """The cropped frames of ``track`` at ``size`` (decoded and cropped one by one)."""
        from ..io.video import read_video

        chosen = self.track(track)
        with read_video(self.path) as reader:
            for index, frame in enumerate(itertools.islice(reader, chosen.start, chosen.end), chosen.start):
                x0, y0, x1, y1 = chosen.box_at(index).as_ints()
                yield resize_image(frame[y0:y1, x0:x1], Size.square(self.size))

    def boxed_frames(self, track: int | None = None) -> Iterator[tuple[np.ndarray, Box | None]]:
        """Every full frame of the video, in order, with ``track``'s crop square at that frame (None outside the
        track's span): where a crop came from, to paste a result back at full resolution."""
        from ..io.video import read_video

        chosen = self.track(track)
        with read_video(self.path) as reader:
            for index, frame in enumerate(reader):
                yield frame, (chosen.box_at(index) if chosen.start <= index < chosen.end else None)

    def left_to_right(self) -> list[int]:
        """The tracks' indices ordered by the mean horizontal centre of their faces (0: the leftmost face)."""
        return sorted(range(len(self.tracks)),
                      key=lambda i: float(np.mean([face.center[0] for _, face in self.tracks[i].faces]
                                                  or [self.tracks[i].box.center[0]])))

    def _write_frames(self, output: Path, chosen: Track, audio: bool) -> Path:
        from ..io.video import write_video

        index = self.tracks.index(chosen)
        sound = self.path if audio and self.has_audio and not self.path.is_dir() else None
        return write_video(output, self.frames(index), self.fps, audio_from=sound,
                           audio_span=(chosen.start_s, chosen.end_s), progress=False, total=chosen.frames)

    def describe(self, output: str | Path | None = None, all_tracks: bool = False, audio: bool = True) -> str:
        """The plan as text: every track, and, with ``output``, exactly what writing it runs."""
        import shlex

        from ..io.ffmpeg import QUIET, ffmpeg_exe

        lines = [f"{self.path}: {self.width}x{self.height}, {self.frame_count} frames at {self.fps:g} fps, "
                 f"{len(self.tracks)} face track(s), crops of {self.size}x{self.size}"]
        written = dict(self.outputs(output, all_tracks)) if output is not None else {}
        for i, t in enumerate(self.tracks):
            b = t.box
            where = (f"box x={int(b.x0)} y={int(b.y0)} side={int(b.width)}" if t.mode == "static"
                     else f"side={int(b.width)} square following the face")
            lines.append(f"  track {i + 1}: frames {t.start}-{t.end - 1} ({t.start_s:.2f}-{t.end_s:.2f} s), "
                         f"{t.mode} crop: {where}" + (f" ({t.reason})" if t.reason else ""))
            if i not in written:
                continue
            if t.mode == "static" and not self.path.is_dir():
                command = [ffmpeg_exe(), *QUIET, *self.command(written[i], i, audio)]
                lines.append("    " + shlex.join(command))
            else:
                lines.append(f"    cropped frame by frame and encoded to {written[i]}")
        if written:
            lines.append("  (each file is written under a temporary name beside it and renamed once complete)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


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


def _interpolate_centres(faces: list[tuple[int, Box]], start: int, end: int) -> np.ndarray:
    """(end - start, 2) face centres for every frame of the span, linear between detections."""
    frames = np.array([i for i, _ in faces], dtype=np.float64)
    centres = np.array([face.center for _, face in faces], dtype=np.float64)
    span = np.arange(start, end, dtype=np.float64)
    return np.stack([np.interp(span, frames, centres[:, k]) for k in range(2)], axis=1)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` frames along axis 0 (edges use the values that exist)."""
    if window <= 1 or len(values) < 2:
        return values
    kernel = np.ones(window) / window
    pad = window // 2
    padded = np.pad(values, ((pad, window - 1 - pad), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(values.shape[1])], axis=1)


def _make_track(faces: list[tuple[int, Box]], end: int, fps: float, width: int, height: int, increase: float,
                mode: str) -> Track:
    union = faces[0][1]
    for _, face in faces[1:]:
        union = union.union(face)
    start = faces[0][0]
    track = Track(union.square_in(width, height, increase), start, end, fps, faces)
    fill = track.face_fill()
    if mode == "static" or (mode == "auto" and fill >= MIN_FACE_FILL):
        track.reason = (f"the face fills {fill:.2f} of the box width at least" if mode == "auto"
                        else "static crop asked for")
        return track
    side = float(np.percentile([face.width for _, face in faces], 90)) * (1 + 2 * increase)
    centres = _smooth(_interpolate_centres(faces, start, end), max(1, round(FOLLOW_SMOOTHING_S * fps)))
    track.boxes = [union.square_at(cx, cy, side, width, height) for cx, cy in centres]
    track.box = track.boxes[0]
    track.mode = "follow"
    follow_fill = track.face_fill()
    track.reason = (f"a fixed box would leave the face {fill:.2f} of its width; following keeps it at "
                    f"{follow_fill:.2f} or more" if mode == "auto" else "following crop asked for")
    return track


def plan_video_crop(path: str | Path, size: int, increase: float = 0.1, min_frames: int = MIN_TRACK_FRAMES,
                    detector: FaceDetector | None = None, stride: int = 5, iou_threshold: float = 0.2,
                    max_gap_s: float = 1.0, cut_threshold: float = 0.35,
                    box: tuple[float, float, float, float] | None = None, mode: str = "auto",
                    progress: bool = True) -> CropPlan:
    """Find the faces of a video and plan one square crop (``size`` pixels a side) per face track.

    Args:
        path: any video :func:`fomm_lab.io.read_video` reads.
        size: output side in pixels (the model's frame size).
        increase: margin around the face boxes, as a fraction of the longer side on each side (0.1: the
            square's side is 1.2x). The square is shifted into the frame and shrunk to the frame's
            shorter side if needed.
        min_frames: drop tracks shorter than this many frames (or than the whole clip, if it is shorter).
        detector: a :mod:`fomm_lab.faces` detector; None picks ``get_detector("auto")``.
        stride: detect faces on every ``stride``-th frame (and on the first frame after a cut).
        iou_threshold: minimum IoU of a detection and a track's last box, both scaled by ``MATCH_SCALE``
            around their centres, to link them.
        max_gap_s: a track without detection for longer than this many seconds ends.
        cut_threshold: histogram distance in [0, 1] between consecutive frames that counts as a scene cut.
        box: (x0, y0, x1, y1) pixels to skip detection: one track over the whole video, made square
            around the box's centre.
        mode: ``auto`` (static unless the face would fill less than MIN_FACE_FILL of it), ``static`` or
            ``follow``; see the module's description.
        progress: show a tqdm bar while scanning.

    Raises NoFaceError when no track of ``min_frames`` frames exists.
    """
    from tqdm.auto import tqdm

    from ..io.video import read_video

    path = Path(path)
    if stride < 1 or min_frames < 1:
        raise ValueError(f"stride and min_frames must be >= 1, got stride={stride}, min_frames={min_frames}")
    if mode not in CROP_MODES:
        raise CropError(f"crop mode {mode!r} is not one of {', '.join(CROP_MODES)}")
    side = _square_size(size)
    with read_video(path) as reader:
        info = reader.info
    fps, width, height = float(info.fps), int(info.width), int(info.height)
    plan = CropPlan(path, fps, width, height, info.frame_count or 0, bool(info.has_audio), [], side)
    if box is not None:
        manual = Box(*map(float, box))
        if not (0 <= manual.x0 < manual.x1 <= width and 0 <= manual.y0 < manual.y1 <= height):
            raise CropError(f"crop box {tuple(box)} is not inside the {width}x{height} frame of {path}; "
                            "give x0 y0 x1 y1 pixels with x0 < x1 <= width and y0 < y1 <= height")
        with read_video(path) as reader:
            plan.frame_count = sum(1 for _ in reader)
        plan.tracks = [Track(manual.square_in(width, height), 0, plan.frame_count, fps, reason="the box given")]
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
    tracks = [_make_track(faces, end, fps, width, height, increase, mode) for faces, end in tracker.closed]
    needed = min(min_frames, count)  # a face through a whole clip shorter than min_frames is kept
    plan.tracks = sorted((t for t in tracks if t.frames >= needed), key=lambda t: (-t.frames, t.start))
    if not plan.tracks:
        found = (f"faces were seen only in {len(tracks)} track(s) shorter than {min_frames} frames (the longest "
                 f"has {max(t.frames for t in tracks)})" if tracks
                 else f"no face was found in any of its {count} frames by the {detector.name} detector")
        remedies = [Remedy("give the face box ({})", "crop.driving_box", BOX),
                    Remedy("use the video uncropped ({})", "crop.driving", False)]
        if tracks:
            longest = max(t.frames for t in tracks)
            remedies.insert(0, Remedy("accept shorter tracks ({})", "crop.min_track_frames", longest))
        raise NoFaceError(f"{path}: {found}", remedies=remedies)
    return plan


class FaceTracker:
    """Follow the largest face in a stream and cut a steady square crop around it.

    The detector runs every ``every`` frames (Haar by default: fast on a CPU); the square
    (``increase`` added on each side, as in ``Box.square_in``) is smoothed with an exponential
    moving average of weight ``smoothing`` for the old box, so the crop does not jitter. Before any
    face is seen the crop is the centre square of the frame.
    """

    def __init__(self, detector: FaceDetector | None = None, every: int = 3, increase: float = 0.3,
                 smoothing: float = 0.7) -> None:
        if detector is None:
            from .detect import HaarDetector

            detector = HaarDetector()
        self.detector = detector
        self.every = max(1, every)
        self.increase = increase
        self.smoothing = smoothing
        self.box: Box | None = None  # smoothed square, in frame pixels
        self._count = 0

    def update(self, frame: np.ndarray) -> Box:
        """Track the face in RGB ``frame`` (H, W, 3); returns the square crop box (x0, y0, x1, y1)."""
        height, width = frame.shape[:2]
        if self._count % self.every == 0:
            faces = self.detector.detect(frame)
            if faces:
                target = max(faces, key=lambda b: b.area).square_in(width, height, self.increase)
                if self.box is None:
                    self.box = target
                else:
                    a = self.smoothing
                    self.box = Box(*(a * old + (1 - a) * new for old, new in
                                     zip(self.box.as_tuple(), target.as_tuple())))
        self._count += 1
        if self.box is None:
            side = min(width, height)
            return Box((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
        return Box(*self.box.as_tuple()).square_in(width, height)

    def crop(self, frame: np.ndarray, size: Size) -> np.ndarray:
        """The tracked face square of ``frame`` resized to ``size``."""
        x0, y0, x1, y1 = self.update(frame).as_ints()
        return resize_image(frame[y0:y1, x0:x1], size)
