"""Kernel-side behaviour of the lab widgets (the browser side is in test_browser.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import face_clip_frames, face_patch, make_face_clip

from fomm_lab.errors import MediaError


def _decode(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    width, height = next(gen)["size"]
    return [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in gen]


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _solid(value: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    return np.full((size[1], size[0], 3), value, np.uint8)


def test_jpeg_round_trip_and_garbage() -> None:
    from fomm_lab.lab._jpeg import decode_jpeg, encode_jpeg

    patch = face_patch(96)
    back = decode_jpeg(memoryview(encode_jpeg(patch, quality=95)))
    assert back.shape == patch.shape and np.abs(back.astype(int) - patch).mean() < 4
    with pytest.raises(MediaError, match="not an image that can be decoded"):
        decode_jpeg(b"<html>not an image</html>")


def test_slot_writer_repeats_frames_for_skipped_slots(tmp_path: Path) -> None:
    from fomm_lab.io.slots import SlotWriter

    writer = SlotWriter(tmp_path / "slots.mp4", fps=10, max_slots=6)
    writer.write(0, _solid(40))
    writer.write(1, _solid(120))
    writer.write(1, _solid(250))  # same slot again: dropped
    writer.write(4, _solid(200, size=(128, 96)))  # other size: resized to the first
    writer.write(9, _solid(80))  # beyond max_slots: clamped to the last slot
    assert writer.slots == 6 and writer.seconds == pytest.approx(0.6)
    frames = _decode(writer.close())
    assert [int(round(f.mean())) for f in frames] == pytest.approx([40, 120, 120, 120, 200, 80], abs=4)
    assert frames[0].shape == (48, 64, 3)


def test_slot_writer_abort_leaves_nothing(tmp_path: Path) -> None:
    from fomm_lab.io.slots import SlotWriter

    writer = SlotWriter(tmp_path / "gone.mp4", fps=10)
    writer.write(0, _solid(100))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_recorder_writes_clip_from_browser_messages(tmp_path: Path) -> None:
    from fomm_lab.lab import WebcamRecorder

    rec = WebcamRecorder(tmp_path / "out", fps=10, max_seconds=1)
    assert rec.error == "" and rec.video_path is None
    frames = list(face_clip_frames(seconds=1, fps=10, size=(160, 120)))
    rec._handle_custom_msg({"type": "start", "fps": 10}, [])
    for i, frame in enumerate(frames):
        if i != 3:  # slot 3 skipped by a slow browser
            rec._handle_custom_msg({"type": "frame", "index": i}, [memoryview(_jpeg(frame))])
    rec._handle_custom_msg({"type": "stop"}, [])
    assert rec.error == "", rec.error
    assert rec.video_path is not None and rec.video_path.parent == tmp_path / "out"
    assert rec.frames_written == 10 and "Saved 10 frames" in rec.status
    written = _decode(rec.video_path)
    assert len(written) == 10
    for got, want in zip(written, frames[:3] + [frames[2]] + frames[4:]):
        assert np.abs(got.astype(int) - want).mean() < 8


def test_recorder_reports_bad_frames_and_keeps_nothing(tmp_path: Path) -> None:
    from fomm_lab.lab import WebcamRecorder

    rec = WebcamRecorder(tmp_path, fps=10)
    rec._handle_custom_msg({"type": "start"}, [])
    rec._handle_custom_msg({"type": "frame", "index": 0}, [memoryview(_jpeg(_solid(90)))])
    rec._handle_custom_msg({"type": "frame", "index": 1}, [memoryview(b"garbage")])
    assert "not an image that can be decoded" in rec.error and rec.status == "recording failed"
    rec._handle_custom_msg({"type": "stop"}, [])
    assert rec.path == "" and list(tmp_path.iterdir()) == []


def test_comparison_player_ships_videos_and_checks_inputs(tmp_path: Path) -> None:
    from fomm_lab.lab import ComparisonPlayer

    clip = make_face_clip(tmp_path / "a.mp4", seconds=0.4, fps=10, size=(64, 64), audio=False)
    player = ComparisonPlayer([clip, clip], ["one", "two"])
    assert [bytes(v) for v in player.videos] == [clip.read_bytes()] * 2 and player.captions == ["one", "two"]
    with pytest.raises(MediaError, match="does not exist"):
        ComparisonPlayer([tmp_path / "missing.mp4"])
    with pytest.raises(MediaError, match="one caption per video"):
        ComparisonPlayer([clip, clip], ["only one"])


def test_face_tracker_follows_the_face() -> None:
    from fomm_lab.faces import FaceTracker

    tracker = FaceTracker(every=1, smoothing=0.0)
    # third of five clip frames: the face (118 px) is centred near (113, 97), away from the middle
    frame = list(face_clip_frames(seconds=1, fps=5, size=(320, 240)))[2]
    box = tracker.update(frame)
    cx, cy = box.center
    assert abs(cx - 113) < 15 and abs(cy - 97) < 15 and box.width == box.height
    crop = tracker.crop(frame, (64, 64))
    assert crop.shape == (64, 64, 3)
    empty = FaceTracker().update(np.full((240, 320, 3), 90, np.uint8))  # no face yet: centre square
    assert empty.as_tuple() == (40, 0, 280, 240)
