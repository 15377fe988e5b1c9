"""Streaming video and image I/O built on the ffmpeg binary.

Frames are always RGB ``uint8`` arrays of shape ``(height, width, 3)``. Videos are decoded by piping
raw ``rgb24`` frames out of an ffmpeg process one at a time, and written by piping raw frames into
ffmpeg (H.264, yuv420p, even sizes, ``+faststart``), so memory stays flat however long the clip is.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from fomm_lab.errors import MediaError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
"""File name endings read as frames when ``read_video`` is given a folder."""

_OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_PROBE_TIMEOUT_S = 60


def ffmpeg_exe() -> str:
    """Path of an ffmpeg binary: the one on ``PATH`` first, else the one bundled by imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise MediaError(
            "No ffmpeg binary found: none on PATH and imageio-ffmpeg has none "
            f"({exc}). Install ffmpeg (e.g. `apt-get install ffmpeg`) or `pip install imageio-ffmpeg`."
        ) from exc


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns about a video without decoding it.

    ``width``/``height`` are in pixels as displayed, i.e. after ``rotation`` (degrees
    counter-clockwise, one of 0/90/180/270) is applied. ``fps`` is frames per second;
    ``frame_count`` is estimated from duration x fps (``None`` when the container has no duration);
    ``duration`` is in seconds.
    """

    path: Path
    fps: float
    frame_count: int | None
    width: int
    height: int
    rotation: int
    has_audio: bool
    duration: float | None


def _check_input_file(path: Path, what: str) -> None:
    if not path.exists():
        raise MediaError(f"{what} '{path}' does not exist. Check the path.")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaError(f"{what} '{path}' is empty (0 bytes): it was not fully copied or downloaded. "
                         "Copy or export it again.")


def _probe_streams(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """Run ``ffmpeg -i path``: its Duration line and [(stream header line, its indented lines)]."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"ffmpeg took over {_PROBE_TIMEOUT_S} s to open '{path}'. "
                         "Is it on a slow or hung network drive?") from exc
    if "Input #0" not in proc.stderr:
        raise _probe_error(path, proc.stderr)
    duration = re.search(r"^\s*Duration:.*$", proc.stderr, re.MULTILINE)
    return (duration.group(0) if duration else ""), _stream_blocks(proc.stderr)


def _stream_blocks(stderr: str) -> list[tuple[str, str]]:
    """Split ``ffmpeg -i`` output into (stream header line, indented lines after it) pairs."""
    blocks: list[tuple[str, str]] = []
    inside = False
    for line in stderr.splitlines():
        if re.match(r"\s*Stream #\d+:\d+", line):
            blocks.append((line, ""))
            inside = True
        elif inside and line.startswith("    "):
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + line + "\n")
        else:
            inside = False
    return blocks


def _parse_rotation(body: str) -> int:
    """Counter-clockwise display rotation in degrees, from the display matrix or the rotate tag."""
    matrix = re.search(r"display\s*matrix: rotation of (-?[\d.]+) degrees", body, re.IGNORECASE)
    if matrix:
        degrees = float(matrix.group(1))
    else:  # ffmpeg < 5 also prints the legacy tag, which counts clockwise
        tag = re.search(r"^\s*rotate\s*:\s*(-?\d+)", body, re.MULTILINE)
        degrees = -float(tag.group(1)) if tag else 0.0
    return int(round(degrees / 90.0)) % 4 * 90


