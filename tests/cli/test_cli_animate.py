"""``fomm-lab animate`` on the tiny golden checkpoint and real clips.

Where the output is a folder of PNG frames (lossless), the command's frames are compared with what
the library computes for the same options: the CLI must be a faithful, thin layer over it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clips import make_face_clip, photo_and_clip
from test_cli import assert_one_line_error, run_module

from fomm_lab import Animator
from fomm_lab.cli import main
from fomm_lab.faces import DEFAULT_PADDING, HaarDetector, crop_photo, paste_back, plan_video_crop
from fomm_lab.hub.registry import MODELS
from fomm_lab.io import probe_video, read_image, read_video, resize_to_model

SIZE = (256, 256)


@pytest.fixture(autouse=True)
def _no_face_alignment_weights(tmp_path_factory, monkeypatch):
    """An empty torch hub: face-alignment's weights are missing, as on a fresh machine (and the
    user's cache stays untouched); face boxes then come from OpenCV's Haar cascades."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    return photo_and_clip(tmp_path_factory.mktemp("animate-media"), seconds=0.4)


def model_args(tiny_vox) -> list[str]:
    return ["--config", str(tiny_vox[0]), "--checkpoint", str(tiny_vox[1]), "--device", "cpu"]


PLAIN = ["--no-crop-source", "--no-crop-driving", "--smoothing", "0", "--dtype", "float32"]
"""Options that make the command compute exactly what a bare ``Animator`` does (later flags override)."""


def animate(media, output, tiny_vox, *extra, plain: bool = True) -> int:
    return main(["animate", "--source", str(media["photo"]), "--driving", str(media["driving"]),
                 "--output", str(output), *model_args(tiny_vox), "-q", *(PLAIN if plain else []), *extra])


def png_frames(folder: Path) -> np.ndarray:
    return np.stack([read_image(p, max_size=None) for p in sorted(folder.glob("*.png"))]).astype(np.int16)


def library_frames(model, source, driving_path, best_frame=None, **options) -> np.ndarray:
    """What the library makes of ``source`` (already at model size) and the driving clip."""
    driving = [resize_to_model(f, SIZE, mode="crop") for f in read_video(driving_path)]
    frames = Animator(model, dtype="float32", smoothing=0, **options).animate(source, driving, best_frame=best_frame)
    return np.stack(list(frames)).astype(np.int16)


@pytest.fixture(scope="module")
def default_frames(tiny_model, media) -> np.ndarray:
    return library_frames(tiny_model, resize_to_model(read_image(media["photo"]), SIZE), media["driving"])


@pytest.mark.parametrize(
    ("flags", "options"),
    [
        ([], {}),
        (["--absolute"], {"relative": False}),
        (["--no-adapt-scale"], {"adapt_scale": False}),
        (["--best-frame", "2"], {"best_frame": 2}),
        (["--batch-size", "3"], {"batch_size": 3}),
    ],
)
def test_frames_match_the_library(flags, options, media, tiny_vox, tiny_model, default_frames, tmp_path):
    assert animate(media, tmp_path / "frames", tiny_vox, *flags) == 0
    got = png_frames(tmp_path / "frames")
    source = resize_to_model(read_image(media["photo"]), SIZE)
    expected = library_frames(tiny_model, source, media["driving"], **options)
    assert got.shape == (4, 256, 256, 3)
    assert np.abs(got - expected).max() <= 1
    if flags and flags[0] != "--batch-size":  # the option changes the result
        assert np.abs(expected - default_frames).mean() > 0.1


def test_bfloat16_is_close_to_float32(media, tiny_vox, default_frames, tmp_path):
    assert animate(media, tmp_path / "frames", tiny_vox, "--dtype", "bfloat16") == 0
    assert np.abs(png_frames(tmp_path / "frames") - default_frames).mean() < 3


@pytest.mark.slow
def test_compiled_equals_eager(media, tiny_vox, default_frames, tmp_path):
    assert animate(media, tmp_path / "frames", tiny_vox, "--compile") == 0
    assert np.abs(png_frames(tmp_path / "frames") - default_frames).max() <= 1


