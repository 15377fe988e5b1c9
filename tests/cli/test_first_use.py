"""The lab and the CLI as a first-time user meets them: fast errors in few words, advice in the words of
where the user is, warnings said once, plans that match what is written, normal file modes, exact
progress totals, the precision chosen said aloud, recordings that start with a good frame."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clips import photo_and_clip
from test_cli_lab import free_port, lab_env, wait_for_url

from fomm_lab.cli import main, render_error
from fomm_lab.errors import NoFaceError
from fomm_lab.io import read_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_face_alignment_weights(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    return photo_and_clip(tmp_path_factory.mktemp("first-use"), seconds=2)


def run(*args: str, cwd: Path | None = None, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "fomm_lab", *args], capture_output=True, text=True, cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=300)
    return result, time.monotonic() - start


# ------------------------------------------------------------------------------------- fail fast


@pytest.mark.parametrize(("change", "needle"), [
    (("--source", "nope.png"), "image 'nope.png' does not exist"),
    (("--driving", "nope.mp4"), "video 'nope.mp4' does not exist"),
    (("--output", "result.avi"), "unsupported extension"),
    (("--gif", "result.mp4"), "ending in .gif"),
    (("--best-frame", "500"), "best frame 500 is past the end of the driving clip (about 20 frames)"),
    (("--config", "vox-2566"), "unknown model 'vox-2566'"),
    (("--output", "no/such/folder/out.mp4"), "folder no/such/folder does not exist"),
])
def test_mistakes_are_reported_within_two_seconds(change, needle, media, tiny_vox, tmp_path):
    args = {"--source": str(media["photo"]), "--driving": str(media["driving"]), "--output": "out.mp4",
            "--config": str(tiny_vox[0]), "--checkpoint": str(tiny_vox[1])}
    extra: list[str] = []
    if change[0] in args:
        args[change[0]] = change[1]
    else:
        extra = list(change)
    if change[0] == "--config":
        args.pop("--checkpoint")
    argv = [word for pair in args.items() for word in pair] + extra
    result, seconds = run("animate", *argv, "-q", cwd=tmp_path)
    assert result.returncode == 1
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "model " not in result.stdout
    assert seconds < 2.0, f"{seconds:.2f} s from command to error"
    assert list(tmp_path.iterdir()) == []


def test_checking_a_job_does_not_import_torch(media, tiny_vox, tmp_path):
    code = ("import sys\nfrom pathlib import Path\nfrom fomm_lab.pipeline import AnimateJob, OutputOptions, check_job\n"
            f"check_job(AnimateJob(source=Path({str(media['photo'])!r}), driving=Path({str(media['driving'])!r}), "
            f"model={str(tiny_vox[0])!r}, checkpoint=Path({str(tiny_vox[1])!r}), output=OutputOptions(video=Path({str(tmp_path / 'o.mp4')!r}))))\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.strip() == "False", result.stderr


# -------------------------------------------------------------------------------- few words


def test_the_offline_download_error_is_short_with_details_after(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port where nothing listens: "no network"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["download", "vox", "--url", f"http://127.0.0.1:{port}/vox-cpk.pth.tar", "--cache-dir",
                 str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("fomm-lab: error: could not download the 'vox' checkpoint (vox-cpk.pth.tar) from any mirror: "
                        "fetch it from another address (`fomm-lab download vox --url URL`).")
    assert all(line.startswith("  ") for line in lines[1:]) and len(lines) <= 6
    assert any(str(tmp_path / "vox-cpk.pth.tar") in line for line in lines[1:])


def test_a_mismatch_says_what_to_do_first(golden_dir, capsys, media, tmp_path):
    assert main(["animate", "--source", str(media["photo"]), "--driving", str(media["driving"]), "--output",
                 str(tmp_path / "o.mp4"), "--config", str(golden_dir / "tiny-vox.yaml"), "--checkpoint",
                 str(golden_dir / "tiny-mgif-cpk.pth.tar"), "-q"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert "no shipped config fits it: give the yaml config it was trained with (--config CONFIG.yaml)" in lines[0]
    paths = len(str(golden_dir / "tiny-vox.yaml")) + len(str(golden_dir / "tiny-mgif-cpk.pth.tar"))
    assert len(lines[0]) - paths < 200  # short, wherever the clone lies
    assert lines[1].startswith("  kp_detector: shape (file vs config) (2):")


# ------------------------------------------------------------- advice in the shell's own words


def test_advice_is_worded_for_each_shell(capsys):
    from fomm_lab.lab.notebook import NotebookLab, notebook_words

    error = NoFaceError("no face was found in me.jpg by the haar detector", remedies=[
        __import__("fomm_lab.errors", fromlist=["Remedy"]).Remedy("animate the whole photo ({})", "crop.source",
                                                                  False)])
    assert str(error).endswith("animate the whole photo (CropOptions(source=False)).")
    assert render_error(error).endswith("animate the whole photo (--no-crop-source).")
    assert error.first_line(notebook_words).endswith(
        "animate the whole photo (set CROP_SOURCE = False in the parameters cell).")
    with NotebookLab().step("Cropping the photo"):
        raise error
    printed = capsys.readouterr().out
    assert printed.startswith("Cropping the photo did not work: no face was found") and "CROP_SOURCE = False" in printed


def test_the_missing_weights_warning_is_said_once_in_flags(media, tiny_vox, tmp_path):
    result, _ = run("animate", "--source", str(media["photo"]), "--driving", str(media["driving"]),
                    "--output", str(tmp_path / "o.mp4"), "--config", str(tiny_vox[0]), "--checkpoint",
                    str(tiny_vox[1]), "-q", TORCH_HOME=str(tmp_path / "torch"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1, result.stderr
    assert "Haar cascades" in warnings[0] and "(--download-face-weights)" in warnings[0]
    assert "download_face_weights=True" not in result.stderr  # no Python advice in a shell


def test_the_notebook_offline_warning_names_its_parameter(tmp_path, capsys):
    from fomm_lab.lab.notebook import NotebookLab

    lab = NotebookLab()
    lab.configure(config="vox-256", checkpoint=None, device="cpu", dtype="float32", source_image="x.png",
                  output_dir=str(tmp_path), interactive=False, download_face_weights=False)
    lab.detector()
    lab.detector()  # a second crop: nothing said again
    out = capsys.readouterr().out
    assert out.count("Haar cascades") == 1
    assert "set DOWNLOAD_FACE_WEIGHTS = True in the parameters cell" in out


# ------------------------------------------------------------------------ crop plans as written


def test_all_tracks_plan_names_every_file_as_written(tmp_path, capsys):
    from clips import face_patch
    from PIL import Image

    from fomm_lab.io import write_video

    # two faces side by side: two tracks
    patch = np.asarray(Image.fromarray(face_patch()).resize((110, 110)))
    frames = []
    for i in range(30):
        frame = np.full((240, 360, 3), 90, np.uint8)
        frame[60:170, 20 + i // 3:130 + i // 3] = patch
        frame[60:170, 220:330] = patch[:, ::-1]
        frames.append(frame)
    clip = write_video(tmp_path / "two.mp4", frames, fps=10, progress=False)
    out = tmp_path / "faces" / "track.mp4"
    out.parent.mkdir()
    assert main(["crop", str(clip), "--output", str(out), "--all-tracks", "--min-frames", "5", "-q"]) == 0
    printed = capsys.readouterr().out
    written = sorted(out.parent.iterdir())
    assert [p.name for p in written] == ["track-1.mp4", "track-2.mp4"]
    commands = [line for line in printed.splitlines() if "ffmpeg" in line]
    assert len(commands) == 2
    for number, command in enumerate(commands, 1):
        assert str(out.parent / f"track-{number}.mp4") in command.split()
    assert "track 1:" in printed and "track 2:" in printed
    assert f"wrote {written[0]}" in printed and f"wrote {written[1]}" in printed
    mask = os.umask(0)
    os.umask(mask)
    assert all((p.stat().st_mode & 0o777) == (0o666 & ~mask) for p in written)  # the user's normal mode


# ------------------------------------------------------------------------------- the lab server


@pytest.mark.slow
def test_lab_as_root_says_allow_root(tmp_path):
    """Jupyter refuses root: the hint says --allow-root (run in a user namespace as uid 0, whoever runs CI)."""
    import nbformat

    (tmp_path / "notebooks").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "notebooks" / "demo.ipynb")
    port = free_port()
    result = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-m", "fomm_lab", "lab",
                             "--port", str(port), "--no-browser", "--notebook", str(tmp_path / "notebooks" / "demo.ipynb")],
                            capture_output=True, text=True, timeout=180,
                            env={**lab_env(tmp_path), "PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("fomm-lab: error:")]
    assert error == ["fomm-lab: error: JupyterLab refuses to run as root: add --allow-root (or run as a normal "
                     "user)."], result.stderr
    assert "token=" not in result.stdout and "taken" not in result.stderr


@pytest.mark.slow
def test_lab_turns_off_the_news_question(tmp_path):
    import nbformat

    (tmp_path / "notebooks").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "notebooks" / "demo.ipynb")
    port = free_port()
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([sys.executable, "-m", "fomm_lab", "lab", "--port", str(port), "--no-browser",
                             "--notebook", str(tmp_path / "notebooks" / "demo.ipynb"), *root_flag],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**lab_env(tmp_path), "PYTHONPATH": str(REPO)})
    try:
        token = wait_for_url(proc).group(2)
        import urllib.request

        url = (f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification"
               f"?token={token}")
        with urllib.request.urlopen(url, timeout=10) as response:
            schema = json.load(response)["schema"]["properties"]
        # JupyterLab's own default is "none" (ask): the lab's settings answer "false" (never) for the user
        assert schema["fetchNews"]["default"] == "false" and schema["checkForUpdates"]["default"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=60)


# -------------------------------------------------------------------- results and their reports


def test_paste_back_side_by_side_keeps_the_photo_large(media, tiny_vox, tmp_path):
    from fomm_lab.io import probe_video

    sbs = tmp_path / "sbs.mp4"
    assert main(["animate", "--source", str(media["photo"]), "--driving", str(media["driving"]), "--side-by-side",
                 str(sbs), "--paste-back", "--config", str(tiny_vox[0]), "--checkpoint", str(tiny_vox[1]),
                 "-q"]) == 0
    info = probe_video(sbs)
    # photo (512x512) | driving crop | result (512x512), all 512 high, with a caption strip above
    assert info.height >= 512 and info.width >= 512 + 512 + 256


def test_progress_total_is_exact_and_the_precision_is_said(media, tiny_vox, tmp_path):
    import torch

    from fomm_lab.device import auto_dtype, dtype_name

    result, _ = run("animate", "--source", str(media["photo"]), "--driving", str(media["driving"]),
                    "--output", str(tmp_path / "o.mp4"), "--config", str(tiny_vox[0]), "--checkpoint",
                    str(tiny_vox[1]), "--no-crop-driving", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    totals = re.findall(r"animating \(relative \+ adapt scale\): 100%\|[^|]*\| (\d+)/(\d+)", result.stderr)
    assert totals and all(done == total == "20" for done, total in totals), result.stderr[-500:]
    chosen = dtype_name(auto_dtype(torch.device("cpu")))
    assert f"on cpu, {chosen} (auto)" in result.stdout


# ------------------------------------------------------------------------------- good first frame


def test_a_recording_starts_with_the_first_good_frame(tmp_path):
    import cv2
    from clips import face_clip_frames

    from fomm_lab.lab import WebcamRecorder
    from fomm_lab.lab._jpeg import encode_jpeg

    good = [cv2.resize(f, (128, 96), interpolation=cv2.INTER_AREA) for f in face_clip_frames(1.2, 10, (320, 240))]
    blocky = cv2.resize(cv2.resize(good[0], (16, 12), interpolation=cv2.INTER_AREA), (128, 96),
                        interpolation=cv2.INTER_NEAREST)
    rec = WebcamRecorder(tmp_path, fps=10, max_seconds=5)
    rec._on_message(rec, {"type": "start"}, [])
    for index, frame in enumerate([blocky] * 4 + good):  # the camera repeats a blocky frame while warming up
        rec._on_message(rec, {"type": "frame", "index": index}, [memoryview(encode_jpeg(frame, quality=100))])
    rec._on_message(rec, {"type": "stop"}, [])
    frames = list(read_video(rec.path))
    assert len(frames) == len(good)
    assert np.abs(frames[0].astype(int) - good[0]).mean() < np.abs(frames[0].astype(int) - blocky).mean()
