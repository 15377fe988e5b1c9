"""Face tracking and the live-animation loop body, shared by the browser and the local camera.

No widget code here: :class:`LiveSession` turns camera frames into animated frames and is used by
:class:`fomm_lab.widgets.LiveAnimator` (browser camera) and :mod:`fomm_lab.webcam` (OpenCV camera).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fomm_lab.errors import DownloadError, NoFaceError
from fomm_lab.faces import Box
from fomm_lab.resize import resize_image

if TYPE_CHECKING:
    from fomm_lab.animate import Animator
    from fomm_lab.faces import FaceDetector
    from fomm_lab.widgets._slots import SlotWriter


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
            from fomm_lab.faces import HaarDetector

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

    def crop(self, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The tracked face square of ``frame`` resized to ``size`` = (width, height)."""
        box = self.update(frame)
        x0, y0, x1, y1 = (int(round(v)) for v in box.as_tuple())
        return resize_image(frame[y0:y1, x0:x1], size)


@dataclass
class BestReference:
    """Result of :meth:`LiveSession.best_reference`: which recent frame became the reference."""

    index: int  # position in the recent-frames buffer (0 = oldest)
    frames: int  # frames in the buffer
    method: str  # "face landmarks" or "model keypoints"


class LiveSession:
    """Camera frame in, animated frame out: face crop -> ``Animator.step``, with fps and recording.

    ``animator`` must be relative or absolute as wanted; its source is set here from ``source``
    (RGB uint8 photo, ideally already cropped to the face). ``landmarker`` is a callable
    img -> (68, 2) points or None, used by :meth:`best_reference`; None means: try
    ``fomm_lab.faces.get_landmarker()`` and, when face-alignment's weights are unavailable, fall
    back to the model's own keypoints (pose-similar, not identity-similar). The last ``history``
    crops are kept for that search.
    """

    def __init__(self, animator: Animator, source: np.ndarray, tracker: FaceTracker | None = None,
                 landmarker: Callable[[np.ndarray], np.ndarray | None] | None = None, history: int = 60) -> None:
        self.animator = animator
        self.size = tuple(reversed(animator.model.frame_size))  # (width, height)
        self.source = resize_image(np.asarray(source), self.size)
        animator.set_source(self.source)
        self.tracker = tracker or FaceTracker()
        self.landmarker = landmarker
        self._method = "face landmarks"
        self.recent: deque[np.ndarray] = deque(maxlen=history)
        self.fps = 0.0
        self.frames = 0
        self._reanchor = False
        self._last_time: float | None = None
        self._recorder: SlotWriter | None = None
        self._record_start = 0.0

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Animate one RGB camera frame; returns (face crop, animated frame), both at model size."""
        crop = self.tracker.crop(frame, self.size)
        if self._reanchor or not self.animator.has_reference:
            self.animator.set_reference(crop)
            self._reanchor = False
        out = self.animator.step(crop)
        self.recent.append(crop)
        now = time.perf_counter()
        if self._last_time is not None:
            rate = 1.0 / max(now - self._last_time, 1e-6)
            self.fps = rate if self.fps == 0 else 0.8 * self.fps + 0.2 * rate
        self._last_time = now
        self.frames += 1
        if self._recorder is not None:
            index = int((now - self._record_start) * self._recorder.fps)
            self._recorder.write(index, np.concatenate([crop, out], axis=1))
        return crop, out

    def reanchor(self) -> None:
        """Use the next camera frame as the reference pose (relative motion starts from it)."""
        self._reanchor = True

    def best_reference(self) -> BestReference:
        """Make the recent frame whose face pose is closest to the source's the reference.

        NoFaceError when no recent frame (or the source) has a detectable face.
        """
        from fomm_lab.best_frame import find_best_frame

        if not self.recent:
            raise NoFaceError("No camera frames yet: start the camera, then pick the best reference.")
        if self.landmarker is None:
            try:
                from fomm_lab.faces import get_landmarker

                self.landmarker = get_landmarker()
            except DownloadError:
                self.landmarker = self._model_keypoints
                self._method = "model keypoints"
        frames = list(self.recent)
        index = find_best_frame(self.source, frames, self.landmarker)
        self.animator.set_reference(frames[index])
        return BestReference(index, len(frames), self._method)

    def _model_keypoints(self, img: np.ndarray) -> np.ndarray:
        """The FOMM keypoints of ``img`` as (K, 2) xy in [-1, 1]: the landmark fallback."""
        import torch

        model = self.animator.model
        tensor = torch.from_numpy(resize_image(img, self.size).astype(np.float32) / 255).permute(2, 0, 1)[None]
        with torch.inference_mode():
            keypoints = model.kp_detector(tensor.to(model.device))
        return keypoints.value[0].float().cpu().numpy()

    def start_recording(self, path: str | Path, fps: float = 15) -> None:
        """Record (camera crop | animation) side by side to ``path`` at ``fps`` in real time."""
        from fomm_lab.widgets._slots import SlotWriter

        self.stop_recording()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._recorder = SlotWriter(path, fps)
        self._record_start = time.perf_counter()

    def stop_recording(self) -> Path | None:
        """Finish the recording; returns its path, or None when nothing was recorded."""
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return None
        if recorder.slots == 0:
            recorder.abort()
            return None
        return recorder.close()
