"""The real notebooks/demo.ipynb walked through in JupyterLab like a new user, with a fake webcam.

Run All runs every cell without a traceback, the later ones saying they wait for a driving clip;
the user records a clip with the recorder widget, picks another photo and runs the photo cell and
all below: the recording is kept. The results on disk are decoded and the comparison player and
the live animator are checked in the page. Screenshots go to test-artifacts/demo-*.png.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from browser_util import Lab, assert_resembles, fake_camera, lab, notebook_page, shot, y4m  # noqa: F401
from notebook_util import inject_parameters
from test_notebook import TINY_MODELS, TINY_SWAP

from fomm_lab.io import read_video

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "notebooks/demo.ipynb"
ANIMATIONS = ["animation-relative.mp4", "animation-absolute-adapt-scale.mp4", "animation-relative-adapt-scale.mp4"]


def _frames(path: Path) -> list[np.ndarray]:
    with read_video(path) as reader:
        return list(reader)


def _prepare(lab: Lab, repo_root: Path, golden_dir: Path) -> Path:
    """The repo's layout under the lab root (notebooks/, source_image_inputs/, temp/) with the
    parameters cell pointing at the tiny golden model on the CPU. Returns OUTPUT_DIR."""
    import nbformat

    out = lab.root / "temp"
    out.mkdir()
    shutil.copytree(repo_root / "source_image_inputs", lab.root / "source_image_inputs")
    nb = nbformat.read(repo_root / NOTEBOOK, as_version=4)
    inject_parameters(nb, {
        "CONFIG": str(golden_dir / "tiny-vox.yaml"),
        "CHECKPOINT": str(golden_dir / "tiny-vox-cpk.pth.tar"),
        "DEVICE": "cpu",
        "SOURCE_IMAGE": "../source_image_inputs/astronaut.png",
        "DRIVING_VIDEO": None,
        "USE_WEBCAM": True,
        "DOWNLOAD_FACE_WEIGHTS": False,  # tests never touch the network
        "CROP_SOURCE": True, "CROP_DRIVING": True,  # the tiny model's yaml is not a registry face model
        "COMPARE_MODELS": TINY_MODELS, "SWAP_OPTIONS": TINY_SWAP,  # nor do the comparison and the swap
        "OUTPUT_DIR": str(out),
    })
    (lab.root / "notebooks").mkdir()
    nbformat.write(nb, lab.root / NOTEBOOK)
    return out


def _show(page, selector: str, name: str) -> None:
    page.locator(selector).first.scroll_into_view_if_needed()
    shot(page, name)


def _wait_idle(page) -> None:
    page.wait_for_function(  # nothing queued or running ([*]) and the kernel idle
        "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'"
        " && ![...document.querySelectorAll('.jp-InputPrompt')].some((p) => p.textContent.includes('*'))",
        timeout=240_000)


def _assert_no_traceback(page) -> None:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.all_text_contents()


def _run_from(page, cell) -> None:
    """Select ``cell`` and Run > Run Selected Cell and All Below."""
    cell.locator(".jp-InputPrompt").click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run Selected Cell and All Below").click()


def test_demo_notebook_walkthrough(lab: Lab, y4m: Path, golden_dir: Path, repo_root: Path) -> None:
    out = _prepare(lab, repo_root, golden_dir)
    from PIL import Image

    # a second photo to switch to after recording (the astronaut, mirrored)
    Image.open(lab.root / "source_image_inputs" / "astronaut.png").transpose(Image.FLIP_LEFT_RIGHT).save(
        lab.root / "source_image_inputs" / "mirrored.png")
    with notebook_page(lab, NOTEBOOK, fake_camera(y4m)) as page:
        # Run All on a fresh kernel: every cell runs, none shows a traceback; the driving-clip cell and
        # the later ones say what they wait for
        page.locator(".jp-OutputArea-output", has_text="Waiting: no driving clip yet").wait_for(timeout=180_000)
        _wait_idle(page)
        _assert_no_traceback(page)
        assert page.locator(".jp-OutputArea-output", has_text="Waiting: the animations").count() >= 1
        assert page.locator(".fomm-live").count() == 1  # the live animator is there, on the photo

        recorder = page.locator(".fomm-recorder")
        recorder.locator(".fomm-record").click(timeout=30_000)
        page.wait_for_selector(".fomm-recorder .fomm-status:has-text('recording...')", timeout=30_000)
        time.sleep(2.5)  # the user moves their head for a while
        recorder.locator(".fomm-stop").click()
        recorder.locator(".fomm-status", has_text="Saved").wait_for(timeout=30_000)
        page.wait_for_function("document.querySelector('.fomm-recorder .fomm-pane:last-child video').readyState >= 2",
                               timeout=15_000)
        _show(page, ".fomm-recorder", "demo-recorded")

        # the user now picks another photo and runs the photo cell and everything below it: the
        # recording made above is kept and used
        page.locator(".widget-dropdown select").first.select_option(label="mirrored.png")
        photo_cell = page.locator(".jp-CodeCell", has=page.locator(".jp-InputArea", has_text="lab.crop_photo()"))
        _run_from(page, photo_cell)
        page.locator(".fomm-compare video").first.wait_for(timeout=240_000)
        _wait_idle(page)
        _assert_no_traceback(page)
        outputs = "\n".join(page.locator(".jp-OutputArea-output").all_text_contents())

        compare = page.locator(".fomm-compare").first
        assert compare.locator("video").count() >= 4
        compare.scroll_into_view_if_needed()
        captions = compare.locator(".fomm-caption").all_text_contents()
        assert captions == ["driving", "relative", "absolute + adapt scale", "relative + adapt scale"]
        page.wait_for_function("[...document.querySelector('.fomm-compare').querySelectorAll('video')]"
                               ".every((v) => v.readyState >= 2 && v.videoWidth === 256)", timeout=30_000)
        compare.locator(".fomm-play").click()
        page.wait_for_function("document.querySelector('.fomm-compare video').currentTime > 0.3", timeout=30_000)
        _show(page, ".fomm-compare", "demo-comparison")

        live = page.locator(".fomm-live").last
        live.locator(".fomm-start").click(timeout=30_000)
        page.wait_for_function("(() => { const l = [...document.querySelectorAll('.fomm-live')].pop();"
                               " const m = /^([0-9.]+) fps$/.exec(l.querySelector('.fomm-fps').textContent);"
                               " return m && Number(m[1]) > 0"
                               " && l.querySelector('.fomm-result').naturalWidth === 256; })()",
                               timeout=60_000)
        _show(page, ".fomm-live", "demo-live")
        live.locator(".fomm-stop").click()
        live.locator(".fomm-status", has_text="stopped after").wait_for(timeout=30_000)
        page.wait_for_function("[...document.querySelectorAll('.fomm-live')].pop()"
                               ".querySelector('.fomm-fps').textContent === ''", timeout=15_000)  # fps cleared

    recordings = sorted(out.glob("webcam-*.mp4"))
    assert len(recordings) == 1, f"expected one recording in {out}, found {recordings}"
    assert f"Driving clip: {recordings[0]}" in outputs, "the rerun did not pick up the recording"
    assert f"Photo: {lab.root / 'source_image_inputs' / 'mirrored.png'}" in outputs, "the new photo was not used"
    recorded = _frames(recordings[0])
    assert 25 <= len(recorded) <= 100, f"~2.5 s at 25 fps expected, got {len(recorded)} frames"
    assert_resembles(recorded, _frames(y4m))

    driving = _frames(out / "crops" / "driving-1-crop.mp4")
    for name in ANIMATIONS:
        frames = _frames(out / name)
        assert len(frames) == len(driving) and frames[0].shape == (256, 256, 3), (name, len(frames), len(driving))
        assert frames[0].std(axis=(0, 1)).max() > 2, f"{name} starts with a flat image"
        assert (out / name).with_suffix(".gif").is_file(), name
    comparison = _frames(out / "comparison.mp4")
    assert len(comparison) == len(driving) and comparison[0].shape[1] == 5 * 256, comparison[0].shape  # + photo
    gif = _frames(out / "comparison.gif")
    assert len(gif) >= 2 and gif[0].shape[1] == 5 * 256, (len(gif), gif[0].shape)
