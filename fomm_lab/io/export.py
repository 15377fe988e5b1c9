"""Result exports: side-by-side comparison videos, size-capped GIFs and lossless PNG frames.

Every export writes to a temporary name next to its destination and renames it at the end, so a
failure never leaves a half-written result.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import MediaError
from . import ffmpeg
from .atomic import atomic_output, write_error
from .probe import probe_video
from .resize import resize_image
from .video import VideoWriter, write_video

log = logging.getLogger(__name__)

Column = Iterable[np.ndarray] | np.ndarray
"""One column of a side-by-side video: frames, or a single image repeated (e.g. the source photo)."""


def caption_strip(text: str, width: int, height: int) -> np.ndarray:
    """White ``text`` centred on a black ``(height, width, 3)`` uint8 strip (ASCII; others -> '?')."""
    strip = np.zeros((height, width, 3), np.uint8)
    text = text.encode("ascii", "replace").decode("ascii")
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    scale = height / 40.0
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    if tw > width - 4:
        scale *= (width - 4) / tw
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    origin = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(strip, text, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return strip


def _fit_height(frame: np.ndarray, height: int) -> np.ndarray:
    if frame.shape[0] == height:
        return frame
    width = max(1, round(frame.shape[1] * height / frame.shape[0]))
    return resize_image(frame, (width, height))


class SideBySideWriter:
    """Writes ``[column 1 | column 2 | ...]`` frames, one row of tiles per :meth:`write`, as one video.

    Every tile is scaled to ``height`` pixels (aspect kept); ``captions`` (one per column, or None) go in
    a strip above. A context manager like :class:`~fomm_lab.io.video.VideoWriter` (audio as there).
    """

    def __init__(self, path: str | os.PathLike[str], captions: Sequence[str] | None, fps: float,
                 height: int = 256, audio_from: str | os.PathLike[str] | None = None,
                 audio_span: tuple[float, float] | None = None) -> None:
        self.captions = list(captions) if captions is not None else None
        self.height = height
        self._strips: list[np.ndarray] | None = None
        self._writer = VideoWriter(path, fps, audio_from=audio_from, audio_span=audio_span)
        self.path = self._writer.path

    def write(self, frames: Sequence[np.ndarray]) -> None:
        if self.captions is not None and len(self.captions) != len(frames):
            raise ValueError(f"{len(self.captions)} captions for {len(frames)} columns")
        tiles = [_fit_height(np.asarray(f), self.height) for f in frames]
        if self.captions is not None:
            if self._strips is None:
                self._strips = [caption_strip(text, tile.shape[1], max(16, self.height // 10))
                                for text, tile in zip(self.captions, tiles)]
            tiles = [np.vstack([strip, tile]) for strip, tile in zip(self._strips, tiles)]
        self._writer.write(np.hstack(tiles))

    def close(self) -> Path:
        return self._writer.close()

    def __enter__(self) -> SideBySideWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._writer.__exit__(*exc_info)  # type: ignore[arg-type]


def side_by_side(path: str | os.PathLike[str], columns: Sequence[Column],
                 captions: Sequence[str] | None = None, fps: float = 25.0,
                 audio_from: str | os.PathLike[str] | None = None,
                 audio_span: tuple[float, float] | None = None, height: int = 256,
                 progress: bool = True, total: int | None = None) -> Path:
    """Write ``[column 1 | column 2 | ...]`` as one H.264 video, e.g. ``[source | driving | result]``.

    Each column is an iterable of RGB uint8 frames or one image shown throughout (see
    :class:`SideBySideWriter`). The video ends with the shortest column. Returns ``path``.
    """
    from tqdm.auto import tqdm

    if not columns:
        raise MediaError(f"side-by-side video {path} needs at least one column of frames")
    if captions is not None and len(captions) != len(columns):
        raise MediaError(f"side-by-side video {path}: {len(captions)} captions for {len(columns)} columns; "
                         "give one caption per column")
    if all(isinstance(c, np.ndarray) and c.ndim == 3 for c in columns):
        raise MediaError(f"side-by-side video {path}: every column is a single image; at least one must be "
                         "a sequence of frames")
    streams = [itertools.repeat(c) if isinstance(c, np.ndarray) and c.ndim == 3 else iter(c) for c in columns]
    with SideBySideWriter(path, captions, fps, height, audio_from, audio_span) as writer:
        for frames in tqdm(zip(*streams), total=total, desc="side by side", unit="frame", disable=not progress):
            writer.write(frames)
    return writer.path


def _gif_pass(src: Path, out: Path, fps: float, width: int) -> int:
    """One palettegen/paletteuse encode of ``src`` to ``out``; returns the GIF's size in bytes."""
    import ffmpeg as ffmpeg_python

    scaled = (ffmpeg_python.input(str(src)).filter("fps", fps)
              .filter("scale", f"min({width},iw)", -1, flags="lanczos").split())
    palette = scaled[0].filter("palettegen", stats_mode="diff")
    gif = ffmpeg_python.filter([scaled[1], palette], "paletteuse", dither="bayer", bayer_scale=4,
                        diff_mode="rectangle")
    args = gif.output(str(out), format="gif", loop=0).overwrite_output().get_args()
    ffmpeg.run(args, what=f"making a GIF from '{src}'", output=out)
    return out.stat().st_size


