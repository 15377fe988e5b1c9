"""Live animator widget: the browser camera drives the source photo in real time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets

from ..errors import FommLabError
from ..faces.track import FaceTracker
from ..live import LiveSession
from . import _assets
from ._jpeg import decode_jpeg, encode_jpeg

if TYPE_CHECKING:
    from ..engine.animator import Animator

log = logging.getLogger(__name__)


class LiveAnimator(anywidget.AnyWidget):
    """Animate ``source`` (RGB uint8 photo) live from the browser camera, shown beside the camera.

    Each camera frame goes to the kernel as JPEG, the face is tracked and cropped
    (:class:`~fomm_lab.faces.FaceTracker`), :meth:`Animator.step` animates it and the
    result returns as JPEG. The browser sends a frame only after the previous result arrived, so
    only the latest frame is ever processed. Buttons: re-anchor the reference on the current frame,
    pick the best reference among the last frames (face landmarks, or the model's keypoints when
    face-alignment is unavailable), and record ``camera crop | animation`` to ``output_dir``.

    Attributes: ``fps`` (float, processed frames per second), ``frames`` (int), ``status``,
    ``error`` (camera or processing problem, "" when fine), ``recording_path`` (last saved video).
    """

    _esm = _assets.esm("camera.js", "live.js")
    _css = _assets.css()

    width = traitlets.Int(640).tag(sync=True)
    height = traitlets.Int(480).tag(sync=True)
    fps = traitlets.Float(0.0).tag(sync=True)
    frames = traitlets.Int(0).tag(sync=True)
    status = traitlets.Unicode("Press Start camera.").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    recording = traitlets.Bool(False).tag(sync=True)
    recording_path = traitlets.Unicode("").tag(sync=True)

    def __init__(self, animator: Animator, source: np.ndarray, *, output_dir: str | Path = "temp",
                 tracker: FaceTracker | None = None,
                 landmarker: Callable[[np.ndarray], np.ndarray | None] | None = None,
                 record_fps: float = 15, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = LiveSession(animator, source, tracker=tracker, landmarker=landmarker)
        self.output_dir = Path(output_dir)
        self.record_fps = record_fps
        self.on_msg(self._on_message)

    def _on_message(self, _widget: Any, content: dict, buffers: list[memoryview]) -> None:
        kind = content.get("type")
        try:
            if kind == "frame" and buffers:
                _, out = self.session.process(decode_jpeg(buffers[0]))
                self.send({"type": "result"}, buffers=[encode_jpeg(out)])
                self.fps, self.frames = round(self.session.fps, 2), self.session.frames
            elif kind == "start":
                self.error, self.status = "", "running"
            elif kind == "stop":
                self._record(False)
                self.fps = 0.0  # no frame rate is shown once stopped
                self.status = f"stopped after {self.session.frames} frames"
            elif kind == "reanchor":
                self.session.reanchor()
                self.status = "reference re-anchored on the current frame"
            elif kind == "best":
                best = self.session.best_reference()
                self.status = (f"best reference: frame {best.index + 1} of the last {best.frames} "
                               f"(by {best.method})")
            elif kind == "record":
                self._record(bool(content.get("on")))
        except FommLabError as exc:
            self.error = str(exc)
            if kind == "frame":
                self.send({"type": "result"})
        except Exception as exc:  # noqa: BLE001 - a comm callback has nobody else to report to
            log.exception("live animator failed")
            self.error = f"Live animation failed: {exc}"
            self.send({"type": "failed"})

    def _record(self, on: bool) -> None:
        if on and not self.recording:
            path = self.output_dir / time.strftime("live-%Y%m%d-%H%M%S.mp4")
            self.session.start_recording(path, fps=self.record_fps)
            self.recording, self.status = True, f"recording to {path}"
        elif not on and self.recording:
            self.recording = False
            saved = self.session.stop_recording()
            if saved is not None:
                self.recording_path = str(saved)
                self.status = f"saved the live recording to {saved}"
