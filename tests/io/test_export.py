"""fomm_lab.export on real clips: side-by-side with captions and audio, GIF size cap, PNG frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clips import face_clip_frames, face_patch, make_face_clip
from PIL import Image

from fomm_lab.errors import MediaError
from fomm_lab.io import make_gif, probe_video, read_video, save_png_frames, side_by_side
from fomm_lab.io.export import caption_strip


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_face_clip(tmp_path_factory.mktemp("clip") / "face.mp4", seconds=1.0)


def test_side_by_side_layout_captions_and_audio(tmp_path: Path, face_clip: Path) -> None:
    source = face_patch(256)                                  # one photo, repeated
    driving = read_video(face_clip)                           # 640x480 -> 341x256
    result = (np.full((256, 256, 3), 200, np.uint8) for _ in range(100))  # longer than driving
    out = side_by_side(tmp_path / "sbs.mp4", [source, driving, result],
                       captions=["source", "driving", "result"], fps=25, audio_from=face_clip,
                       progress=False)
    info = probe_video(out)
    strip = 256 // 10
    assert (info.width, info.height) == (854, 282)  # 256 + 341 + 256 by 256 + 25, padded to even
    assert info.has_audio
    frames = list(read_video(out))
    assert len(frames) == 25  # ends with the shortest column
    first = frames[0].astype(int)
    assert np.abs(first[strip:strip + 256, :256] - face_patch(256)).mean() < 6  # source tile
    assert np.abs(first[strip:strip + 256, 256 + 341:853] - 200).mean() < 3   # result tile
    captions = first[:strip]
    assert captions.max() > 200 and np.median(captions) < 20             # white text on black


def test_side_by_side_argument_errors(tmp_path: Path) -> None:
    img = face_patch(64)
    with pytest.raises(MediaError, match="one caption per column"):
        side_by_side(tmp_path / "x.mp4", [img, [img]], captions=["a"], progress=False)
    with pytest.raises(MediaError, match="single image"):
        side_by_side(tmp_path / "x.mp4", [img, img], progress=False)
    assert list(tmp_path.iterdir()) == []


def test_caption_strip_fits_long_text() -> None:
    strip = caption_strip("a very long caption that would not fit", 80, 20)
    assert strip.shape == (20, 80, 3)
    assert strip[:, 0].max() < 50 and strip[:, -1].max() < 50  # text kept off the edges


def test_gif_from_video(tmp_path: Path, face_clip: Path) -> None:
    out = make_gif(face_clip, tmp_path / "a.gif", fps=10, width=160, progress=False)
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.size == (160, 120)
        assert gif.n_frames == 10
        assert gif.info.get("loop") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]


def test_gif_never_upscales(tmp_path: Path) -> None:
    frames = [np.full((40, 60, 3), v, np.uint8) for v in range(0, 250, 50)]
    out = make_gif(frames, tmp_path / "small.gif", fps=5, width=512, source_fps=5, progress=False)
    with Image.open(out) as gif:
        assert gif.size == (60, 40) and gif.n_frames == 5


def test_gif_size_cap(tmp_path: Path, face_clip: Path) -> None:
    free = make_gif(face_clip, tmp_path / "free.gif", fps=12, width=480, progress=False).stat().st_size
    cap = free // 3
    capped = make_gif(face_clip, tmp_path / "capped.gif", fps=12, width=480, max_bytes=cap, progress=False)
    assert capped.stat().st_size <= cap
    with Image.open(capped) as gif:
        assert 64 <= gif.size[0] < 480


def test_gif_impossible_cap_leaves_nothing(tmp_path: Path, face_clip: Path) -> None:
    with pytest.raises(MediaError, match="smaller than 100 bytes"):
        make_gif(face_clip, tmp_path / "tiny.gif", max_bytes=100, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_png_frames_are_lossless(tmp_path: Path) -> None:
    frames = list(face_clip_frames(seconds=0.2, size=(96, 64)))
    folder = save_png_frames(frames, tmp_path / "pngs", progress=False)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{i:06d}.png" for i in range(len(frames))]
    back = list(read_video(folder))
    assert all(np.array_equal(a, b) for a, b in zip(frames, back))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pngs"]


def test_png_frames_refuse_non_empty_folder_and_clean_up(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(MediaError, match="not an empty folder"):
        save_png_frames([np.zeros((4, 4, 3), np.uint8)], taken, progress=False)

    def broken():
        yield np.zeros((4, 4, 3), np.uint8)
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        save_png_frames(broken(), tmp_path / "new", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
