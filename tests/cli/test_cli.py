"""The ``fomm-lab`` command line: argument parsing, error reporting, ``models`` and ``download``.

Commands run in-process through ``main([...])`` and, where the process boundary matters (exit
status, stderr, no traceback), through ``python -m fomm_lab``. Animation, cropping and the lab have
their own modules (test_cli_animate.py, test_cli_crop.py, test_cli_lab.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from httpserver import LocalServer

from fomm_lab import MediaError
from fomm_lab.cli import main
from fomm_lab.hub.registry import MODELS

REPO = Path(__file__).resolve().parents[2]


def run_module(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m fomm_lab ARGS`` in the repository, without the user's cache."""
    return subprocess.run([sys.executable, "-m", "fomm_lab", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=timeout)


def assert_one_line_error(stderr: str, *needles: str) -> str:
    """stderr holds exactly one ``fomm-lab...: error:`` line, short (what is wrong and what to do), followed
    only by indented detail lines, with no traceback; ``needles`` are in that error block. Returns the block."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if ": error:" in line]
    assert len(starts) == 1, stderr
    first = lines[starts[0]]
    assert first.startswith("fomm-lab") and len(first) <= 400, first
    block = [first, *[line for line in lines[starts[0] + 1:] if line.startswith("  ")]]
    text = "\n".join(block)
    for needle in needles:
        assert needle in text, text
    return text


# ----------------------------------------------------------------------------------- arguments


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("animate", "crop", "download", "models", "lab"):
        assert command in out


@pytest.mark.parametrize("command", ["animate", "crop", "download", "models", "lab"])
def test_each_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert f"usage: fomm-lab {command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "required: COMMAND"),
        (["paint"], "invalid choice: 'paint'"),
        (["animate", "--source", "a.png"], "required: --driving"),
        (["animate", "--source", "a.png", "--driving", "d.mp4", "--output", "o.mp4", "--dtype", "int8"],
         "invalid choice: 'int8'"),
        (["animate", "--source", "a.png", "--driving", "d.mp4", "--output", "o.mp4", "--batch-size", "0"],
         "0 must be 1 or more"),
        (["animate", "--source", "a.png", "--driving", "d.mp4", "--output", "o.mp4", "--best-frame", "-1"],
         "-1 must be 0 or more"),
        (["animate", "--source", "a.png", "--driving", "d.mp4", "--output", "o.mp4", "--best-frame", "x"],
         "'x' is not a whole number"),
        (["animate", "--source", "a.png", "--driving", "d.mp4", "--output", "o.mp4",
          "--find-best-frame", "--best-frame", "3"], "not allowed with argument"),
        (["animate", "--source", "a.png", "--driving", "d.mp4", "--output", "o.mp4",
          "--no-crop-source", "--crop-padding", "0", "0", "0", "0"], "--crop-padding needs face cropping"),
        (["animate", "--source", "a.png", "--driving", "d.mp4", "--output", "o.mp4", "--crop-source",
          "--crop-padding", "0", "0", "0"], "expected 4 arguments"),
        (["crop", "v.mp4"], "required: --output"),
        (["lab", "--port", "70000"], "not a port number"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, needle)


# ----------------------------------------------------------------------------------- bad files


@pytest.fixture()
def photo(tmp_path, astronaut) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(astronaut).save(path)
    return path


@pytest.fixture()
def tiny_clip(tmp_path) -> Path:
    from clips import make_test_video

    return make_test_video(tmp_path / "driving.mp4", frames=3, fps=10, size=(64, 64))


def animate_args(source, driving, output, *extra) -> list[str]:
    return ["animate", "--source", str(source), "--driving", str(driving), "--output", str(output), *extra]


def test_missing_source(tmp_path, tiny_clip, capsys):
    assert main(animate_args(tmp_path / "nope.png", tiny_clip, tmp_path / "o.mp4")) == 1
    assert_one_line_error(capsys.readouterr().err, "nope.png", "does not exist")


def test_source_that_is_not_an_image(tmp_path, tiny_clip, capsys):
    text = tmp_path / "notes.png"
    text.write_text("these are not pixels\n")
    assert main(animate_args(text, tiny_clip, tmp_path / "o.mp4")) == 1
    assert_one_line_error(capsys.readouterr().err, "notes.png")
    assert not (tmp_path / "o.mp4").exists()


def test_driving_that_is_not_a_video(tmp_path, photo, capsys):
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(os.urandom(4096))
    assert main(animate_args(photo, junk, tmp_path / "o.mp4")) == 1
    assert_one_line_error(capsys.readouterr().err, "clip.mp4")


def test_checkpoint_that_is_an_html_page(tmp_path, photo, tiny_clip, tiny_vox, capsys):
    page = tmp_path / "vox-cpk.pth.tar"
    page.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>")
    argv = animate_args(photo, tiny_clip, tmp_path / "o.mp4", "--config", str(tiny_vox[0]),
                        "--checkpoint", str(page), "--device", "cpu")
    assert main(argv) == 1
    assert_one_line_error(capsys.readouterr().err, "vox-cpk.pth.tar")


def test_unknown_config(tmp_path, photo, tiny_clip, capsys):
    assert main(animate_args(photo, tiny_clip, tmp_path / "o.mp4", "--config", "vox-9000")) == 1
    assert_one_line_error(capsys.readouterr().err, "vox-9000")


def test_output_in_a_missing_folder(tmp_path, photo, tiny_clip, capsys):
    assert main(animate_args(photo, tiny_clip, tmp_path / "no" / "such" / "o.mp4")) == 1
    assert_one_line_error(capsys.readouterr().err, "does not exist")


def test_output_that_would_overwrite_the_driving_video(tmp_path, photo, tiny_clip, capsys):
    before = tiny_clip.read_bytes()
    assert main(animate_args(photo, tiny_clip, tiny_clip)) == 1
    assert_one_line_error(capsys.readouterr().err, "also an input")
    assert tiny_clip.read_bytes() == before


def test_cuda_device_without_cuda(tmp_path, photo, tiny_clip, tiny_vox, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error cannot happen")
    argv = animate_args(photo, tiny_clip, tmp_path / "o.mp4", "--config", str(tiny_vox[0]),
                        "--checkpoint", str(tiny_vox[1]), "--device", "cuda")
    assert main(argv) == 1
    assert_one_line_error(capsys.readouterr().err, "CUDA is not available")


def test_debug_shows_the_exception(tmp_path, tiny_clip):
    with pytest.raises(MediaError, match="does not exist"):
        main(animate_args(tmp_path / "nope.png", tiny_clip, tmp_path / "o.mp4", "--debug"))


def test_module_entry_point_reports_one_line_and_exit_1(tmp_path):
    result = run_module(*animate_args(tmp_path / "nope.png", tmp_path / "nope.mp4", tmp_path / "o.mp4"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"fomm-lab: error: image '{tmp_path / 'nope.png'}' does not exist; check the path"]


def test_module_entry_point_bad_arguments_exit_2():
    result = run_module("animate", "--dtype", "int8")
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "invalid choice")


# ------------------------------------------------------------------------------ models/download


def test_models_lists_the_registry_and_the_cache(tmp_path, tiny_vox, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / MODELS["mgif"].filename).write_bytes(tiny_vox[1].read_bytes())
    assert main(["models", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip() and
            line.split()[0] in MODELS}
    assert set(rows) == set(MODELS)
    for name, row in rows.items():
        info = MODELS[name]
        assert row[1] == info.family and row[2] == f"{info.frame_size}x{info.frame_size}"
        assert row[3] == (f"{tiny_vox[1].stat().st_size / 1e3:.0f}kB" if name == "mgif" else "-")  # never "?"
        assert row[4] == ("yes" if name == "mgif" else "no")
        assert row[5] == str(cache / info.filename)
    assert not (tmp_path / "cache" / MODELS["vox"].filename).exists()


def test_models_uses_fomm_lab_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FOMM_LAB_HOME", str(tmp_path / "home"))
    assert main(["models"]) == 0
    assert str(tmp_path / "home" / MODELS["vox"].filename) in capsys.readouterr().out


def test_download_from_a_local_server(tmp_path, tiny_vox, capsys):
    data = tiny_vox[1].read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with LocalServer() as server:
        url = server.add("/files/vox-cpk.pth.tar", data)
        code = main(["download", "vox", "--url", url, "--sha256", digest, "--cache-dir", str(tmp_path), "-q"])
        assert len(server.hits("/files/vox-cpk.pth.tar")) == 1
    assert code == 0
    path = tmp_path / MODELS["vox"].filename
    assert capsys.readouterr().out.strip() == str(path)
    assert path.read_bytes() == data
    # Cached and verified: a second download makes no request.
    with LocalServer() as server:
        url = server.add("/files/vox-cpk.pth.tar", data)
        assert main(["download", "vox", "--url", url, "--cache-dir", str(tmp_path), "-q"]) == 0
        assert server.seen == []


def test_download_with_the_wrong_checksum(tmp_path, tiny_vox, capsys):
    with LocalServer() as server:
        url = server.add("/vox-cpk.pth.tar", tiny_vox[1].read_bytes())
        code = main(["download", "vox", "--url", url, "--sha256", "0" * 64, "--cache-dir", str(tmp_path), "-q"])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, url)
    assert not (tmp_path / MODELS["vox"].filename).exists()


def test_download_of_an_html_page(tmp_path, capsys):
    with LocalServer() as server:
        url = server.add("/vox-cpk.pth.tar", b"<html><body>Quota exceeded</body></html>", content_type="text/html")
        code = main(["download", "vox", "--url", url, "--cache-dir", str(tmp_path), "-q"])
    assert code == 1
    assert_one_line_error(capsys.readouterr().err, url)
    assert not (tmp_path / MODELS["vox"].filename).exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["download", "vox-9000"], "vox-9000"),
    (["download", "vox", "--sha256", "abc"], "64 hexadecimal digits"),
])
def test_download_bad_names(argv, needle, tmp_path, capsys):
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 1
    assert_one_line_error(capsys.readouterr().err, needle)


def test_download_into_an_unwritable_cache(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    assert main(["download", "vox", "--cache-dir", str(blocker / "cache")]) == 1
    assert_one_line_error(capsys.readouterr().err, str(blocker / "cache"))
