"""fomm_lab.media on real media made with ffmpeg: probing, streaming reads, writing, bad inputs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from clips import (
    decode_audio,
    face_clip_frames,
    make_audio_only,
    make_face_clip,
    make_rotated_copy,
    make_test_video,
    make_tone_after,
    make_y4m,
)

from fomm_lab.errors import MediaError
from fomm_lab.io import VideoWriter, mux_audio, probe_video, read_video, write_video
from fomm_lab.io.ffmpeg import ffmpeg_exe


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_face_clip(tmp_path_factory.mktemp("clip") / "face.mp4")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_ffmpeg_exe_runs() -> None:
    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ffmpeg version")


def test_probe_face_clip(face_clip: Path) -> None:
    info = probe_video(face_clip)
    assert (info.width, info.height, info.fps, info.frame_count) == (640, 480, 25.0, 50)
    assert info.has_audio and info.rotation == 0
    assert info.duration == pytest.approx(2.0, abs=0.05)


def test_probe_without_audio(tmp_path: Path) -> None:
    clip = make_face_clip(tmp_path / "mute.mp4", seconds=0.4, audio=False)
    assert probe_video(clip).has_audio is False


def test_read_video_streams_decoded_frames_matching_source(face_clip: Path) -> None:
    reader = read_video(face_clip)
    frames = iter(reader)
    first = next(frames)
    assert first.shape == (480, 640, 3) and first.dtype == np.uint8
    assert first.flags.writeable
    expected = next(face_clip_frames())
    assert np.abs(first.astype(int) - expected).mean() < 4  # lossy H.264, same picture
    assert 1 + sum(1 for _ in frames) == 50
    assert not reader._processes  # the ffmpeg process ended with the stream


def test_reader_iterates_twice_and_stops_early(face_clip: Path) -> None:
    with read_video(face_clip) as reader:
        it = iter(reader)
        next(it)
        assert len(reader._processes) == 1
        it.close()  # abandoning a stream must end its ffmpeg process
        assert not reader._processes
        assert sum(1 for _ in reader) == 50


def test_rotation_metadata_is_applied(tmp_path: Path, face_clip: Path) -> None:
    rotated = make_rotated_copy(face_clip, tmp_path / "rot.mp4", 90)
    info = probe_video(rotated)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (480, 640)
    frame = next(iter(read_video(rotated)))
    # ground truth: ffmpeg's own auto-rotation of the same file
    raw = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(rotated), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True)
    shown = np.frombuffer(raw.stdout, np.uint8).reshape(640, 480, 3)
    assert np.array_equal(frame, shown)


@pytest.mark.parametrize("suffix", [".webm", ".mkv", ".avi", ".gif", ".mov"])
def test_reads_common_containers(tmp_path: Path, suffix: str) -> None:
    clip = make_test_video(tmp_path / f"clip{suffix}", frames=7, fps=10, size=(64, 48))
    reader = read_video(clip)
    frames = list(reader)
    assert len(frames) == 7
    assert all(f.shape == (48, 64, 3) for f in frames)
    assert reader.info.fps == pytest.approx(10.0)


def test_reads_folder_of_frames_in_natural_order(tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):  # "10" sorts before "2" alphabetically
        img = np.full((24, 32, 3), i * 20, np.uint8)
        cv2.imwrite(str(folder / f"f{i}.{'png' if i != 2 else 'jpg'}"), img)
    (folder / "notes.txt").write_text("not a frame")
    reader = read_video(folder, folder_fps=12)
    assert (reader.info.frame_count, reader.info.fps, reader.info.width) == (3, 12, 32)
    levels = [int(f.mean().round()) for f in reader]
    assert levels == [20, 40, 200]


def test_folder_with_mixed_sizes_or_no_frames(tmp_path: Path) -> None:
    import cv2

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MediaError, match="holds no frames"):
        read_video(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "1.png"), np.zeros((10, 10, 3), np.uint8))
    cv2.imwrite(str(mixed / "2.png"), np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(MediaError, match=r"2\.png.*one size"):
        list(read_video(mixed))


# --- bad inputs ---------------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        read_video(tmp_path / "nope.mp4")


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(MediaError, match=r"empty\.mp4.*0 bytes"):
        read_video(empty)


def test_text_file_named_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my holiday notes, not a video\n" * 20)
    with pytest.raises(MediaError, match=r"notes\.mp4.*not a video"):
        probe_video(fake)


def test_truncated_mp4_without_index(tmp_path: Path, face_clip: Path) -> None:
    # without +faststart the index (moov) is written last: cutting the file loses it
    clip = make_test_video(tmp_path / "full.mp4", frames=30, size=(160, 120))
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"cut\.mp4.*truncated"):
        read_video(cut)


def test_truncated_mp4_with_index_reads_what_is_there(tmp_path: Path, face_clip: Path) -> None:
    full = make_test_video(tmp_path / "fs.mp4", frames=40, size=(160, 120), extra_args=["-movflags", "+faststart"])
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    frames = list(read_video(cut))
    assert 0 < len(frames) < 40


def test_truncated_to_header_only_raises(tmp_path: Path) -> None:
    full = make_test_video(tmp_path / "fs.mp4", frames=40, size=(160, 120), extra_args=["-movflags", "+faststart"])
    data = full.read_bytes()
    moov_end = data.index(b"mdat") + 16  # keep the index, lose every frame
    cut = tmp_path / "headonly.mp4"
    cut.write_bytes(data[:moov_end])
    with pytest.raises(MediaError, match=r"headonly\.mp4"):
        list(read_video(cut))


def test_one_frame_video(tmp_path: Path) -> None:
    clip = make_test_video(tmp_path / "one.mp4", frames=1)
    assert probe_video(clip).frame_count == 1
    assert len(list(read_video(clip))) == 1


def test_video_without_video_stream(tmp_path: Path) -> None:
    audio = make_audio_only(tmp_path / "voice.mp4")
    with pytest.raises(MediaError, match=r"voice\.mp4.*only audio"):
        read_video(audio)


# --- writing ------------------------------------------------------------------------------------

def test_write_video_round_trip_with_odd_size(tmp_path: Path) -> None:
    frames = [np.full((31, 45, 3), v, np.uint8) for v in (0, 80, 160, 240)]
    out = write_video(tmp_path / "odd.mp4", frames, fps=8, progress=False)
    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.has_audio) == (46, 32, 8.0, False)
    back = list(read_video(out))
    assert len(back) == 4
    assert [int(np.median(f[:31, :45])) for f in back] == pytest.approx([0, 80, 160, 240], abs=3)
    assert _files(tmp_path) == ["odd.mp4"]
    assert os.stat(out).st_mode & 0o044  # readable by others, like any new file (umask)


def test_faststart_puts_index_first(tmp_path: Path) -> None:
    out = write_video(tmp_path / "fs.mp4", face_clip_frames(seconds=0.4), fps=25, progress=False)
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def test_audio_is_muxed_and_fits_video_length(tmp_path: Path, face_clip: Path) -> None:
    out = write_video(tmp_path / "a.mp4", face_clip_frames(seconds=1.0), fps=25, audio_from=face_clip,
                      progress=False)
    info = probe_video(out)
    assert info.has_audio
    assert info.duration == pytest.approx(1.0, abs=0.1)  # the 2 s track was cut to the video
    samples = decode_audio(out)
    assert np.sqrt(np.mean(samples**2)) > 0.05  # the sine is there


def test_short_audio_is_padded_and_video_kept(tmp_path: Path) -> None:
    short = make_audio_only(tmp_path / "short.m4a", seconds=0.5)
    out = write_video(tmp_path / "a.mp4", face_clip_frames(seconds=2.0), fps=25, audio_from=short,
                      progress=False)
    assert len(list(read_video(out))) == 50
    assert probe_video(out).duration == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(("span", "loud"), [((0.0, 1.0), False), ((1.0, 2.0), True)])
def test_audio_span_selects_matching_audio(tmp_path: Path, span: tuple[float, float], loud: bool) -> None:
    source = make_tone_after(tmp_path / "tone.m4a", silent_s=1.0, tone_s=1.0)
    out = write_video(tmp_path / "span.mp4", face_clip_frames(seconds=0.8), fps=25, audio_from=source,
                      audio_span=span, progress=False)
    samples = decode_audio(out)
    rms = float(np.sqrt(np.mean(samples[: int(0.7 * 8000)] ** 2)))
    assert (rms > 0.1) is loud


def test_audio_source_without_audio_is_not_an_error(tmp_path: Path) -> None:
    mute = make_face_clip(tmp_path / "mute.mp4", seconds=0.4, audio=False)
    out = write_video(tmp_path / "out.mp4", face_clip_frames(seconds=0.4), fps=25, audio_from=mute,
                      progress=False)
    assert probe_video(out).has_audio is False


def test_mux_audio_in_place(tmp_path: Path, face_clip: Path) -> None:
    video = write_video(tmp_path / "v.mp4", face_clip_frames(seconds=0.6), fps=25, progress=False)
    assert mux_audio(video, face_clip) == video
    assert probe_video(video).has_audio
    assert _files(tmp_path) == ["v.mp4"]


def test_exception_while_writing_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError), VideoWriter(target, fps=25) as writer:
        for i, frame in enumerate(face_clip_frames(seconds=0.4)):
            writer.write(frame)
            if i == 3:
                raise RuntimeError("animation crashed")
    assert target.read_bytes() == b"previous result"
    assert _files(tmp_path) == ["out.mp4"]


def test_frame_size_change_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="earlier frames are 32x24"), VideoWriter(tmp_path / "x.mp4", 10) as w:
        w.write(np.zeros((24, 32, 3), np.uint8))
        w.write(np.zeros((48, 64, 3), np.uint8))
    assert _files(tmp_path) == []


def test_ffmpeg_failure_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "bad.mp4", fps=10, preset="no-such-preset")  # libx264 refuses it
    with pytest.raises(MediaError, match=r"bad\.mp4"):
        with writer:
            for _ in range(50):
                writer.write(np.zeros((64, 64, 3), np.uint8))
    assert _files(tmp_path) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"path": "x.avi", "fps": 25}, "unsupported extension"),
    ({"path": "x.mp4", "fps": 0}, "positive frame rate"),
    ({"path": "x.mp4", "fps": 25, "audio_span": (2.0, 1.0)}, "start < end"),
])
def test_writer_argument_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(MediaError, match=message):
        VideoWriter(**kwargs)


def test_no_frames_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="No frames"):
        write_video(tmp_path / "none.mp4", [], fps=25, progress=False)
    assert _files(tmp_path) == []


def test_bad_frame_dtype(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="uint8"), VideoWriter(tmp_path / "f.mp4", 10) as w:
        w.write(np.zeros((8, 8, 3), np.float32))


def test_make_y4m_header_and_frames(tmp_path: Path) -> None:
    frames = list(face_clip_frames(seconds=0.2, size=(64, 48)))
    y4m = make_y4m(tmp_path / "cam.y4m", frames, fps=25)
    data = y4m.read_bytes()
    assert data.startswith(b"YUV4MPEG2 W64 H48 F25:1")
    assert data.count(b"FRAME\n") == len(frames)
    back = list(read_video(y4m))  # ffmpeg reads it back as the same pictures
    assert len(back) == len(frames)
    assert np.abs(back[0].astype(int) - frames[0]).mean() < 6
