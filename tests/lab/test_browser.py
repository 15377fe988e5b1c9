"""Real-browser tests of the lab widgets: JupyterLab on 127.0.0.1 driven by Debian Chromium.

Chromium's fake camera is fed from a y4m clip made by tests/clips.py; the recorder's mp4 is
checked against that clip and the live animator runs on the golden tiny checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_util import Lab, assert_resembles, decode, fake_camera, lab, notebook_page, shot, y4m  # noqa: F401

pytestmark = pytest.mark.browser


def write_notebook(path: Path, *sources: str) -> None:
    """Write a notebook with one code cell per source string (kernel python3)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, path)


RECORDER_CELL = """
from fomm_lab.lab import WebcamRecorder
rec = WebcamRecorder(output_dir={out!r}, max_seconds=2, fps=10)
rec
"""


def test_recorder_records_fake_camera_clip(lab: Lab, y4m: Path) -> None:
    out = lab.root / "temp-rec"
    write_notebook(lab.root / "rec.ipynb", RECORDER_CELL.format(out=str(out)))
    with notebook_page(lab, "rec.ipynb", fake_camera(y4m)) as page:
        page.locator(".fomm-record").click(timeout=60_000)
        page.wait_for_selector(".fomm-status:has-text('Saved')", timeout=30_000)
        page.wait_for_function("document.querySelector('.fomm-recorder .fomm-pane:last-child video').readyState >= 2",
                               timeout=15_000)
        shot(page, "recorder")
    videos = sorted(out.glob("webcam-*.mp4"))
    assert len(videos) == 1, f"expected one recording in {out}, found {videos}"
    recorded = decode(videos[0])
    fed = decode(y4m)
    assert 15 <= len(recorded) <= 21, f"2 s at 10 fps should be ~20 frames, got {len(recorded)}"
    assert_resembles(recorded, fed)


@pytest.mark.parametrize(("case", "flags", "expected"), [
    ("denied", ["--use-fake-device-for-media-stream"], "NotAllowedError"),
    ("no-camera", ["--use-fake-ui-for-media-stream"], "NotFoundError"),
])
def test_recorder_reports_camera_problems(lab: Lab, case: str, flags: list[str], expected: str) -> None:
    # "denied": a camera exists but nobody grants the permission prompt (headless denies it);
    # "no-camera": the permission is granted but this machine has no video device.
    name = f"rec-{case}.ipynb"
    write_notebook(lab.root / name, RECORDER_CELL.format(out=str(lab.root / f"temp-{case}")),
                   "print('ERROR=' + rec.error)")
    with notebook_page(lab, name, flags) as page:
        page.locator(".fomm-record").click(timeout=60_000)
        page.wait_for_selector(f".fomm-error:has-text('{expected}')", timeout=20_000)
        message = page.locator(".fomm-error").inner_text()
        shot(page, f"recorder-{case}")
        # the message also reached the Python side: re-run the second cell and read its output
        page.evaluate("window.jupyterapp.shell.currentWidget.content.activeCellIndex = 1;"
                      "window.jupyterapp.commands.execute('notebook:run-cell')")
        page.wait_for_selector(f".jp-OutputArea-output:has-text('ERROR={message.splitlines()[0][:40]}')",
                               timeout=30_000)
    assert "camera" in message.lower() and expected in message
    assert not list((lab.root / f"temp-{case}").glob("*.mp4"))


LIVE_CELL = """
from fomm_lab import Animator, load_model
from fomm_lab.io import read_image
from fomm_lab.lab import LiveAnimator
model = load_model({config!r}, {checkpoint!r}, device="cpu")
live = LiveAnimator(Animator(model), read_image({photo!r}), output_dir={out!r}, width=320, height=240)
live
"""


def test_live_animator_shows_animated_frames(lab: Lab, y4m: Path, golden_dir: Path, repo_root: Path) -> None:
    out = lab.root / "temp-live"
    write_notebook(lab.root / "live.ipynb", LIVE_CELL.format(
        config=str(golden_dir / "tiny-vox.yaml"), checkpoint=str(golden_dir / "tiny-vox-cpk.pth.tar"),
        photo=str(repo_root / "source_image_inputs" / "astronaut.png"), out=str(out)))
    with notebook_page(lab, "live.ipynb", fake_camera(y4m)) as page:
        page.locator(".fomm-live .fomm-start").click(timeout=90_000)
        page.locator(".fomm-live .fomm-record").click(timeout=30_000)
        # several round trips: the fps readout appears and the animated image is the model's size
        page.wait_for_function(
            "(() => { const f = document.querySelector('.fomm-live .fomm-fps').textContent;"
            " const img = document.querySelector('.fomm-live .fomm-result');"
            " return /^[0-9.]+ fps$/.test(f) && img.complete && img.naturalWidth === 256; })()", timeout=60_000)
        first = page.evaluate("document.querySelector('.fomm-live .fomm-result').src")
        page.wait_for_function(f"document.querySelector('.fomm-live .fomm-result').src !== {first!r}",
                               timeout=30_000)
        stats = page.evaluate("""() => {
            const img = document.querySelector('.fomm-live .fomm-result');
            const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
            const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            let sum = 0, sq = 0; for (let i = 0; i < d.length; i += 4) { sum += d[i+1]; sq += d[i+1] * d[i+1]; }
            const n = d.length / 4; return [sum / n, Math.sqrt(sq / n - (sum / n) ** 2)];
        }""")
        page.locator(".fomm-live .fomm-best").click()
        page.wait_for_selector(".fomm-live .fomm-status:has-text('best reference')", timeout=30_000)
        page.locator(".fomm-live .fomm-record").click()
        page.wait_for_selector(".fomm-live .fomm-status:has-text('saved the live recording')", timeout=30_000)
        fps_text = page.locator(".fomm-live .fomm-fps").inner_text()
        shot(page, "live")
    assert float(fps_text.split()[0]) > 0
    assert stats[1] > 5, f"the animated frame is flat (mean, std of green) = {stats}"
    recordings = list(out.glob("live-*.mp4"))
    assert len(recordings) == 1
    frames = decode(recordings[0])
    assert frames and frames[0].shape == (256, 512, 3)
