"""What a video holds (size, rate, length, rotation, audio), read from ``ffmpeg -i`` without decoding.

ffprobe is not needed: imageio-ffmpeg's static build has none.
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import MediaError
from ..geometry import Size
from . import sniff
from .ffmpeg import ffmpeg_exe, tail

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 60


@dataclass(frozen=True)
class VideoInfo:
    """A video as displayed.

    ``width``/``height``: pixels after ``rotation`` (degrees counter-clockwise: 0/90/180/270) is
    applied. ``fps``: the average frame rate, at which every frame is decoded. ``variable_rate``: the
    video's frames are not evenly spaced (phones); it is then decoded at ``fps`` from its timestamps,
    which keeps its duration. ``frame_count``: duration x fps (None when the container has no
    duration). ``duration`` in seconds.
    """

    path: Path
    fps: float
    frame_count: int | None
    width: int
    height: int
    rotation: int
    has_audio: bool
    duration: float | None
    variable_rate: bool = False

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)


def check_input_file(path: Path, what: str) -> None:
    """MediaError for an input that does not exist or is empty."""
    if not path.exists():
        raise MediaError(f"{what} '{path}' does not exist; check the path")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaError(f"{what} '{path}' is empty (0 bytes): it was not fully copied or downloaded; "
                         "copy or export it again")


def _ffmpeg_i(path: Path) -> str:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=_PROBE_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"ffmpeg took over {_PROBE_TIMEOUT_S} s to open '{path}'; is it on a slow or hung "
                         "network drive?") from exc
    if "Input #0" not in proc.stderr:
        raise _probe_error(path, proc.stderr)
    return proc.stderr


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
    head = sniff.read_head(path)
    detail = [f"ffmpeg: {tail(stderr, 2)}"]
    if "moov atom not found" in stderr and sniff.is_mp4_box(head):
        return MediaError(f"video '{path}' is truncated or incomplete (its index, the 'moov atom', is missing); "
                          "copy or download it again, or re-export it", details=detail)
    if sniff.is_html(head):
        return MediaError(f"video '{path}' is an HTML page, not a video (a failed download?); download the "
                          "video itself again", details=detail)
    if "Invalid data found" in stderr or "moov atom not found" in stderr:
        kind = "plain text" if sniff.is_text(head) else "data ffmpeg cannot read"
        return MediaError(f"'{path}' is not a video (it holds {kind}); give a real video (mp4, mov, avi, mkv, "
                          "webm, gif), not a renamed file", details=detail)
    return MediaError(f"video '{path}' could not be opened by ffmpeg; check the file, or convert it with "
                      "ffmpeg first", details=detail)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Size, rate, length, rotation and audio of a video file.

    MediaError for a missing, empty, truncated or non-video file, or one without a video stream.
    """
    path = Path(path)
    check_input_file(path, "video")
    if path.is_dir():
        raise MediaError(f"'{path}' is a folder; use read_video() to read a folder of frames")
    stderr = _ffmpeg_i(path)
    blocks = _stream_blocks(stderr)
    videos = [(h, b) for h, b in blocks if ": Video:" in h and "(attached pic)" not in h]
    has_audio = any(": Audio:" in h for h, _ in blocks)
    if not videos:
        kind = "only audio" if has_audio else "no video stream"
        raise MediaError(f"'{path}' has {kind}: there are no frames to read; give a video with a picture track")
    header, body = videos[0]
    size = re.search(r", (\d+)x(\d+)", header)
    if not size or int(size.group(1)) == 0 or int(size.group(2)) == 0:
        raise MediaError(f"the frame size of '{path}' is not in ffmpeg's description; convert it to mp4 first",
                         details=[header.strip()])
    width, height = int(size.group(1)), int(size.group(2))
    average, nominal = _rate(header, "fps"), _rate(header, "tbr")
    fps = average or nominal
    variable = bool(average and nominal and abs(average - nominal) > 0.01 * nominal)
    if not math.isfinite(fps) or fps <= 0:
        log.warning("'%s' has no frame rate in its header; assuming 25 fps", path)
        fps = 25.0
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", stderr)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    frame_count = max(1, round(duration * fps)) if duration else None
    rotation = _parse_rotation(body)
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(path=path, fps=fps, frame_count=frame_count, width=width, height=height,
                     rotation=rotation, has_audio=has_audio, duration=duration, variable_rate=variable)


def _rate(header: str, unit: str) -> float:
    """A rate ffmpeg prints as ``25 fps``/``29.97 tbr``/``1k tbr`` in a stream header; 0.0 when absent."""
    match = re.search(rf"([\d.]+)(k?) {unit}\b", header)
    return float(match.group(1)) * (1000 if match.group(2) else 1) if match else 0.0


def probe_audio(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has an audio track; logs (does not raise) when it has none."""
    path = Path(path)
    check_input_file(path, "audio source")
    has_audio = any(": Audio:" in head for head, _ in _stream_blocks(_ffmpeg_i(path)))
    if not has_audio:
        log.info("'%s' has no audio track; writing video without sound", path)
    return has_audio


def count_frames(path: Path) -> tuple[int, bool]:
    """(video packets in ``path``, whether it has audio), read without decoding; MediaError when
    ffmpeg cannot read the file to its end (a file without its index, cut off or damaged)."""
    from .ffmpeg import run

    messages = run(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
                   what=f"checking video '{path}'", quiet=False, timeout=600)
    frames = re.findall(r"frame=\s*(\d+)", messages)
    return (int(frames[-1]) if frames else 0), any(": Audio:" in h for h, _ in _stream_blocks(messages))
