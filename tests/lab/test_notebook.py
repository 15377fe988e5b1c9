"""notebooks/demo.ipynb: shipped clean, and runs unattended end to end on the golden tiny model."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
from notebook_util import inject_parameters

PARAMETERS = ("CONFIG", "CHECKPOINT", "DEVICE", "DTYPE", "SOURCE_IMAGE", "DRIVING_VIDEO", "USE_WEBCAM", "OUTPUT_DIR",
              "DOWNLOAD_FACE_WEIGHTS", "FACE_DETECTOR", "CROP_SOURCE", "CROP_DRIVING", "SOURCE_BOX", "DRIVING_BOX",
              "MULTI_FACE", "FIND_BEST_FRAME", "BEST_FRAME", "SMOOTHING", "RECORD_SOUND", "COMPARE_MODELS", "ENHANCE",
              "SWAP_OPTIONS")
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures"
TINY_MODELS = [(str(GOLDEN / "fomm-golden" / "tiny-vox.yaml"), str(GOLDEN / "fomm-golden" / "tiny-vox-cpk.pth.tar")),
               (str(GOLDEN / "tpsmm-golden" / "tiny-vox.yaml"), str(GOLDEN / "tpsmm-golden" / "tiny-vox.pth.tar"))]
TINY_SWAP = {"config": str(GOLDEN / "swap-golden" / "tiny-vox-10segments.yaml"),
             "checkpoint": str(GOLDEN / "swap-golden" / "tiny-vox-10segments.pth.tar"),
             "parser": str(GOLDEN / "swap-golden" / "tiny-bisenet-79999_iter.pth")}
"""Tests never touch the network: the comparison of models and the face swap use the tiny golden networks."""


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    """Every error (traceback) output of an executed notebook."""
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def _text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")


def _notebook(repo_root: Path) -> nbformat.NotebookNode:
    return nbformat.read(repo_root / "notebooks" / "demo.ipynb", as_version=4)


def _parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "demo.ipynb needs exactly one cell tagged 'parameters'"
    return cells[0]


def test_demo_notebook_is_stripped_and_has_parameters(repo_root: Path) -> None:
    nb = _notebook(repo_root)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    source = _parameters_cell(nb).source
    for name in PARAMETERS:
        assert f"\n{name} = " in "\n" + source, name


def _decode(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    width, height = next(gen)["size"]
    return [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in gen]


@pytest.mark.slow
def test_demo_notebook_runs_unattended(repo_root: Path, golden_dir: Path, tmp_path: Path) -> None:
    from clips import make_face_clip
    from nbclient import NotebookClient
    from PIL import Image

    clip = make_face_clip(tmp_path / "driving.mp4", seconds=2, fps=10, size=(320, 240), audio=True)
    out = tmp_path / "results"
    nb = _notebook(repo_root)
    inject_parameters(nb, {
        "CONFIG": str(golden_dir / "tiny-vox.yaml"),
        "CHECKPOINT": str(golden_dir / "tiny-vox-cpk.pth.tar"),
        "DEVICE": "cpu",
        "SOURCE_IMAGE": "../source_image_inputs/astronaut.png",
        "DRIVING_VIDEO": str(clip),
        "USE_WEBCAM": False,
        "DOWNLOAD_FACE_WEIGHTS": False,  # tests never touch the network
        "CROP_SOURCE": True, "CROP_DRIVING": True,  # the tiny model's yaml is not a registry face model
        "COMPARE_MODELS": TINY_MODELS, "SWAP_OPTIONS": TINY_SWAP,
        "OUTPUT_DIR": str(out),
    })
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(repo_root / "notebooks")}}).execute()
    assert _errors(nb) == []
    text = _text(nb)
    assert "did not work" not in text, text
    assert str(out / "crops" / "driving-1-crop.mp4") in text  # the crop plan with what wrote the crop (its command)
    assert (out / "models-comparison.mp4").is_file() and (out / "swap" / "swap.mp4").is_file()

    animations = sorted(out.glob("animation-*.mp4"))
    assert {p.stem for p in animations} == {"animation-absolute-adapt-scale", "animation-relative",
                                            "animation-relative-adapt-scale"}
    driving = _decode(out / "crops" / "driving-1-crop.mp4")
    assert len(driving) >= 15
    for path in animations:
        frames = _decode(path)
        assert len(frames) == len(driving) and frames[0].shape == (256, 256, 3)
        assert max(f.std() for f in frames) > 5, f"{path} is blank"
    relative, absolute = _decode(out / "animation-relative.mp4"), _decode(out / "animation-absolute-adapt-scale.mp4")
    assert np.abs(relative[-1].astype(int) - absolute[-1]).mean() > 0.5, "relative and absolute gave the same video"
    comparison = _decode(out / "comparison.mp4")
    assert len(comparison) == len(driving) and comparison[0].shape[1] >= 5 * 256  # photo | driving | 3 animations
    with Image.open(out / "comparison.gif") as gif:
        assert gif.n_frames > 5 and gif.width == comparison[0].shape[1]
    assert len(list(out.glob("animation-*.gif"))) == 3


@pytest.mark.slow
def test_run_all_without_a_clip_waits_politely(repo_root: Path, golden_dir: Path, tmp_path: Path) -> None:
    """Run All on a fresh kernel with the webcam route and no clip: no traceback anywhere; the driving
    cell and every later one say what they wait for."""
    from nbclient import NotebookClient

    nb = _notebook(repo_root)
    inject_parameters(nb, {
        "CONFIG": str(golden_dir / "tiny-vox.yaml"), "CHECKPOINT": str(golden_dir / "tiny-vox-cpk.pth.tar"),
        "DEVICE": "cpu", "DRIVING_VIDEO": None, "USE_WEBCAM": True, "DOWNLOAD_FACE_WEIGHTS": False,
        "OUTPUT_DIR": str(tmp_path / "results"),
    })
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(repo_root / "notebooks")}}).execute()
    assert _errors(nb) == []
    text = _text(nb)
    assert "Waiting: no driving clip yet: record one with the recorder above" in text
    assert "Waiting: a driving clip" in text and "Waiting: the prepared clip" in text
    assert "Waiting: the animations" in text
    assert not list((tmp_path / "results").glob("animation-*.mp4"))


@pytest.mark.slow
def test_notebook_and_cli_agree(repo_root: Path, golden_dir: Path, tmp_path: Path) -> None:
    """The same photo, clip and model through the notebook and through ``fomm-lab animate`` (both with
    their defaults: face crops, auto precision, smoothing) give the same relative + adapt-scale video."""
    from clips import make_face_clip
    from nbclient import NotebookClient

    from fomm_lab.cli import main

    clip = make_face_clip(tmp_path / "driving.mp4", seconds=1.2, fps=10, size=(320, 240), audio=True)
    out = tmp_path / "results"
    nb = _notebook(repo_root)
    photo = repo_root / "source_image_inputs" / "astronaut.png"
    inject_parameters(nb, {
        "CONFIG": str(golden_dir / "tiny-vox.yaml"), "CHECKPOINT": str(golden_dir / "tiny-vox-cpk.pth.tar"),
        "DEVICE": "cpu", "SOURCE_IMAGE": str(photo), "DRIVING_VIDEO": str(clip), "USE_WEBCAM": False,
        "DOWNLOAD_FACE_WEIGHTS": False, "OUTPUT_DIR": str(out),
    })
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(repo_root / "notebooks")}}).execute()
    assert _errors(nb) == []
    cli_out = tmp_path / "cli.mp4"
    assert main(["animate", "--source", str(photo), "--driving", str(clip), "--output", str(cli_out),
                 "--config", str(golden_dir / "tiny-vox.yaml"), "--checkpoint", str(golden_dir / "tiny-vox-cpk.pth.tar"),
                 "--device", "cpu", "-q"]) == 0
    notebook_frames = _decode(out / "animation-relative-adapt-scale.mp4")
    cli_frames = _decode(cli_out)
    assert len(notebook_frames) == len(cli_frames) == len(_decode(out / "crops" / "driving-1-crop.mp4"))
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(notebook_frames, cli_frames)) == 0


OFFLINE = """\
import dataclasses as _dataclasses
import socket as _socket
from fomm_lab.hub import registry as _registry

