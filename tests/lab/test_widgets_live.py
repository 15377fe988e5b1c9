"""Live animation on the golden tiny checkpoint: LiveSession and the OpenCV local camera loop."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import face_clip_frames, make_face_clip

from fomm_lab import Animator
from fomm_lab.errors import MediaError

pytestmark = pytest.mark.slow


def test_live_session_animates_reanchors_and_records(tiny_model, astronaut, tmp_path: Path) -> None:
    from fomm_lab.live import LiveSession

    session = LiveSession(Animator(tiny_model, dtype="float32", smoothing=0), astronaut)
    frames = list(face_clip_frames(seconds=1, fps=6, size=(320, 240)))
    session.start_recording(tmp_path / "live.mp4", fps=10)
    outputs = [session.process(frame) for frame in frames]
    crop, out = outputs[-1]
    assert crop.shape == out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert session.frames == len(frames) and session.fps > 0
    assert session.tracker.box is not None  # the face was found
    before = session.process(frames[3])[1]
    session.reanchor()
    session.process(frames[-1])  # becomes the reference instead of frames[0]
    after = session.process(frames[3])[1]
    assert np.abs(after.astype(int) - before).mean() > 0.5
    best = session.best_reference()
    assert 0 <= best.index < best.frames == len(frames) + 3 and best.method in ("face landmarks", "model keypoints")
    path = session.stop_recording()
    video = cv2.VideoCapture(str(path))
    ok, first = video.read()
    assert ok and first.shape == (256, 512, 3)
    assert session.stop_recording() is None


def test_live_session_best_reference_without_frames(tiny_model, astronaut) -> None:
    from fomm_lab.errors import NoFaceError
    from fomm_lab.live import LiveSession

    with pytest.raises(NoFaceError, match="No camera frames yet"):
        LiveSession(Animator(tiny_model, dtype="float32", smoothing=0), astronaut).best_reference()


def test_local_camera_runs_on_a_video_file(tiny_model, astronaut, tmp_path: Path) -> None:
    from fomm_lab.lab import LocalCamera

    clip = make_face_clip(tmp_path / "cam.mp4", seconds=1, fps=8, size=(320, 240), audio=False)
    camera = LocalCamera(Animator(tiny_model, dtype="float32", smoothing=0), astronaut, camera=clip, max_frames=5)
    camera.start()
    camera.join(120)
    assert camera.error == "" and camera.frames == 5
    shown = cv2.imdecode(np.frombuffer(camera._image.value, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape == (256, 512, 3)
    assert "stopped after 5 frames" in camera._label.value


def test_local_camera_without_camera_says_so(tiny_model, astronaut, tmp_path: Path) -> None:
    from fomm_lab.lab import LocalCamera

    with pytest.raises(MediaError, match="No camera could be opened"):
        LocalCamera(Animator(tiny_model, dtype="float32", smoothing=0), astronaut, camera=tmp_path / "video9").start()