@pytest.mark.parametrize("no_audio", [False, True])
def test_mp4_output_with_the_driving_sound(no_audio, media, tiny_vox, default_frames, tmp_path, capsys):
    out = tmp_path / "result.mp4"
    argv = ["animate", "--source", str(media["photo"]), "--driving", str(media["driving"]),
            "--output", str(out), *model_args(tiny_vox), *PLAIN] + (["--no-audio"] if no_audio else [])
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "animating" in captured.err  # the progress bar
    assert f"wrote {out} (4 frames at 10 fps)" in captured.out
    info = probe_video(out)
    assert (info.width, info.height, info.fps) == (256, 256, 10)
    assert info.has_audio is (not no_audio)
    decoded = np.stack(list(read_video(out))).astype(np.int16)
    assert decoded.shape == (4, 256, 256, 3)
    assert np.abs(decoded - default_frames).mean() < 3  # H.264 at crf 18


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("padding", [None, (0.0, 0.0, 0.0, 0.0)])
def test_paste_back_into_the_full_photo(padding, media, tiny_vox, tiny_model, tmp_path):
    extra = ["--paste-back", "--crop-source"] + (["--crop-padding", *map(str, padding)] if padding else [])
    assert animate(media, tmp_path / "frames", tiny_vox, *extra) == 0
    got = png_frames(tmp_path / "frames")
    photo = read_image(media["photo"])
    crop = crop_photo(photo, padding=padding or DEFAULT_PADDING, detector=HaarDetector(), size=256)
    faces = library_frames(tiny_model, crop.image, media["driving"])
    expected = np.stack([paste_back(photo, f, crop.box.as_tuple()) for f in faces.astype(np.uint8)])
    assert got.shape == (4, *photo.shape)
    assert np.abs(got - expected).max() <= 1
    x0, y0, x1, y1 = crop.box.as_ints()
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (got[:, outside] == photo[outside]).all()  # the rest of the photo is untouched
    assert np.abs(got[:, y0:y1, x0:x1] - photo[y0:y1, x0:x1]).mean() > 5


def test_defaults_agree_with_the_pipeline(media, tiny_vox, tiny_model, tmp_path):
    """The command with its defaults (face crops, auto dtype, smoothing) computes what
    ``fomm_lab.pipeline.run_job`` computes for the same job: the CLI adds no flow of its own."""
    from fomm_lab.pipeline import AnimateJob, OutputOptions, run_job

    assert animate(media, tmp_path / "cli", tiny_vox, plain=False) == 0
    job = AnimateJob(source=media["photo"], driving=media["driving"], model=tiny_vox[0], checkpoint=tiny_vox[1],
                     output=OutputOptions(video=tmp_path / "api"))
    result = run_job(job, model=tiny_model, progress=False)
    assert result.frames == 4
    assert np.array_equal(png_frames(tmp_path / "cli"), png_frames(tmp_path / "api"))


def test_crop_source_animates_the_face_crop(media, tiny_vox, tiny_model, tmp_path):
    assert animate(media, tmp_path / "frames", tiny_vox, "--crop-source") == 0
    crop = crop_photo(read_image(media["photo"]), detector=HaarDetector(), size=256)
    expected = library_frames(tiny_model, crop.image, media["driving"])
    assert np.abs(png_frames(tmp_path / "frames") - expected).max() <= 1


@pytest.mark.slow
def test_crop_driving_uses_the_longest_face_track(media, tiny_vox, tiny_model, tmp_path, capsys):
    assert animate(media, tmp_path / "frames", tiny_vox, "--crop-driving", "--verbose") == 0
    assert "track 1: frames 0-3" in capsys.readouterr().out  # the plan is shown
    plan = plan_video_crop(media["driving"], detector=HaarDetector(), progress=False, size=256)
    cropped = plan.write(tmp_path / "driving-crop.mp4")
    expected = library_frames(tiny_model, resize_to_model(read_image(media["photo"]), SIZE), cropped)
    assert np.abs(png_frames(tmp_path / "frames") - expected).max() <= 1


