"""``fomm-lab crop``: face tracks of a real clip (the astronaut's face moving) to 256x256 clips."""

from __future__ import annotations

import numpy as np
import pytest
from clips import make_face_clip, make_test_video
from test_cli import assert_one_line_error

from fomm_lab.cli import main
from fomm_lab.faces import HaarDetector, plan_video_crop
from fomm_lab.io import probe_video, read_video


@pytest.fixture(autouse=True)
def _no_face_alignment_weights(tmp_path_factory, monkeypatch):
    """Empty torch hub: no face-alignment weights, OpenCV's detector is used (user cache untouched)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    return make_face_clip(tmp_path_factory.mktemp("crop") / "face.mp4", seconds=1.2, fps=25,
                          size=(320, 240), audio=True)


def test_crop_writes_the_longest_track_with_sound(face_clip, tmp_path, capsys):
    out = tmp_path / "face-256.mp4"
    assert main(["crop", str(face_clip), "--output", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    plan = plan_video_crop(face_clip, detector=HaarDetector(), progress=False, size=256)
    assert plan.describe(out) in printed  # the plan (exactly what runs), then what was written
    assert f"wrote {out}" in printed
    info = probe_video(out)
    assert (info.width, info.height) == (256, 256)
    assert info.has_audio
    frames = np.stack(list(read_video(out)))
    assert len(frames) == plan.tracks[0].frames
    # The same crop made by the library: identical ffmpeg command, identical pixels.
    expected = np.stack(list(read_video(plan.write(tmp_path / "library.mp4"))))
    assert np.array_equal(frames, expected)


def test_crop_without_audio(face_clip, tmp_path):
    out = tmp_path / "silent.mp4"
    assert main(["crop", str(face_clip), "--output", str(out), "--no-audio", "-q"]) == 0
    assert not probe_video(out).has_audio


def test_all_tracks_numbers_the_clips(face_clip, tmp_path, capsys):
    out = tmp_path / "track.mp4"
    assert main(["crop", str(face_clip), "--output", str(out), "--all-tracks", "-q"]) == 0
    plan = plan_video_crop(face_clip, detector=HaarDetector(), progress=False, size=256)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [f"track-{i + 1}.mp4" for i in range(len(plan.tracks))]
    assert "wrote" in capsys.readouterr().out


def test_increase_changes_the_box(face_clip, tmp_path, capsys):
    assert main(["crop", str(face_clip), "--output", str(tmp_path / "a.mp4"), "--increase", "0", "--mode", "static", "-q"]) == 0
    tight = capsys.readouterr().out
    assert main(["crop", str(face_clip), "--output", str(tmp_path / "b.mp4"), "--increase", "0.3", "--mode", "static", "-q"]) == 0
    loose = capsys.readouterr().out

    def side(text: str) -> int:
        return int(text.split("side=")[1].split()[0])

    assert side(loose) > side(tight)


@pytest.fixture(scope="module")
def brief_face(tmp_path_factory):
    """30 frames at 25 fps: the face in the first 10, then an empty grey picture."""
    from clips import face_clip_frames

    from fomm_lab.io import write_video

    frames = list(face_clip_frames(seconds=0.4, fps=25, size=(320, 240)))
    frames += [np.full_like(frames[0], 128)] * 20
    return write_video(tmp_path_factory.mktemp("brief") / "brief.mp4", frames, fps=25, progress=False)


def test_min_frames(brief_face, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    assert main(["crop", str(brief_face), "--output", str(out), "--min-frames", "15", "-q"]) == 1
    assert_one_line_error(capsys.readouterr().err, "shorter than 15 frames", "--min-frames N")
    assert not out.exists()
    assert main(["crop", str(brief_face), "--output", str(out), "--min-frames", "5", "-q"]) == 0
    assert 5 <= sum(1 for _ in read_video(out)) <= 15


def test_video_without_a_face(tmp_path, capsys):
    pattern = make_test_video(tmp_path / "pattern.mp4", frames=10, fps=10, size=(160, 120))
    assert main(["crop", str(pattern), "--output", str(tmp_path / "o.mp4"), "-q"]) == 1
    assert_one_line_error(capsys.readouterr().err, "no face was found", "--box X0 Y0 X1 Y1")
    assert not (tmp_path / "o.mp4").exists()


def test_bad_output_name(face_clip, tmp_path, capsys):
    assert main(["crop", str(face_clip), "--output", str(tmp_path / "o.txt"), "-q"]) == 1
    assert_one_line_error(capsys.readouterr().err, "o.txt", ".mp4")


def test_missing_video(tmp_path, capsys):
    assert main(["crop", str(tmp_path / "nope.mp4"), "--output", str(tmp_path / "o.mp4")]) == 1
    assert_one_line_error(capsys.readouterr().err, "nope.mp4", "does not exist")
