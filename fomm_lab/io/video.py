"""Streaming video I/O through the ffmpeg binary.

Frames are RGB ``uint8`` arrays of shape ``(height, width, 3)``. :class:`VideoReader` pipes raw frames
out of an ffmpeg process one at a time and :class:`VideoWriter` pipes them in (H.264, yuv420p, even
sizes, ``+faststart``), so memory stays flat however long the clip is. Every written file is checked
(decodable, every frame there, audio when asked for) before it is published under its name.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from ..errors import MediaError, MediaWarning
from . import ffmpeg
from .atomic import publish, remove, temp_sibling
from .image import IMAGE_SUFFIXES, read_image
from .probe import VideoInfo, check_input_file, count_frames, probe_audio, probe_video

log = logging.getLogger(__name__)

OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
"""Video file endings written, with their ffmpeg container format."""

SHORT_READ_TOLERANCE = 2
"""Frames a decode may fall short of the container's duration x fps before it counts as a short read."""


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def short_read(path: Path, got: int, expected: int | None, strict: bool, errors: str = "") -> None:
    """Warn (or, with ``strict``, raise MediaError) when a decode gave fewer frames than the file promises."""
    missing = (expected or 0) - got
    if missing <= max(SHORT_READ_TOLERANCE, 0.02 * (expected or 0)) and not (errors and missing > 0):
        return
    message = (f"'{path}' gave {got} frames but its header promises about {expected} ({missing} missing): "
               "the file looks truncated or damaged; copy or download it again")
    if strict:
        raise MediaError(message, details=[f"ffmpeg: {ffmpeg.tail(errors)}"] if errors else [])
    warnings.warn(MediaWarning(message), stacklevel=3)


