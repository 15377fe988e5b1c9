"""Real test media made on the fly with ffmpeg: importable by every test module.

The face clip uses ``skimage.data.astronaut()`` (a real photo of a face) cropped around the face,
moving and scaling inside a larger frame, so face detection and cropping have real work to do.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from fomm_lab.io.ffmpeg import ffmpeg_exe

FACE_BOX_IN_ASTRONAUT = (177, 66, 272, 161)
"""(x0, y0, x1, y1) of the face in ``skimage.data.astronaut()`` (512x512), as OpenCV's Haar finds it."""


def face_patch(side: int = 220) -> np.ndarray:
    """Square RGB crop of the astronaut photo centred on the face, ``(side, side, 3)`` uint8."""
    from skimage import data

    img = data.astronaut()
    x0, y0, x1, y1 = FACE_BOX_IN_ASTRONAUT
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    half = side // 2
    top = max(0, cy - half)
    return np.ascontiguousarray(img[top:top + side, cx - half:cx - half + side])


def _background(width: int, height: int) -> np.ndarray:
    """A smooth grey-blue gradient with faint texture (deterministic)."""
    gx = np.linspace(60, 140, width, dtype=np.float32)[None, :]
    gy = np.linspace(40, 100, height, dtype=np.float32)[:, None]
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 4.0, (height, width)).astype(np.float32)
    base = gx + gy + noise
    return np.clip(np.stack([base * 0.8, base * 0.9, base], axis=2), 0, 255).astype(np.uint8)


def face_clip_frames(seconds: float = 2.0, fps: float = 25, size: tuple[int, int] = (640, 480),
                     motion: bool = True) -> Iterator[np.ndarray]:
    """RGB uint8 frames ``(H, W, 3)`` of the face moving (ellipse) and scaling (0.75x..1.05x)."""
    width, height = size
    background = _background(width, height)
    patch = face_patch()
    base = 0.5 * min(width, height)
    n = max(1, round(seconds * fps))
    for i in range(n):
        phase = 2 * math.pi * i / max(n, 2)
        scale = 0.9 + 0.15 * math.sin(phase) if motion else 1.0
        side = max(8, int(base * scale))
        cx = width / 2 + (0.18 * width * math.cos(phase) if motion else 0.0)
        cy = height / 2 + (0.1 * height * math.sin(2 * phase) if motion else 0.0)
        x0 = int(np.clip(cx - side / 2, 0, width - side))
        y0 = int(np.clip(cy - side / 2, 0, height - side))
        frame = background.copy()
        frame[y0:y0 + side, x0:x0 + side] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
        yield frame


def _run(cmd: list[str], stdin_frames: Iterable[np.ndarray] | None = None) -> None:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin_frames is not None else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if stdin_frames is not None:
        assert proc.stdin is not None
        for frame in stdin_frames:
            proc.stdin.write(np.ascontiguousarray(frame).data)
        proc.stdin.close()
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed making a test clip: {' '.join(cmd)}\n{err}")


def make_face_clip(path: str | Path, seconds: float = 2.0, fps: float = 25,
                   size: tuple[int, int] = (640, 480), audio: bool = True, motion: bool = True) -> Path:
    """Write the moving-face clip as H.264 mp4 (+ 440 Hz sine AAC audio when ``audio``)."""
    path = Path(path)
    width, height = size
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps),
           "-i", "pipe:0"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-crf", "20"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    _run(cmd + [str(path)], face_clip_frames(seconds, fps, size, motion))
    return path


def make_test_video(path: str | Path, frames: int = 10, fps: float = 10, size: tuple[int, int] = (64, 48),
                    audio: bool = False, extra_args: Iterable[str] = ()) -> Path:
    """Write ffmpeg's ``testsrc`` pattern with the container's default codecs (chosen by suffix:
    mp4, mkv, webm, avi, mov, gif...), ``frames`` frames long, optionally with sine audio."""
    path = Path(path)
    width, height = size
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate={fps}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-shortest"]
    if path.suffix.lower() in (".mp4", ".mov", ".mkv"):
        cmd += ["-pix_fmt", "yuv420p"]
    _run(cmd + ["-frames:v", str(frames), *extra_args, str(path)])
    return path


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """Write a file with a sine audio track and no video stream (e.g. ``.m4a`` or ``.mp4``)."""
    path = Path(path)
    _run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
          "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", str(path)])
    return path


def make_y4m(path: str | Path, frames: Iterable[np.ndarray], fps: int = 25) -> Path:
    """Write RGB uint8 frames as a YUV4MPEG2 (4:2:0) clip, the format of Chromium's fake camera
    (``--use-file-for-fake-video-capture``). Odd sizes are cropped to even."""
    path = Path(path)
    with open(path, "wb") as out:
        header_written = False
        for frame in frames:
            h, w = (frame.shape[0] // 2) * 2, (frame.shape[1] // 2) * 2
            if not header_written:
                out.write(f"YUV4MPEG2 W{w} H{h} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
                header_written = True
            i420 = cv2.cvtColor(np.ascontiguousarray(frame[:h, :w]), cv2.COLOR_RGB2YUV_I420)
            out.write(b"FRAME\n")
            out.write(i420.tobytes())
    if not header_written:
        path.unlink()
        raise ValueError("make_y4m needs at least one frame")
    return path


def make_rotated_copy(src: str | Path, dst: str | Path, degrees: int = 90) -> Path:
    """Copy ``src`` with display-rotation metadata (ffmpeg >= 6 ``-display_rotation``, else the
    legacy ``rotate`` tag), without re-encoding."""
    dst = Path(dst)
    base = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    try:
        _run(base + ["-display_rotation:v:0", str(degrees), "-i", str(src), "-c", "copy", str(dst)])
    except RuntimeError:
        _run(base + ["-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(dst)])
    return dst


def decode_audio(path: str | Path, rate: int = 8000) -> np.ndarray:
    """Decode the first audio track to mono float32 samples in [-1, 1] at ``rate`` Hz."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path),
                           "-map", "0:a:0", "-ac", "1", "-ar", str(rate), "-f", "s16le", "pipe:1"],
                          capture_output=True, check=True)
    return np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0


def make_tone_after(path: str | Path, silent_s: float = 1.0, tone_s: float = 1.0) -> Path:
    """Audio-only file: ``silent_s`` seconds of silence, then ``tone_s`` seconds of a 440 Hz tone."""
    path = Path(path)
    expr = f"if(gt(t\\,{silent_s})\\,0.5*sin(2*PI*440*t)\\,0)"
    _run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
          "-i", f"aevalsrc={expr}:s=44100:d={silent_s + tone_s}", "-c:a", "aac", str(path)])
    return path


def photo_and_clip(folder: Path, seconds: float) -> dict[str, Path]:
    """The astronaut photo (``photo.png``) and a 320x240, 10 fps face clip with sound (``driving.mp4``) in
    ``folder``: the real media the CLI tests animate."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(folder / "photo.png")
    make_face_clip(folder / "driving.mp4", seconds=seconds, fps=10, size=(320, 240), audio=True)
    return {"photo": folder / "photo.png", "driving": folder / "driving.mp4"}
