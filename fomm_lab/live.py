"""The live loop: camera frame in, animated frame out.

:class:`LiveSession` tracks and crops the face (:class:`~fomm_lab.faces.FaceTracker`), animates the
crop with :meth:`Animator.step <fomm_lab.engine.animator.Animator.step>`, re-anchors the reference pose
on request, picks the best reference among the recent frames, measures the frame rate and records.
It holds no widget code: the browser widget (:class:`fomm_lab.lab.LiveAnimator`) and the local
camera (:class:`fomm_lab.lab.LocalCamera`) both drive it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import DownloadError, NoFaceError
from .faces.track import FaceTracker
from .geometry import Size
from .io.resize import resize_image

if TYPE_CHECKING:
    from .engine.animator import Animator
    from .enhance.enhancer import FaceEnhancer
    from .io.slots import SlotWriter


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

    ``enhancer`` (:func:`fomm_lab.enhance.load_enhancer`, off by default): each animated frame is enhanced and
    brought back to the model's size, blended by ``enhance_strength``; :meth:`set_enhancer` switches it on or
    off between frames. It keeps up on a GPU; on a CPU it costs seconds per frame (docs/enhance.md).
    """

    def __init__(self, animator: Animator, source: np.ndarray, tracker: FaceTracker | None = None,
                 landmarker: Callable[[np.ndarray], np.ndarray | None] | None = None, history: int = 60,
                 enhancer: FaceEnhancer | None = None, enhance_strength: float = 1.0) -> None:
        self.animator = animator
        self.size: Size = animator.model.frame_size
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
        self.enhancer: FaceEnhancer | None = None
        self.enhance_strength = 1.0
        self.set_enhancer(enhancer, enhance_strength)

    def set_enhancer(self, enhancer: FaceEnhancer | None, strength: float = 1.0) -> None:
        """Enhance the animated frames from the next one on with ``enhancer`` at ``strength`` in [0, 1] (1: fully
        enhanced); None switches enhancement off."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"enhance_strength must be in [0, 1], not {strength}")
        self.enhancer = enhancer
        self.enhance_strength = strength

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Animate one RGB camera frame; returns (face crop, animated frame), both at model size."""
        crop = self.tracker.crop(frame, self.size)
        if self._reanchor or not self.animator.has_reference:
            self.animator.set_reference(crop)
            self._reanchor = False
        out = self.animator.step(crop)
        if self.enhancer is not None:
            out = self.enhancer.enhance_faces(out[None], size=(self.size.width, self.size.height),
                                              strength=self.enhance_strength)[0]
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
        from .engine.best_frame import find_best_frame

        if not self.recent:
            raise NoFaceError("No camera frames yet: start the camera, then pick the best reference.")
        if self.landmarker is None:
            try:
                from .faces.detect import get_landmarker

                self.landmarker = get_landmarker()
            except DownloadError:
                self.landmarker = self._model_keypoints
                self._method = "model keypoints"
        frames = list(self.recent)
        index = find_best_frame(self.source, frames, self.landmarker)
        self.animator.set_reference(frames[index])
        return BestReference(index, len(frames), self._method)

    def _model_keypoints(self, img: np.ndarray) -> np.ndarray:
        """The model's keypoints of ``img`` as (K, 2) xy in [-1, 1]: the landmark fallback."""
        import torch

        from .engine.frames import frames_to_tensor

        model = self.animator.model
        detect = model.inference_networks().kp_detector
        with torch.inference_mode():
            keypoints = detect(frames_to_tensor([img], self.size, model.device))
        return keypoints.value[0].float().cpu().numpy()

    def start_recording(self, path: str | Path, fps: float = 15) -> None:
        """Record (camera crop | animation) side by side to ``path`` at ``fps`` in real time."""
        from .io.slots import SlotWriter

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
