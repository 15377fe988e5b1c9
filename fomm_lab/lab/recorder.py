"""Browser webcam recorder widget: records a driving clip into an mp4 in the kernel's file system."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from ..errors import FommLabError
from ..io.slots import SlotWriter
from . import _assets
from ._jpeg import decode_jpeg

log = logging.getLogger(__name__)

WARMUP_FRAMES = 8
"""Leading camera frames inspected for the warm-up repeats that are dropped."""


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two camera frames are the same picture (up to JPEG noise)."""
    return a.shape == b.shape and float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < 1.0


class WebcamRecorder(anywidget.AnyWidget):
    """Record a clip from the browser's camera (getUserMedia) and save it as mp4 under ``output_dir``.

    The browser grabs a frame every ``1/fps`` seconds and sends it to the kernel as JPEG (at most
    ``width`` pixels wide); the kernel writes it with :class:`fomm_lab.io.VideoWriter`. Slots the
    browser skipped (slow machine) repeat the previous frame, so the video keeps real-time speed.
    Recording stops with the Stop button or after ``max_seconds``; the saved clip is then shown.
    Camera problems (denied, none, insecure page) appear in the widget and in :attr:`error`.

    Sound: with ``sound`` on (a checkbox in the widget) the browser also records the microphone (MediaRecorder,
    Opus) and sends it at Stop; the kernel muxes it into the mp4 as AAC, trimmed like the frames (the camera's
    warm-up frames are dropped, and the same time is cut from the sound). Without a microphone, or with the
    toggle off, the clip is silent and the status says so.

    Attributes: ``path`` (str) of the last saved mp4 ("" before), ``error`` (str), ``status`` (str),
    ``frames_written`` (int) of the last recording, ``has_sound`` (bool) of the last recording.
    """

    _esm = _assets.esm("camera.js", "recorder.js")
    _css = _assets.css()

    fps = traitlets.Int(25).tag(sync=True)
    max_seconds = traitlets.Float(10.0).tag(sync=True)
    width = traitlets.Int(640).tag(sync=True)
    height = traitlets.Int(480).tag(sync=True)
    status = traitlets.Unicode("Press Record to start the camera.").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    path = traitlets.Unicode("").tag(sync=True)
    frames_written = traitlets.Int(0).tag(sync=True)
    sound = traitlets.Bool(True).tag(sync=True)
    has_sound = traitlets.Bool(False).tag(sync=True)
    sound_note = traitlets.Unicode("").tag(sync=True)

    def __init__(self, output_dir: str | Path = "temp", *, fps: int = 25, max_seconds: float = 10.0,
                 width: int = 640, height: int = 480, sound: bool = True, **kwargs: Any) -> None:
        super().__init__(fps=fps, max_seconds=max_seconds, width=width, height=height, sound=sound, **kwargs)
        self._audio: bytes | None = None
        self.output_dir = Path(output_dir)
        self._limits = (fps, max_seconds, width, height)  # the kernel's, whatever the page asks
        self._writer: SlotWriter | None = None
        self._warming, self._seen, self._offset = False, 0, 0
        self._first: tuple[int, np.ndarray] | None = None
        self._last: np.ndarray | None = None
        self.on_msg(self._on_message)
        self.observe(self._keep_limits, names=["fps", "max_seconds", "width", "height"])

    def _keep_limits(self, change: dict[str, Any]) -> None:
        """The page may not change the recording limits: they are set back to the kernel's."""
        fps, max_seconds, width, height = self._limits
        wanted = {"fps": fps, "max_seconds": max_seconds, "width": width, "height": height}[change["name"]]
        if change["new"] != wanted:
            setattr(self, change["name"], wanted)

    @property
    def video_path(self) -> Path | None:
        """The last saved recording, or None when nothing was recorded yet."""
        return Path(self.path) if self.path else None

    def _on_message(self, _widget: Any, content: dict, buffers: list[memoryview]) -> None:
        kind = content.get("type")
        try:
            if kind == "start":
                self._start()
            elif kind == "frame" and buffers and self._writer is not None:
                self._frame(int(content["index"]), decode_jpeg(buffers[0]))
                self.frames_written = self._writer.slots
                self.status = f"recording... {self._writer.seconds:.1f} s"
            elif kind == "audio":
                self._audio = bytes(buffers[0]) if buffers and len(buffers[0]) else None
            elif kind == "stop":
                self._stop()
        except Exception as exc:  # noqa: BLE001 - a comm callback has nobody else to report to
            log.exception("webcam recorder failed")
            self._abort()
            self.error = f"Recording failed: {exc}"
            self.status = "recording failed"

    def _frame(self, index: int, frame: np.ndarray) -> None:
        """Record a camera frame. While a camera warms up it repeats one (often blocky) frame: such a
        leading run of repeats is dropped, so the recording, and its first frame (the default reference
        for relative motion), start with the first new frame. A first frame that is not repeated, and a
        still scene, are kept from the first frame."""
        assert self._writer is not None
        if self._warming:
            self._seen += 1
            previous, self._last = self._last, frame
            if previous is None:
                self._first = (index, frame)
                return
            fresh = not _same(previous, frame)
            if not fresh and self._seen < WARMUP_FRAMES:
                return
            self._warming = False
            if fresh and self._seen > 2:  # a run of repeats came before this frame: drop it
                self._offset = index
            else:
                assert self._first is not None
                self._offset = self._first[0]
                self._writer.write(0, self._first[1])
        self._writer.write(index - self._offset, frame)

    def _start(self) -> None:
        self._abort()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        target = self.output_dir / time.strftime("webcam-%Y%m%d-%H%M%S.mp4")
        fps, max_seconds, _, _ = self._limits
        self._warming, self._seen, self._offset, self._first, self._last = True, 0, 0, None, None
        self._writer = SlotWriter(target, fps, max_slots=int(round(max_seconds * fps)))
        self.frames_written = 0
        self._audio = None
        self.error = ""
        self.status = "recording..."

    def _stop(self) -> None:
        if self._writer is not None and self._warming and self._first is not None:
            self._writer.write(0, self._first[1])  # stopped during the warm-up: keep what came
        self._warming = False
        writer, self._writer = self._writer, None
        if writer is None or writer.slots == 0:
            if writer is not None:
                writer.abort()
            self.status = "Nothing was recorded."
            return
        target = writer.close()
        fps = self._limits[0]
        audio, self._audio = self._audio, None
        self.has_sound = False
        if audio:
            try:
                add_sound(target, audio, start_s=self._offset / fps)
                self.has_sound = True
            except FommLabError as exc:
                log.warning("the recording's sound could not be added: %s", exc)
                self.sound_note = f"the sound could not be added ({exc.first_line()})"
        sound = "with sound" if self.has_sound else f"silent: {self.sound_note or 'sound off'}"
        self.path = str(target)
        self.status = f"Saved {writer.slots} frames ({writer.seconds:.1f} s, {sound}) to {target}"
        self.send({"type": "saved", "path": str(target)}, buffers=[target.read_bytes()])

    def _abort(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.abort()


def add_sound(video: Path, audio: bytes, start_s: float = 0.0) -> Path:
    """Mux ``audio`` (the browser's recording: WebM/Ogg Opus or MP4 AAC bytes) into ``video`` as AAC, skipping its
    first ``start_s`` seconds and ending with the video. ``video`` is replaced only by a complete result; on any
    failure it stays as it was (silent) and the temporary files are removed."""
    from ..io import ffmpeg
    from ..io.atomic import publish, remove, temp_sibling

    source, tmp = temp_sibling(video.with_suffix(".audio")), temp_sibling(video)
    try:
        source.write_bytes(audio)
        ffmpeg.run(["-i", str(video), "-ss", f"{max(start_s, 0.0):.3f}", "-i", str(source), "-map", "0:v:0",
                    "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-shortest",
                    "-movflags", "+faststart", "-f", "mp4", str(tmp), "-y"], "adding the recording's sound", video,
                   timeout=120)
        publish(tmp, video)
    finally:
        remove(source)
        remove(tmp)
    return video
