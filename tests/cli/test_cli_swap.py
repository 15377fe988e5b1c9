"""``fomm-lab swap`` on real media and the tiny segment model: a thin layer over the same session as the API (the
same frames), the target's sound kept, errors on one line in flags, flags generated from the table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clips import make_face_clip, make_test_video
from test_cli import assert_one_line_error

from fomm_lab import FaceSwapOptions, SwapJob
from fomm_lab.cli import main
from fomm_lab.cli.parser import build_parser
from fomm_lab.io import probe_video, read_image
from fomm_lab.io.image import save_png
from fomm_lab.options import options_of
from fomm_lab.pipeline import CropOptions, OutputOptions, RuntimeOptions, run_swap_job

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "swap-golden"
YAML, SEGMENTS = GOLDEN / "tiny-vox-10segments.yaml", GOLDEN / "tiny-vox-10segments.pth.tar"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the fixtures were made on one thread


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("swap-cli-media")
    return {"photo": save_png(folder / "photo.png", astronaut),
            "target": make_face_clip(folder / "target.mp4", seconds=0.5, fps=10, size=(320, 240), audio=True,
                                     motion=False),
            "faceless": make_test_video(folder / "faceless.mp4", frames=5, fps=10, size=(320, 240))}


def swap(media, output: Path, *extra: str, target: str = "target", checkpoint: Path = SEGMENTS) -> int:
    return main(["swap", "--source", str(media["photo"]), "--target", str(media[target]), "--config", str(YAML),
                 "--checkpoint", str(checkpoint), "--no-supervised", "--detector", "haar", "--device", "cpu",
                 "--dtype", "float32", "--output", str(output), "-q", *extra])


def png_frames(folder: Path) -> np.ndarray:
    return np.stack([read_image(p, max_size=None) for p in sorted(folder.glob("*.png"))])


def test_the_cli_and_the_api_write_the_same_frames(media, tmp_path):
    assert swap(media, tmp_path / "cli", "--parts", "1,3", "--hard-mask") == 0
    job = SwapJob(source=media["photo"], target=media["target"],
                  swap=FaceSwapOptions(config=YAML, checkpoint=SEGMENTS, supervised=False, parts=(1, 3),
                                       hard_mask=True),
                  crop=CropOptions(detector="haar"), runtime=RuntimeOptions(device="cpu", dtype="float32"),
                  output=OutputOptions(video=tmp_path / "api"))
    result = run_swap_job(job, progress=False)
    cli, api = png_frames(tmp_path / "cli"), png_frames(tmp_path / "api")
    assert cli.shape == (5, 240, 320, 3) and result.swapped == 5
    np.testing.assert_array_equal(cli, api)


def test_the_cli_keeps_the_targets_sound_unless_told(media, tmp_path, capsys):
    assert swap(media, tmp_path / "out.mp4") == 0
    assert "wrote" in capsys.readouterr().out
    info = probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height) == (320, 240) and info.has_audio
    assert swap(media, tmp_path / "silent.mp4", "--no-audio") == 0
    assert not probe_video(tmp_path / "silent.mp4").has_audio


def test_an_animation_checkpoint_is_one_line_naming_the_file(media, tmp_path, capsys):
    fomm = GOLDEN / "tiny-vox-first-order.pth.tar"
    assert swap(media, tmp_path / "out.mp4", checkpoint=fomm) == 1
    assert_one_line_error(capsys.readouterr().err, str(fomm), "First Order Motion Model checkpoint")
    assert list(tmp_path.iterdir()) == []


def test_a_target_without_a_face_offers_the_target_box_flag(media, tmp_path, capsys):
    assert swap(media, tmp_path / "out.mp4", target="faceless") == 1
    assert_one_line_error(capsys.readouterr().err, "face track in the target video", "--target-box X0 Y0 X1 Y1")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_part_list_is_a_usage_error(media, tmp_path, capsys):
    assert swap(media, tmp_path / "out.mp4", "--parts", "1,x") == 2
    assert "part numbers" in capsys.readouterr().err


def test_the_swap_flags_are_the_tables():
    parser = build_parser()
    command = parser._subparsers._group_actions[0].choices["swap"]
    flags = {s for action in command._actions for s in action.option_strings}
    ours = options_of("swap")
    table = {o.flag for o in ours} | {flag for o in ours for flag, _ in o.extra_flags}
    negations = {"--no-" + o.flag[2:] for o in ours if o.negatable and o.flag}
    own = {"-h", "--help", "--debug", "-v", "--verbose", "-q", "--quiet", "--source", "--target"}
    assert flags == table | negations | own
    assert {"--parts", "--supervised", "--no-supervised", "--hard-mask", "--source-segmentation", "--face-index",
            "--parser", "--motion-checkpoint", "--side-by-side", "--gif", "--enhance"} <= flags
