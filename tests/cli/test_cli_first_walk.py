"""Issue 28 through the command line, as a first-time user meets it: weights are never silently random, faces have
one numbering, download failures read in a few words, and the small points (models' sizes, a photo given to
``crop``, a GIF given to ``--output``)."""

from __future__ import annotations

import dataclasses
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from clips import _background, face_patch, make_face_clip
from PIL import Image
from test_cli import assert_one_line_error

from fomm_lab.cli import main
from fomm_lab.hub import registry
from fomm_lab.hub.registry import MODELS, Mirror, gdrive_mirror, yandex_mirror
from fomm_lab.io import read_image


@pytest.fixture(autouse=True)
def _no_face_alignment_weights(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory) -> Path:
    """The astronaut's face three times on 960x400: small on the left, large in the middle, middle-sized right."""
    canvas = _background(960, 400).copy()
    for x, y, side in ((40, 120, 180), (330, 40, 320), (700, 100, 220)):
        canvas[y:y + side, x:x + side] = np.asarray(Image.fromarray(face_patch()).resize((side, side), Image.LANCZOS))
    path = tmp_path_factory.mktemp("group") / "group.png"
    Image.fromarray(canvas).save(path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_face_clip(tmp_path_factory.mktemp("walk-clip") / "clip.mp4", seconds=1.2, fps=10, size=(320, 240))


# -------------------------------------------------------------------------------- 3: random weights only when asked


def test_a_config_without_weights_is_refused_before_any_work(group_photo, clip, tiny_vox, tmp_path, capsys):
    started = time.monotonic()
    code = main(["animate", "--source", str(group_photo), "--driving", str(clip), "--output", str(tmp_path / "o.mp4"),
                 "--config", str(tiny_vox[0])])
    assert code == 1 and time.monotonic() - started < 5
    text = assert_one_line_error(capsys.readouterr().err, "comes without weights", "--checkpoint FILE",
                                 "--random-weights")
    assert "fomm-lab: fomm_lab" not in text and not (tmp_path / "o.mp4").exists()


# -------------------------------------------------------------------------------- 4: one face numbering


def _faces_line(out: str) -> list[tuple[int, int]]:
    """(face number, x0) of each face in the printed ``photo: ... face N at x0=...`` line."""
    line = next(line for line in out.splitlines() if line.startswith("photo:"))
    return [(int(n), int(x)) for n, x in re.findall(r"face (\d+) at x0=(\d+)", line)]


@pytest.mark.slow
def test_faces_are_numbered_left_to_right_everywhere_and_one_index_pastes_back(group_photo, clip, tiny_vox,
                                                                              tmp_path, capsys):
    model = ["--config", str(tiny_vox[0]), "--checkpoint", str(tiny_vox[1]), "--device", "cpu", "--detector", "haar",
             "--crop-source", "--crop-driving", "--smoothing", "0", "--dtype", "float32"]
    photo = read_image(group_photo, max_size=None)

    assert main(["animate", "--source", str(group_photo), "--driving", str(clip), "--output", str(tmp_path / "all"),
                 "--multi-face", *model]) == 0
    everyone = _faces_line(capsys.readouterr().out)
    assert [n for n, _ in everyone] == [0, 1, 2]  # --multi-face lists them in the one numbering
    assert [x for _, x in everyone] == sorted(x for _, x in everyone)  # ... which is left to right

    assert main(["animate", "--source", str(group_photo), "--driving", str(clip), "--output", str(tmp_path / "one"),
                 "--face-index", "0", *model]) == 0
    one = _faces_line(capsys.readouterr().out)
    assert one == everyone[:1]  # face 0 is the leftmost, the small one (not the largest)
    frames = sorted((tmp_path / "one").glob("*.png"))
    assert read_image(frames[0], max_size=None).shape == photo.shape  # one index pastes back, like 0,1

    assert main(["animate", "--source", str(group_photo), "--driving", str(clip), "--output", str(tmp_path / "big"),
                 *model]) == 0
    assert _faces_line(capsys.readouterr().out) == everyone[1:2]  # the default, the largest, is face 1


def test_a_face_number_out_of_range_names_the_numbering(group_photo, clip, tiny_vox, tmp_path, capsys):
    code = main(["animate", "--source", str(group_photo), "--driving", str(clip), "--output", str(tmp_path / "o.mp4"),
                 "--config", str(tiny_vox[0]), "--checkpoint", str(tiny_vox[1]), "--device", "cpu",
                 "--detector", "haar", "--crop-source", "--face-index", "5"])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, "has 3 face(s), numbered 0 to 2 from left to right")