def make_gif(src: str | os.PathLike[str] | Iterable[np.ndarray], path: str | os.PathLike[str],
             fps: float = 12.0, width: int = 256, max_bytes: int | None = None,
             source_fps: float = 25.0, min_width: int = 64, progress: bool = True) -> Path:
    """Make a looping GIF with an optimised palette (ffmpeg palettegen + paletteuse).

    ``src`` is a video file or an iterable of RGB uint8 frames (played at ``source_fps``). The GIF
    has at most ``fps`` frames per second and ``width`` pixels (never upscaled). With ``max_bytes``,
    width (then fps) is lowered until the file fits; MediaError if it cannot fit at ``min_width``.
    Returns ``path``.
    """
    path = Path(path)
    if fps <= 0 or width < 1:
        raise MediaError(f"GIF '{path}': fps ({fps}) and width ({width}) must be positive.")
    with tempfile.TemporaryDirectory(prefix="fomm-gif-") as tmpdir:
        if isinstance(src, (str, os.PathLike)):
            video = Path(src)
            source_width = probe_video(video).width
        else:
            video = Path(tmpdir) / "frames.mkv"
            write_video(video, src, fps=source_fps, progress=progress)
            source_width = probe_video(video).width
        width = min(width, source_width)
        out = Path(tmpdir) / "out.gif"
        for _ in range(8):
            size = _gif_pass(video, out, fps, width)
            if max_bytes is None or size <= max_bytes:
                break
            if width <= min_width:
                fps_new = max(1.0, fps * 0.7)
                if fps_new == fps:
                    width = 0
                    break
                fps = fps_new
            else:
                # GIF size grows about with the pixel count: aim a little under the cap
                width = max(min_width, int(width * math.sqrt(max_bytes / size) * 0.9))
        if max_bytes is not None and (width == 0 or out.stat().st_size > max_bytes):
            raise MediaError(f"Could not make GIF '{path}' smaller than {max_bytes} bytes even at "
                             f"{min_width} px wide. Raise max_bytes, lower min_width, or shorten the clip.")
        log.info("GIF '%s': %d px wide, %.3g fps, %d bytes", path, width, fps, out.stat().st_size)
        with atomic_output(path) as tmp:
            shutil.copyfile(out, tmp)
        return path


def save_png_frames(frames: Iterable[np.ndarray], folder: str | os.PathLike[str],
                    progress: bool = True) -> Path:
    """Save RGB uint8 frames losslessly as ``folder/000000.png``, ``000001.png``, ...

    ``folder`` must not exist or be empty. Frames are written into a temporary sibling folder that
    is renamed to ``folder`` at the end. Returns ``folder``.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise MediaError(f"Cannot save PNG frames into '{folder}': it exists and is not an empty folder. "
                         "Pick a new folder name.")
    count = 0
    with atomic_output(folder, directory=True) as tmp:  # an empty folder at ``folder`` is replaced
        for count, frame in enumerate(tqdm(frames, desc="PNG frames", unit="frame", disable=not progress), 1):
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise MediaError(f"frame {count - 1} for '{folder}' has shape {frame.shape} and dtype "
                                 f"{frame.dtype}; expected (H, W, 3) uint8 RGB")
            ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if not ok:
                raise MediaError(f"could not encode frame {count - 1} as PNG for '{folder}'")
            try:
                (tmp / f"{count - 1:06d}.png").write_bytes(data.tobytes())
            except OSError as exc:
                raise write_error(folder, exc) from exc
        if count == 0:
            raise MediaError(f"No frames to save into '{folder}'; check that the frame source is not empty")
    return folder