class VideoReader:
    """Lazy iterable of RGB ``uint8`` frames ``(H, W, 3)`` from a video file or a folder of frames.

    Each ``iter()`` starts a fresh decode from the first frame, so the reader can be iterated more
    than once. Rotation metadata is applied. A variable-frame-rate video (phones) is resampled on
    its own timestamps to a constant ``info.fps`` (its average rate), which keeps its duration, so
    the result stays in sync with the sound. A decode that ends well before
    the container's duration warns (``strict=True``: raises MediaError). Use as a context manager,
    or call ``close()``, to stop a decode that was not run to the end.
    """

    def __init__(self, path: str | os.PathLike[str], folder_fps: float = 25.0, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict
        self._processes: list[subprocess.Popen[bytes]] = []
        if self.path.is_dir():
            self._files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                                 key=_natural_key)
            if not self._files:
                raise MediaError(f"folder '{self.path}' holds no frames ({', '.join(IMAGE_SUFFIXES)}); put numbered "
                                 "image files in it, or give a video file")
            first = read_image(self._files[0], max_size=None)
            self.info = VideoInfo(path=self.path, fps=folder_fps, frame_count=len(self._files),
                                  width=first.shape[1], height=first.shape[0], rotation=0,
                                  has_audio=False, duration=len(self._files) / folder_fps)
        else:
            self._files = []
            self.info = probe_video(self.path)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._iter_folder() if self._files else self._iter_video()

    def _iter_folder(self) -> Iterator[np.ndarray]:
        shape = (self.info.height, self.info.width, 3)
        for file in self._files:
            frame = read_image(file, max_size=None)
            if frame.shape != shape:
                raise MediaError(f"frame '{file}' is {frame.shape[1]}x{frame.shape[0]} but the first frame of "
                                 f"'{self.path}' is {shape[1]}x{shape[0]}; all frames in a folder must have one size")
            yield frame

    def _iter_video(self) -> Iterator[np.ndarray]:
        info = self.info
        coded_w, coded_h = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
        # A variable-rate video is resampled on its timestamps to a constant info.fps (duration kept).
        rate = ["-vf", f"fps={info.fps!r}"] if info.variable_rate else []
        cmd = [ffmpeg.ffmpeg_exe(), *ffmpeg.QUIET, "-noautorotate", "-i", str(self.path), "-map", "0:V:0", *rate,
               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        frame_bytes = coded_w * coded_h * 3
        with ffmpeg.stderr_file() as errfile:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, stdin=subprocess.DEVNULL)
            self._processes.append(proc)
            count = 0
            try:
                assert proc.stdout is not None
                while True:
                    buf = np.empty((coded_h, coded_w, 3), np.uint8)
                    if _read_exact(proc.stdout, buf.data.cast("B")) < frame_bytes:
                        break
                    count += 1
                    yield np.ascontiguousarray(np.rot90(buf, info.rotation // 90)) if info.rotation else buf
                returncode = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc.stdout:
                    proc.stdout.close()
                self._processes.remove(proc)
            messages = ffmpeg.read_messages(errfile).strip()
        if count == 0:
            raise MediaError(f"no frame could be decoded from '{self.path}': the file is damaged or truncated; "
                             "copy or export it again",
                             details=[f"ffmpeg: {ffmpeg.tail(messages)}"] if messages else [])
        short_read(self.path, count, info.frame_count, self.strict, messages if returncode != 0 or messages else "")

    def close(self) -> None:
        """Stop every decode still running."""
        for proc in list(self._processes):
            proc.kill()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _read_exact(stream: IO[bytes], view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def read_video(path: str | os.PathLike[str], folder_fps: float = 25.0, strict: bool = False) -> VideoReader:
    """Open a video file (anything ffmpeg reads) or a folder of PNG/JPG frames for lazy reading.

    ``folder_fps`` is the frame rate given to a folder of frames (files are read in natural order:
    ``2.png`` before ``10.png``). ``strict``: a decode that ends early is an error, not a warning.
    """
    return VideoReader(path, folder_fps=folder_fps, strict=strict)


def output_format(path: Path) -> str:
    """The ffmpeg container of a video output path; MediaError for an extension that is not written."""
    try:
        return OUTPUT_FORMATS[path.suffix.lower()]
    except KeyError:
        raise MediaError(f"cannot write video '{path}': unsupported extension; use one of "
                         f"{', '.join(OUTPUT_FORMATS)}") from None


def _container_opts(path: Path) -> dict[str, object]:
    fmt = output_format(path)
    return {"format": fmt, "movflags": "+faststart"} if fmt in ("mp4", "mov") else {"format": fmt}


def check_span(span: tuple[float, float] | None, path: Path) -> None:
    if span is not None and not 0 <= span[0] < span[1]:
        raise MediaError(f"audio span {span} for '{path}' is not (start, end) seconds with 0 <= start < end")


def verify_video(path: Path, frames: int | None, audio: bool, name: Path) -> None:
    """MediaError naming ``name`` unless ``path`` reads to its end with ``frames`` frames (when given)
    and an audio track when ``audio``."""
    got, has_audio = count_frames(path)
    if frames is not None and got != frames:
        raise MediaError(f"writing {name} failed: the encoded file holds {got} of {frames} frames; check free disk "
                         "space and write it again")
    if audio and not has_audio:
        raise MediaError(f"writing {name} failed: the audio track is missing from the encoded file; write it again")


def mux_audio(video: str | os.PathLike[str], audio_from: str | os.PathLike[str],
              output: str | os.PathLike[str] | None = None,
              audio_span: tuple[float, float] | None = None) -> Path:
    """Copy ``video``'s picture and add the first audio track of ``audio_from`` (AAC).

    The audio is cut to ``audio_span`` = (start_s, end_s) when given, then padded with silence or cut
    to the video's duration. ``output`` defaults to replacing ``video``. When ``audio_from`` has no
    audio the video is copied unchanged (logged, not an error). Returns the output path.
    """
    import ffmpeg as ffmpeg_python

    video, audio_from = Path(video), Path(audio_from)
    output = Path(output) if output is not None else video
    check_span(audio_span, output)
    info = probe_video(video)
    if info.duration is None:
        raise MediaError(f"cannot add audio to '{video}': its duration is unknown; re-encode it to mp4")
    with_audio = probe_audio(audio_from)
    tmp = temp_sibling(output)
    try:
        streams = [ffmpeg_python.input(str(video))["v:0"]]
        if with_audio:
            span = {"ss": audio_span[0], "t": audio_span[1] - audio_span[0]} if audio_span else {}
            streams.append(ffmpeg_python.input(str(audio_from), **span)["a:0"].filter("apad"))
        opts = {"vcodec": "copy", "acodec": "aac", "audio_bitrate": "160k", "t": info.duration,
                **_container_opts(output)}
        args = ffmpeg_python.output(*streams, str(tmp), **opts).overwrite_output().get_args()
        ffmpeg.run(args, what=f"adding the sound of '{audio_from}' to {output}", output=output)
        verify_video(tmp, None, with_audio, output)
        publish(tmp, output)
    finally:
        remove(tmp)
    return output


class VideoWriter:
    """Write RGB ``uint8`` frames to an H.264 video, one at a time, through an ffmpeg pipe.

    The output is yuv420p (browser-playable), odd sizes are padded to even with black, and mp4/mov
    get ``+faststart``. ``audio_from`` names a file whose first audio track is muxed in at the end
    (see :func:`mux_audio`; ``audio_span`` = (start_s, end_s) selects the part matching the frames); a
    file without audio is not an error. ffmpeg writes to a temporary name next to ``path``; the file
    is checked (every frame decodable, the sound there) and only then renamed to ``path``: after any
    error nothing is left at ``path`` and the MediaError names it with the cause (e.g. a full disk).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float,
                 audio_from: str | os.PathLike[str] | None = None,
                 audio_span: tuple[float, float] | None = None,
                 crf: int = 18, preset: str = "medium") -> None:
        self.path = Path(path)
        output_format(self.path)
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise MediaError(f"cannot write video '{self.path}' at {fps} fps: give a positive frame rate")
        check_span(audio_span, self.path)
        self.fps = float(fps)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        if self.audio_from is not None:
            check_input_file(self.audio_from, "audio source")
        self.audio_span = audio_span
        self.crf = crf
        self.preset = preset
        self.frames_written = 0
        self._shape: tuple[int, ...] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._errfile: IO[bytes] | None = None
        self._tmp: Path | None = None

    def _start(self, frame: np.ndarray) -> None:
        import ffmpeg as ffmpeg_python

        height, width = frame.shape[:2]
        self._tmp = temp_sibling(self.path)
        args = (ffmpeg_python.input("pipe:0", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                                    framerate=self.fps)
                .filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
                .output(str(self._tmp), vcodec="libx264", pix_fmt="yuv420p", crf=self.crf, preset=self.preset,
                        **_container_opts(self.path))
                .overwrite_output().get_args())
        self._errfile = ffmpeg.stderr_file()
        self._proc = subprocess.Popen([ffmpeg.ffmpeg_exe(), *ffmpeg.QUIET, *args], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._errfile)
        self._shape = frame.shape

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB ``uint8`` ``(H, W, 3)`` frame; every frame must have the first one's size."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise MediaError(f"frame {self.frames_written} for '{self.path}' has shape {frame.shape} and dtype "
                             f"{frame.dtype}; expected (H, W, 3) uint8 RGB")
        if self._proc is None:
            self._start(frame)
        elif frame.shape != self._shape:
            assert self._shape is not None
            raise MediaError(f"frame {self.frames_written} for '{self.path}' is {frame.shape[1]}x{frame.shape[0]} "
                             f"but earlier frames are {self._shape[1]}x{self._shape[0]} (width x height); resize "
                             "every frame to one size")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except OSError as exc:
            raise self._failure() from exc
        self.frames_written += 1

    def _messages(self) -> str:
        return ffmpeg.read_messages(self._errfile) if self._errfile is not None else ""

    def _failure(self) -> MediaError:
        self._abort()
        return ffmpeg.failure(self._messages(), f"writing video {self.path} failed", self.path)

    def _abort(self) -> None:
        """Stop ffmpeg and delete the temporary file."""
        if self._proc is not None:
            if self._proc.stdin:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._tmp is not None:
            remove(self._tmp)

    def close(self) -> Path:
        """Finish the file (adding the audio), check it and move it to ``path``; returns ``path``."""
        if self._proc is None:
            raise MediaError(f"No frames were written to '{self.path}', so no video was made; check that the "
                             "frame source is not empty")
        assert self._proc.stdin is not None and self._tmp is not None
        try:
            try:
                self._proc.stdin.close()
            except OSError as exc:
                raise self._failure() from exc
            returncode = self._proc.wait()
            self._proc = None
            ffmpeg.check(returncode, self._messages(), f"writing video {self.path} failed", self.path)
            verify_video(self._tmp, self.frames_written, False, self.path)
            if self.audio_from is not None:
                mux_audio(self._tmp, self.audio_from, audio_span=self.audio_span)
            publish(self._tmp, self.path)
        finally:
            self._abort()
            if self._errfile is not None:
                self._errfile.close()
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
            if self._errfile is not None:
                self._errfile.close()


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float,
                audio_from: str | os.PathLike[str] | None = None,
                audio_span: tuple[float, float] | None = None, progress: bool = True,
                total: int | None = None) -> Path:
    """Write an iterable of RGB ``uint8`` frames to ``path`` (see :class:`VideoWriter`); returns ``path``.

    ``progress`` shows a tqdm bar (``total`` frames when known).
    """
    from tqdm.auto import tqdm

    if total is None and hasattr(frames, "__len__"):
        total = len(frames)  # type: ignore[arg-type]
    with VideoWriter(path, fps, audio_from=audio_from, audio_span=audio_span) as writer:
        for frame in tqdm(frames, total=total, desc="writing video", unit="frame", disable=not progress):
            writer.write(frame)
    return writer.path