def _probe_error(path: Path, stderr: str) -> MediaError:
    tail = " ".join(stderr.strip().splitlines()[-2:])
    with open(path, "rb") as fh:
        head = fh.read(512)
    mp4_box = head[4:8] in (b"ftyp", b"mdat", b"moov", b"free", b"wide", b"skip")
    if "moov atom not found" in stderr and mp4_box:
        why = "is truncated or incomplete (its index, the 'moov atom', is missing)"
        todo = "Copy or download it again, or re-export it from the camera/editor."
    elif head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        why = "is an HTML page, not a video (a failed download?)"
        todo = "Download the video itself again."
    elif "Invalid data found" in stderr or "moov atom not found" in stderr:
        text = head and all(32 <= b < 127 or b in b"\t\r\n" for b in head)
        why = "is not a video" + (" (it holds plain text)" if text else " that ffmpeg can read")
        todo = "Check that it is really a video (mp4, mov, avi, mkv, webm, gif), not a renamed file."
    else:
        why = "could not be opened by ffmpeg"
        todo = "Check the file, or convert it with ffmpeg first."
    return MediaError(f"Video '{path}' {why} (ffmpeg: {tail}). {todo}")


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's size, fps, length, rotation and audio presence from ``ffmpeg -i`` output.

    Raises MediaError for a missing, empty, truncated or non-video file, or one without a video
    stream. ffprobe is not needed.
    """
    path = Path(path)
    _check_input_file(path, "Video")
    if path.is_dir():
        raise MediaError(f"'{path}' is a folder; use read_video() to read a folder of frames.")
    duration_line, blocks = _probe_streams(path)
    videos = [(h, b) for h, b in blocks if ": Video:" in h and "(attached pic)" not in h]
    has_audio = any(": Audio:" in h for h, _ in blocks)
    if not videos:
        kind = "only audio" if has_audio else "no video stream"
        raise MediaError(f"'{path}' has {kind}: there are no frames to read. "
                         "Give a video file with a picture track.")
    header, body = videos[0]
    size = re.search(r", (\d+)x(\d+)", header)
    if not size or int(size.group(1)) == 0 or int(size.group(2)) == 0:
        raise MediaError(f"Could not find the frame size of '{path}' in ffmpeg's output: "
                         f"'{header.strip()}'. Convert it to mp4 with ffmpeg first.")
    width, height = int(size.group(1)), int(size.group(2))
    rate = re.search(r"([\d.]+)(k?) fps", header) or re.search(r"([\d.]+)(k?) tbr", header)
    fps = float(rate.group(1)) * (1000 if rate and rate.group(2) else 1) if rate else 0.0
    if not math.isfinite(fps) or fps <= 0:
        log.warning("'%s' has no frame rate in its header; assuming 25 fps.", path)
        fps = 25.0
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", duration_line)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    frame_count = max(1, round(duration * fps)) if duration else None
    rotation = _parse_rotation(body)
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(path=path, fps=fps, frame_count=frame_count, width=width, height=height,
                     rotation=rotation, has_audio=has_audio, duration=duration)


def _tail(stream: IO[bytes], limit: int = 2000) -> str:
    stream.seek(0)
    text = stream.read().decode("utf-8", "replace")
    return text[-limit:].strip()


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class VideoReader:
    """Lazy iterable of RGB ``uint8`` frames ``(H, W, 3)`` from a video file or a folder of frames.

    Each ``iter()`` starts a fresh decode from the first frame, so the reader can be iterated more
    than once (e.g. once to pick a best frame, once to animate). Rotation metadata is applied.
    Use as a context manager, or call ``close()``, to stop a decode that was not run to the end.
    """

    def __init__(self, path: str | os.PathLike[str], folder_fps: float = 25.0) -> None:
        self.path = Path(path)
        self._processes: list[subprocess.Popen[bytes]] = []
        if self.path.is_dir():
            self._files = sorted((p for p in self.path.iterdir()
                                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                                 key=_natural_key)
            if not self._files:
                raise MediaError(f"Folder '{self.path}' holds no frames ({', '.join(IMAGE_SUFFIXES)}). "
                                 "Put numbered image files in it, or give a video file.")
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
                raise MediaError(f"Frame '{file}' is {frame.shape[1]}x{frame.shape[0]} but the first "
                                 f"frame of '{self.path}' is {shape[1]}x{shape[0]}. "
                                 "All frames in a folder must have the same size.")
            yield frame

    def _iter_video(self) -> Iterator[np.ndarray]:
        info = self.info
        coded_w, coded_h = ((info.height, info.width) if info.rotation in (90, 270)
                            else (info.width, info.height))
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-noautorotate",
               "-i", str(self.path), "-map", "0:V:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        frame_bytes = coded_w * coded_h * 3
        with tempfile.TemporaryFile() as errfile:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, stdin=subprocess.DEVNULL)
            self._processes.append(proc)
            count = 0
            try:
                assert proc.stdout is not None
                while True:
                    buf = np.empty((coded_h, coded_w, 3), np.uint8)
                    if _read_exact(proc.stdout, memoryview(buf).cast("B")) < frame_bytes:
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
            if returncode != 0 or count == 0:
                message = _tail(errfile)
                if count == 0:
                    raise MediaError(f"No frame could be decoded from '{self.path}' (ffmpeg: {message}). "
                                     "The file is damaged or truncated; copy or export it again.")
                log.warning("ffmpeg stopped early on '%s' after %d frames: %s", self.path, count, message)

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


def read_video(path: str | os.PathLike[str], folder_fps: float = 25.0) -> VideoReader:
    """Open a video file (anything ffmpeg reads) or a folder of PNG/JPG frames for lazy reading.

    ``folder_fps`` is the frame rate given to a folder of frames (files are read in natural order:
    ``2.png`` before ``10.png``).
    """
    return VideoReader(path, folder_fps=folder_fps)


def read_image(path: str | os.PathLike[str], max_size: int | None = 4096) -> np.ndarray:
    """Read an image as RGB ``uint8`` ``(H, W, 3)``.

    EXIF orientation is applied; grayscale and palette images become RGB; transparent images are
    composited over white; 16-bit and float images are scaled to 8 bits. When ``max_size`` is set,
    an image whose longer side exceeds it is downscaled (with antialiasing) to that many pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    _check_input_file(path, "Image")
    if path.is_dir():
        raise MediaError(f"'{path}' is a folder, not an image. Give an image file.")
    try:
        with Image.open(path) as img:
            if max_size and img.format == "JPEG":
                img.draft("RGB", (max_size, max_size))  # decode at a reduced scale: cheap on huge JPEGs
            img = ImageOps.exif_transpose(img)
            img.load()
            rgb = _to_rgb8(img)
    except Image.DecompressionBombError as exc:
        raise MediaError(f"Image '{path}' is too large to decode safely ({exc}). "
                         "Downscale it (e.g. to 4000 px) before using it.") from exc
    except UnidentifiedImageError as exc:
        raise MediaError(f"'{path}' is not an image format that can be read. "
                         "Give a PNG, JPEG, WebP, BMP or TIFF file.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"Image '{path}' is damaged or truncated ({exc}). Copy or export it again.") from exc
    if max_size and max(rgb.shape[:2]) > max_size:
        from fomm_lab.resize import resize_image

        scale = max_size / max(rgb.shape[:2])
        rgb = resize_image(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))))
    return rgb