def test_find_best_frame_without_face_alignment_weights(media, tiny_vox, tmp_path, capsys):
    assert animate(media, tmp_path / "out.mp4", tiny_vox, "--find-best-frame") == 1
    assert_one_line_error(capsys.readouterr().err, "best frame needs face-alignment", "--download-face-weights",
                          "--best-frame 0")
    assert list(tmp_path.iterdir()) == []


def test_best_frame_past_the_end(media, tiny_vox, tmp_path, capsys):
    assert animate(media, tmp_path / "out.mp4", tiny_vox, "--best-frame", "10") == 1
    assert_one_line_error(capsys.readouterr().err, "best frame 10", "4 frames", "--best-frame 3")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_side_by_side_and_gif(media, tiny_vox, tmp_path):
    out, sbs, gif = tmp_path / "result.mp4", tmp_path / "sbs.mp4", tmp_path / "result.gif"
    assert animate(media, out, tiny_vox, "--side-by-side", str(sbs), "--gif", str(gif)) == 0
    info = probe_video(sbs)
    assert info.width >= 3 * 256 and info.height >= 256
    assert info.has_audio
    assert sum(1 for _ in read_video(sbs)) == 4
    from PIL import Image

    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames >= 4 and image.size == (256, 256)


def test_a_failed_write_leaves_no_output(media, tiny_vox, tmp_path, capsys):
    from PIL import Image

    frames = tmp_path / "driving"
    frames.mkdir()
    for i, frame in enumerate(read_video(media["driving"])):
        Image.fromarray(frame if i != 2 else frame[:100]).save(frames / f"{i}.png")
    out = tmp_path / "out" / "result.mp4"
    out.parent.mkdir()
    argv = ["animate", "--source", str(media["photo"]), "--driving", str(frames), "--output", str(out),
            *model_args(tiny_vox), "-q"]
    assert main(argv) == 1
    assert_one_line_error(capsys.readouterr().err, "2.png")
    assert list(out.parent.iterdir()) == []


def test_registry_checkpoint_that_does_not_fit(media, tmp_path, tiny_vox, capsys):
    """A registry name uses the cached file (no network); a wrong file gets a clear error."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / MODELS["vox"].filename).write_bytes(tiny_vox[1].read_bytes())
    argv = ["animate", "--source", str(media["photo"]), "--driving", str(media["driving"]),
            "--output", str(tmp_path / "o.mp4"), "--config", "vox", "--cache-dir", str(cache), "--device", "cpu"]
    assert main(argv) == 1
    assert_one_line_error(capsys.readouterr().err, "does not fit config vox-256", "--config CONFIG.yaml")


@pytest.mark.slow
def test_through_python_dash_m(media, tiny_vox, tmp_path):
    out = tmp_path / "result.mp4"
    result = run_module("animate", "--source", str(media["photo"]), "--driving", str(media["driving"]),
                        "--output", str(out), *model_args(tiny_vox),
                        "--side-by-side", str(tmp_path / "sbs.mp4"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"wrote {out}" in result.stdout
    assert probe_video(out).has_audio
    assert (tmp_path / "sbs.mp4").is_file()


@pytest.mark.slow
def test_stopping_mid_clip_leaves_no_output(tiny_vox, tmp_path):
    """SIGTERM (``docker stop``, ``kill``) while frames are being written: exit 130, nothing left."""
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "photo.png")
    driving = make_face_clip(tmp_path / "long.mp4", seconds=8, fps=25, size=(160, 120), audio=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fomm_lab", "animate", "--source", str(tmp_path / "photo.png"),
         "--driving", str(driving), "--output", str(out_dir / "result.mp4"), *model_args(tiny_vox), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not any(out_dir.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # until the writer has started its temporary file
        assert proc.poll() is None, "the command ended before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "fomm-lab: interrupted"
    assert list(out_dir.iterdir()) == []