# -------------------------------------------------------------------------------- 7: download errors


def _dead(path: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def test_a_failed_download_lists_each_mirror_once_in_a_few_words(tmp_path, monkeypatch, capsys):
    """vox's mirrors as the registry has them (its own file, PaddleGAN's other format, share-link mirrors, the
    authors' folders), all unreachable."""
    own, paddle = _dead("/vox-cpk.pth.tar"), _dead("/vox-cpk.pdparams")
    yandex = yandex_mirror("https://yadi.sk/d/example", note="a Yandex Disk copy")
    gdrive = gdrive_mirror("abc", note="a Google Drive copy")
    mirrors = (Mirror(own), Mirror(paddle, note="PaddleGAN's conversion", format="pdparams"),
               dataclasses.replace(yandex, url=_dead("/v1/disk/public/resources/download?public_key=x")),
               dataclasses.replace(gdrive, url=_dead("/uc?export=download&id=abc")),
               Mirror("https://example.org/folder", "manual", "the authors' folder"))
    monkeypatch.setitem(registry.MODELS, "vox", dataclasses.replace(MODELS["vox"], mirrors=mirrors))
    assert main(["download", "vox", "--cache-dir", str(tmp_path), "-q"]) == 1
    text = assert_one_line_error(capsys.readouterr().err, "could not download the 'vox' checkpoint")
    tried = [line for line in text.splitlines() if line.startswith("    - http://127.0.0.1")
             or line.startswith("    - 127.0.0.1")]
    assert len(tried) == 4, text  # each mirror once (PaddleGAN's used to be tried twice)
    assert sum(paddle in line for line in tried) == 1
    for line in tried:
        assert "cannot connect to 127.0.0.1" in line and len(line) < 160, line
    for raw in ("HTTPConnectionPool", "Max retries", "Caused by", "NewConnectionError", "Errno"):
        assert raw not in text
    assert f"or put its copy in another format, vox-cpk.pdparams (from {paddle}), as it is, at " \
           f"{tmp_path / 'vox-cpk.pdparams'}" in text  # a place to put a file, not a file that exists
    assert "https://example.org/folder (the authors' folder)" in text
    assert "`fomm-lab download vox --url URL`" in text


# -------------------------------------------------------------------------------- 10: small points


def test_crop_refuses_a_photo_and_says_what_crops_photos(group_photo, tmp_path, capsys):
    assert main(["crop", str(group_photo), "--output", str(tmp_path / "c.mp4")]) == 1
    assert_one_line_error(capsys.readouterr().err, "is a photo", "fomm-lab animate")
    assert not (tmp_path / "c.mp4").exists()


def test_a_gif_given_to_output_points_to_gif(group_photo, clip, tmp_path, capsys):
    assert main(["animate", "--source", str(group_photo), "--driving", str(clip),
                 "--output", str(tmp_path / "x.gif")]) == 1
    assert_one_line_error(capsys.readouterr().err, f"--gif {tmp_path / 'x.gif'}")


def test_models_shows_no_question_marks(tmp_path, capsys):
    assert main(["models", "--cache-dir", str(tmp_path)]) == 0
    assert "?" not in capsys.readouterr().out