with _socket.socket() as _s:  # a port where nothing listens: this kernel is offline
    _s.bind(("127.0.0.1", 0))
    _DEAD = f"http://127.0.0.1:{_s.getsockname()[1]}/"
for _table in (_registry.MODELS, _registry.SWAPPERS, _registry.FACE_PARSERS):
    for _name, _entry in list(_table.items()):
        _table[_name] = _dataclasses.replace(_entry, mirrors=tuple(
            m if m.kind == "manual" else _dataclasses.replace(m, url=_DEAD + _entry.filename) for m in _entry.mirrors))
"""
"""A cell that takes the kernel offline: every automatic mirror of the registry answers nothing."""


@pytest.mark.slow
def test_run_all_of_the_default_notebook_offline_ends_without_a_traceback(repo_root: Path, tmp_path: Path) -> None:
    """The default parameters (CONFIG = "vox", the webcam route) on a machine without network: no traceback; the
    model cell says how to go on in the notebook's words (CHECKPOINT), the later cells what they wait for."""
    from nbclient import NotebookClient

    nb = _notebook(repo_root)
    inject_parameters(nb, {"DOWNLOAD_FACE_WEIGHTS": False, "OUTPUT_DIR": str(tmp_path / "results")})
    index = next(i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(OFFLINE))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(repo_root / "notebooks")}}).execute()
    assert _errors(nb) == []
    text = _text(nb)
    assert "Loading the model did not work: could not download the 'vox' checkpoint" in text
    assert 'set CHECKPOINT = "path/to/vox-cpk.pth.tar" in the parameters cell' in text
    assert "download_checkpoint(" not in text and "Traceback" not in text
    assert "Waiting: no driving clip yet" in text