def _to_rgb8(img: object) -> np.ndarray:
    """Convert a loaded PIL image of any mode to an RGB uint8 array."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F":
            top = 1.0 if arr.max() <= 1.0 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def temp_sibling(path: Path) -> Path:
    """A new empty file next to ``path`` (same folder, so ``os.replace`` onto ``path`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Give the finished temporary file or folder ``tmp`` the permissions a new one would get (umask)
    and rename it to ``path`` (atomic on one file system)."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, (0o777 if os.path.isdir(tmp) else 0o666) & ~mask)
    os.replace(tmp, path)
    return Path(path)


def _output_format(path: Path) -> str:
    try:
        return _OUTPUT_FORMATS[path.suffix.lower()]
    except KeyError:
        raise MediaError(f"Cannot write video '{path}': unsupported extension. "
                         f"Use one of {', '.join(_OUTPUT_FORMATS)}.") from None


def _container_opts(path: Path) -> dict[str, object]:
    fmt = _output_format(path)
    return {"format": fmt, "movflags": "+faststart"} if fmt in ("mp4", "mov") else {"format": fmt}


def _check_span(span: tuple[float, float] | None, path: Path) -> None:
    if span is not None and not 0 <= span[0] < span[1]:
        raise MediaError(f"Audio span {span} for '{path}' is not (start, end) seconds with "
                         "0 <= start < end.")


def mux_audio(video: str | os.PathLike[str], audio_from: str | os.PathLike[str],
              output: str | os.PathLike[str] | None = None,
              audio_span: tuple[float, float] | None = None) -> Path:
    """Copy ``video``'s picture and add the first audio track of ``audio_from`` (AAC).

    The audio is cut to ``audio_span`` = (start_s, end_s) when given, then padded with silence or cut
    to the video's duration. ``output`` defaults to replacing ``video``. When ``audio_from`` has no
    audio the video is copied unchanged (logged, not an error). Returns the output path.
    """
    import ffmpeg

    video, audio_from = Path(video), Path(audio_from)
    output = Path(output) if output is not None else video
    _check_span(audio_span, output)
    info = probe_video(video)
    if info.duration is None:
        raise MediaError(f"Cannot add audio to '{video}': its duration is unknown. Re-encode it to mp4.")
    tmp = temp_sibling(output)
    try:
        streams = [ffmpeg.input(str(video))["v:0"]]
        if probe_audio(audio_from):
            span = ({"ss": audio_span[0], "t": audio_span[1] - audio_span[0]} if audio_span else {})
            streams.append(ffmpeg.input(str(audio_from), **span)["a:0"].filter("apad"))
        opts = {"vcodec": "copy", "acodec": "aac", "audio_bitrate": "160k", "t": info.duration,
                **_container_opts(output)}
        cmd = (ffmpeg.output(*streams, str(tmp), **opts)
               .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
               .overwrite_output().compile(cmd=ffmpeg_exe()))
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
        if proc.returncode != 0:
            raise MediaError(f"Adding the audio of '{audio_from}' to '{video}' failed "
                             f"(ffmpeg: {proc.stderr.strip()[-1000:]}). Check both files and free disk space.")
        publish(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


class VideoWriter:
    """Write RGB ``uint8`` frames to an H.264 video, one at a time, through an ffmpeg pipe.

    The output is yuv420p (browser-playable), odd sizes are padded to even with black, and mp4/mov
    get ``+faststart``. ``audio_from`` names a file whose first audio track is muxed in at the end
    (see ``mux_audio``; ``audio_span`` = (start_s, end_s) selects the part matching the frames); a
    file without audio is not an error. ffmpeg writes to a temporary name next to ``path``, renamed
    to ``path`` only when everything succeeded: after an error nothing is left at ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float,
                 audio_from: str | os.PathLike[str] | None = None,
                 audio_span: tuple[float, float] | None = None,
                 crf: int = 18, preset: str = "medium") -> None:
        self.path = Path(path)
        _output_format(self.path)
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise MediaError(f"Cannot write video '{self.path}' at {fps} fps: give a positive frame rate.")
        _check_span(audio_span, self.path)
        self.fps = float(fps)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        if self.audio_from is not None:
            _check_input_file(self.audio_from, "Audio source")
        self.audio_span = audio_span
        self.crf = crf
        self.preset = preset
        self.frames_written = 0
        self._shape: tuple[int, ...] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._errfile: IO[bytes] | None = None
        self._tmp: Path | None = None

    def _start(self, frame: np.ndarray) -> None:
        import ffmpeg

        height, width = frame.shape[:2]
        self._tmp = temp_sibling(self.path)
        cmd = (ffmpeg.input("pipe:0", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                            framerate=self.fps)
               .filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
               .output(str(self._tmp), vcodec="libx264", pix_fmt="yuv420p", crf=self.crf,
                       preset=self.preset, **_container_opts(self.path))
               .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
               .overwrite_output().compile(cmd=ffmpeg_exe()))
        self._errfile = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._errfile)
        self._shape = frame.shape

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB ``uint8`` ``(H, W, 3)`` frame; every frame must have the first one's size."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise MediaError(f"Frame {self.frames_written} for '{self.path}' has shape {frame.shape} and "
                             f"dtype {frame.dtype}; expected (H, W, 3) uint8 RGB.")
        if self._proc is None:
            self._start(frame)
        elif frame.shape != self._shape:
            assert self._shape is not None
            raise MediaError(f"Frame {self.frames_written} for '{self.path}' is {frame.shape[1]}x"
                             f"{frame.shape[0]} but earlier frames are {self._shape[1]}x{self._shape[0]}"
                             " (width x height); resize every frame to one size.")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except OSError as exc:
            raise self._failure("ffmpeg stopped accepting frames") from exc
        self.frames_written += 1

    def _failure(self, what: str) -> MediaError:
        self._abort()
        message = _tail(self._errfile) if self._errfile else ""
        return MediaError(f"Writing video '{self.path}' failed: {what} (ffmpeg: {message}). "
                          "Check free disk space and that the folder is writable.")

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
            self._tmp.unlink(missing_ok=True)

    def close(self) -> Path:
        """Finish the file (adding the audio) and move it to ``path``; returns ``path``."""
        if self._proc is None:
            raise MediaError(f"No frames were written to '{self.path}', so no video was made. "
                             "Check that the frame source is not empty.")
        assert self._proc.stdin is not None and self._tmp is not None
        try:
            self._proc.stdin.close()
        except OSError as exc:
            raise self._failure("ffmpeg stopped accepting frames") from exc
        if self._proc.wait() != 0:
            raise self._failure(f"ffmpeg exited with code {self._proc.returncode}")
        self._proc = None
        try:
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


def probe_audio(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has an audio track; logs (does not raise) when it has none."""
    path = Path(path)
    _check_input_file(path, "Audio source")
    has_audio = any(": Audio:" in head for head, _ in _probe_streams(path)[1])
    if not has_audio:
        log.info("'%s' has no audio track; writing video without sound.", path)
    return has_audio


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float,
                audio_from: str | os.PathLike[str] | None = None,
                audio_span: tuple[float, float] | None = None, progress: bool = True,
                total: int | None = None) -> Path:
    """Write an iterable of RGB ``uint8`` frames to ``path`` (see ``VideoWriter``); returns ``path``.

    ``progress`` shows a tqdm bar (``total`` frames when known).
    """
    from tqdm.auto import tqdm

    if total is None and hasattr(frames, "__len__"):
        total = len(frames)  # type: ignore[arg-type]
    with VideoWriter(path, fps, audio_from=audio_from, audio_span=audio_span) as writer:
        for frame in tqdm(frames, total=total, desc="writing video", unit="frame", disable=not progress):
            writer.write(frame)
    return writer.path
