"""Photo and video face crops on real media: skimage's astronaut photo and ffmpeg-made clips of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from clips import face_clip_frames, make_face_clip, make_test_video
from skimage import data

from fomm_lab.errors import CropError, FaceIndexError, NoFaceError
from fomm_lab.faces import HaarDetector, crop_photo, plan_video_crop
from fomm_lab.geometry import Box
from fomm_lab.io import probe_video, read_video, write_video
from fomm_lab.io.ffmpeg import ffmpeg_exe

FACE_REGION = Box(185, 80, 262, 155)  # the astronaut's face in the 512x512 photo, checked by eye


@pytest.fixture(scope="module")
def haar():
    return HaarDetector()


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """2 s, 25 fps, 640x480, the face circling and scaling, 440 Hz sine audio."""
    return make_face_clip(tmp_path_factory.mktemp("clip") / "face.mp4", seconds=2)


def inside(inner: Box, outer: Box) -> bool:
    return (outer.x0 <= inner.x0 and outer.y0 <= inner.y0
            and outer.x1 >= inner.x1 and outer.y1 >= inner.y1)


def audio_seconds(path) -> float:
    """Length of the first audio stream, decoded to 16 kHz mono samples."""
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "16000",
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return len(pcm) / 2 / 16000


# --------------------------------------------------------------------------------------------- photo


def test_photo_crop_holds_the_face(haar):
    photo = data.astronaut()
    result = crop_photo(photo, detector=haar, size=256)
    assert result.image.shape == (256, 256, 3) and result.image.dtype == np.uint8
    box = result.box
    assert box.width == box.height and 0 <= box.x0 and 0 <= box.y0 and box.x1 <= 512 and box.y1 <= 512
    assert inside(FACE_REGION, box)
    assert box.width < 250  # a face crop, not the whole photo
    assert inside(result.face, box) and (box.y0 < result.face.y0 - 0.4 * result.face.height)  # room above
    # the crop shows that region of the photo: the face is found again, large, in the crop
    (again,) = haar.detect(result.image)
    assert again.width > 0.4 * 256


def test_photo_crop_padding_and_size(haar):
    photo = data.astronaut()
    tight = crop_photo(photo, padding=(0, 0, 0, 0), size=128, detector=haar)
    assert tight.image.shape == (128, 128, 3)
    assert tight.box.as_tuple() == pytest.approx(tight.face.as_tuple(), abs=1)
    wide = crop_photo(photo, padding=(1, 1, 1, 1), detector=haar, size=256)
    assert wide.box.width == pytest.approx(3 * wide.face.width, abs=2)
    # more room on the left moves the square left
    left = crop_photo(photo, padding=(1.0, 0.2, 0.2, 0.2), detector=haar, size=256)
    assert left.box.center[0] < wide.box.center[0]
    with pytest.raises(CropError, match="square"):
        crop_photo(photo, size=(256, 128), detector=haar)


def test_photo_crop_near_the_edge_stays_inside(haar):
    photo = np.ascontiguousarray(data.astronaut()[40:220, 150:330])  # face fills most of a 180x180 photo
    result = crop_photo(photo, padding=(1, 1, 1, 1), detector=haar, size=256)
    assert result.box.as_tuple() == (0, 0, 180, 180)
    assert result.image.shape == (256, 256, 3)


def test_photo_crop_picks_faces_by_index(haar):
    big = data.astronaut()
    small = np.ascontiguousarray(big[::2, ::2])  # the same photo at half size, face half as large
    canvas = np.concatenate([small, big[:256]], axis=1)  # 768x256: small face left, large face right
    canvas = np.ascontiguousarray(np.concatenate([canvas, np.zeros((256, 768, 3), np.uint8)], axis=0))
    largest = crop_photo(canvas, detector=haar, size=256)
    assert largest.face.x0 > 256  # the large face, on the right
    first = crop_photo(canvas, face_index=0, detector=haar, size=256)
    assert first.face.x1 < 256
    assert crop_photo(canvas, face_index=1, detector=haar, size=256).face == largest.face
    with pytest.raises(FaceIndexError, match="face index 2 .* 2 face"):
        crop_photo(canvas, face_index=2, detector=haar, size=256)


def test_photo_without_face_is_no_face_error(haar, tmp_path):
    import imageio.v3 as iio

    path = tmp_path / "coffee.png"
    iio.imwrite(path, data.coffee())
    with pytest.raises(NoFaceError, match=r"coffee\.png.*whole photo"):
        crop_photo(path, detector=haar, size=256)


# --------------------------------------------------------------------------------------------- video


def test_video_plan_box_covers_the_face_motion(face_clip, haar):
    plan = plan_video_crop(face_clip, detector=haar, progress=False, size=256, mode="static")
    assert (plan.width, plan.height, plan.frame_count, plan.fps) == (640, 480, 50, 25)
    assert len(plan.tracks) == 1
    track = plan.tracks[0]
    assert (track.start, track.end) == (0, 50)
    box = track.box
    assert box.width == box.height < 480 and box.x0 >= 0 and box.y0 >= 0 and box.x1 <= 640 and box.y1 <= 480
    # every frame's face (found on every frame, although the plan only looked at every 5th)
    with read_video(face_clip) as reader:
        faces = [haar.detect(frame) for frame in reader]
    assert sum(bool(f) for f in faces) >= 45
    for found in faces:
        if found:  # the best-scored box; Haar adds a stray low-scored one on a frame or two
            assert inside(found[0].scaled(0.9), box)
    # and the motion is large: a box around the first frame's face alone would not do
    assert box.width > 2 * faces[0][0].width
    text = plan.describe(Path("crop.mp4"))
    assert "1 face track" in text and "frames 0-49" in text and "crop=" in text


def test_video_crop_writes_256_clip_with_audio_of_the_span(face_clip, haar, tmp_path):
    out = tmp_path / "out" / "crop.mp4"
    plan = plan_video_crop(face_clip, detector=haar, progress=False, size=256)
    plan.write(out)
    info = probe_video(out)
    assert (info.width, info.height) == (256, 256)
    assert info.has_audio
    with read_video(out) as reader:
        frames = list(reader)
    assert len(frames) == plan.tracks[0].frames == 50
    assert info.fps == pytest.approx(25)
    assert audio_seconds(out) == pytest.approx(2.0, abs=0.1)
    assert sum(bool(haar.detect(f)) for f in frames[::5]) >= 8  # the face is in the crop
    assert sorted(p.name for p in out.parent.iterdir()) == ["crop.mp4"]  # no temp file left


def test_video_crop_trims_video_and_audio_to_the_track(tmp_path, haar):
    """A face that appears after 1 s: the clip and its audio start there."""
    clip = tmp_path / "late.mp4"
    blank = [np.full((240, 320, 3), 90, np.uint8)] * 25
    faces = [np.ascontiguousarray(f) for f in face_clip_frames(seconds=2, size=(320, 240), motion=False)]
    write_video(clip, blank + faces, fps=25, progress=False)
    with_audio = tmp_path / "late-audio.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(clip), "-f", "lavfi", "-i",
                    "sine=frequency=300:duration=3", "-c:v", "copy", "-c:a", "aac", "-shortest",
                    str(with_audio)], check=True)
    plan = plan_video_crop(with_audio, detector=haar, progress=False, size=256)
    (track,) = plan.tracks
    assert (track.start, track.end) == (25, 75)
    assert (track.start_s, track.end_s) == (1.0, 3.0)
    out = plan.write(tmp_path / "crop.mp4")
    with read_video(out) as reader:
        assert sum(1 for _ in reader) == 50
    assert audio_seconds(out) == pytest.approx(2.0, abs=0.1)
    no_audio = plan.write(tmp_path / "silent.mp4", audio=False)
    assert not probe_video(no_audio).has_audio


def test_two_scenes_give_two_tracks(tmp_path, haar):
    scene1 = list(face_clip_frames(seconds=2, motion=True))
    # second scene: another shot (darker) with the face where it was at the cut, so only the cut
    # (not the tracking) can tell the two apart
    scene2 = [f // 2 + 20 for f in face_clip_frames(seconds=2, motion=True)]
    clip = write_video(tmp_path / "two.mp4", scene1 + scene2, fps=25, progress=False)
    plan = plan_video_crop(clip, detector=haar, progress=False, size=256)
    assert len(plan.tracks) == 2
    spans = sorted((t.start, t.end) for t in plan.tracks)
    assert spans == [(0, 50), (50, 100)]
    assert len(plan_video_crop(clip, detector=haar, cut_threshold=1.0, progress=False, size=256).tracks) == 1  # no cuts
    second = plan.write(tmp_path / "second.mp4", track=[t.start for t in plan.tracks].index(50))
    assert probe_video(second).frame_count in (50, None)
    with pytest.raises(FaceIndexError, match="track=2 .* 2 face track"):
        plan.write(tmp_path / "x.mp4", track=2)
    assert not (tmp_path / "x.mp4").exists()


def test_long_loss_splits_the_track(tmp_path, haar):
    face = [np.ascontiguousarray(f) for f in face_clip_frames(seconds=1.2, size=(320, 240), motion=False)]
    gone = [np.full((240, 320, 3), 90, np.uint8)] * 40  # 1.6 s without a face
    clip = write_video(tmp_path / "gap.mp4", face + gone + face, fps=25, progress=False)
    options = dict(detector=haar, cut_threshold=1.0, progress=False)  # no scene cuts: the gap alone splits
    spans = sorted((t.start, t.end) for t in plan_video_crop(clip, max_gap_s=1.0, **options, size=256).tracks)
    assert spans == [(0, 30), (70, 100)]
    (bridged,) = plan_video_crop(clip, max_gap_s=2.0, **options, size=256).tracks
    assert (bridged.start, bridged.end) == (0, 100)
    with pytest.raises(NoFaceError, match=r"shorter than 40 frames \(the longest has 30\).*min_track_frames=30"):
        plan_video_crop(clip, min_frames=40, **options, size=256)


def test_video_without_face_is_no_face_error(tmp_path, haar):
    clip = make_test_video(tmp_path / "pattern.mp4", frames=30, fps=25, size=(320, 240))
    with pytest.raises(NoFaceError, match=r"pattern\.mp4.*no face was found in any of its 30 frames.*driving_box=\(x0, y0, x1, y1\)"):
        plan_video_crop(clip, detector=haar, progress=False, size=256)


def test_clip_shorter_than_min_frames_keeps_its_face(face_clip, haar):
    (track,) = plan_video_crop(face_clip, detector=haar, min_frames=100, progress=False, size=256).tracks
    assert track.frames == 50


def test_manual_box_skips_detection(tmp_path):
    clip = make_test_video(tmp_path / "pattern.mp4", frames=12, fps=12, size=(320, 240), audio=True)
    plan = plan_video_crop(clip, box=(100, 50, 200, 130), size=256)
    (track,) = plan.tracks
    assert track.box.as_tuple() == (100, 40, 200, 140)  # made square around the box's centre
    assert (track.start, track.end) == (0, 12)
    out = plan.write(tmp_path / "manual.mp4")
    info = probe_video(out)
    assert (info.width, info.height, info.has_audio) == (256, 256, True)
    with pytest.raises(CropError, match="not inside the 320x240 frame"):
        plan_video_crop(clip, box=(100, 50, 400, 130), size=256)


def test_folder_of_frames(tmp_path, haar):
    import imageio.v3 as iio

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(face_clip_frames(seconds=1.2, fps=25, size=(320, 240))):
        iio.imwrite(folder / f"{i}.png", frame)
    plan = plan_video_crop(folder, detector=haar, progress=False, size=256)
    assert (plan.tracks[0].start, plan.tracks[0].end) == (0, 30)
    out = plan.write(tmp_path / "crop.mp4")
    with read_video(out) as reader:
        frames = list(reader)
    assert len(frames) == 30 and frames[0].shape == (256, 256, 3)
