"""Local camera loop: animate from an OpenCV camera (e.g. /dev/video0) and show it in the notebook.

For labs where the kernel's machine has the camera (``docker run --device /dev/video0``). When the
camera is in the browser instead, use :class:`fomm_lab.lab.LiveAnimator`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..errors import MediaError
from ..faces.track import FaceTracker
from ..live import LiveSession

if TYPE_CHECKING:
    from ..engine.animator import Animator


class LocalCamera:
    """Read ``camera`` with OpenCV, track and crop the face, animate ``source``, show both.

    camera:     device index (0 = /dev/video0), device path, or a video file (for trying it out).
    max_frames: stop after this many frames (None: until Stop or the end of a file).

    ``widget`` (ipywidgets) holds the picture (camera crop | animation), a Stop button and an fps
    label; :meth:`start` runs the loop in a background thread so the button stays clickable,
    :meth:`run` runs it in the calling thread. MediaError when the camera cannot be opened.
    """

    def __init__(self, animator: Animator, source: np.ndarray, camera: int | str | Path = 0,
                 max_frames: int | None = None, tracker: FaceTracker | None = None) -> None:
        self.camera = camera
        self.max_frames = max_frames
        self.session = LiveSession(animator, source, tracker=tracker)
        self.frames = 0
        self.error: str = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._widget: Any = None

    @property
    def widget(self) -> Any:
        """The ipywidgets box shown in the notebook (created on first use)."""
        if self._widget is None:
            import ipywidgets as widgets

            self._image = widgets.Image(format="jpeg", width=512)
            self._label = widgets.Label("not started")
            stop = widgets.Button(description="Stop", icon="stop")
            stop.on_click(lambda _button: self.stop())
            self._widget = widgets.VBox([widgets.HBox([stop, self._label]), self._image])
        return self._widget

    def _open(self) -> cv2.VideoCapture:
        source = str(self.camera) if isinstance(self.camera, Path) else self.camera
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            where = f"/dev/video{source}" if isinstance(source, int) else source
            raise MediaError(
                f"No camera could be opened at {where}. Connect a camera (in Docker pass it with "
                "--device /dev/video0), choose another index, or use the browser camera "
                "(fomm_lab.lab.LiveAnimator) instead."
            )
        return capture

    def run(self) -> int:
        """Run the loop here until Stop, ``max_frames`` or the end of the input; returns frames done."""
        self.widget  # noqa: B018 - build the display before the first frame
        capture = self._open()
        self._stop.clear()
        try:
            while not self._stop.is_set() and (self.max_frames is None or self.frames < self.max_frames):
                ok, bgr = capture.read()
                if not ok:
                    break
                crop, out = self.session.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                shown = cv2.cvtColor(np.concatenate([crop, out], axis=1), cv2.COLOR_RGB2BGR)
                self._image.value = cv2.imencode(".jpg", shown)[1].tobytes()
                self.frames += 1
                self._label.value = f"{self.frames} frames, {self.session.fps:.1f} fps"
        finally:
            capture.release()
            self._label.value = f"stopped after {self.frames} frames"
        return self.frames

    def start(self) -> Any:
        """Open the camera, start the loop in a background thread and return the widget to display."""
        self._open().release()  # fail here, in the caller's cell, when there is no camera
        self._thread = threading.Thread(target=self._run_logged, daemon=True)
        self._thread.start()
        return self.widget

    def _run_logged(self) -> None:
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - a background thread has nobody else to report to
            self.error = str(exc)
            self._label.value = f"failed: {exc}"

    def stop(self) -> None:
        """Ask the loop to stop after the current frame."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background loop to end."""
        if self._thread is not None:
            self._thread.join(timeout)
