"""Real-browser tests of the lab widgets: JupyterLab on 127.0.0.1 driven by Debian Chromium.

Chromium's fake camera is fed from a y4m clip made by tests/clips.py; the recorder's mp4 is
checked against that clip and the live animator runs on the golden tiny checkpoint.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A JupyterLab server on 127.0.0.1 serving ``root`` with a random token."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root, self.port, self.token = root, _free_port(), secrets.token_hex(16)
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
                   IPYTHONDIR=str(work / "ipython"), JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
               f"--IdentityProvider.token={self.token}", "--ServerApp.open_browser=False",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.user_settings_dir={work / 'settings'}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        labconfig = work / "config" / "labconfig"
        labconfig.mkdir(parents=True)  # no "Jupyter news?" toast over the screenshots
        (labconfig / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        self.log = (work / "jupyter.log").open("wb")
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2) as resp:
                    json.load(resp)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"JupyterLab did not start; see {work / 'jupyter.log'}") from None
                time.sleep(0.3)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def write_notebook(path: Path, *sources: str) -> None:
    """Write a notebook with one code cell per source string (kernel python3)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian Chromium is not installed at /usr/bin/chromium")
    root = tmp_path_factory.mktemp("labroot")
    server = Lab(root, tmp_path_factory.mktemp("labwork"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clips import face_clip_frames, make_y4m

    frames = face_clip_frames(seconds=2, fps=25, size=(320, 240))
    return Path(make_y4m(tmp_path_factory.mktemp("clip") / "face.y4m", frames, fps=25))


@contextmanager
def notebook_page(lab: Lab, notebook: str, chromium_args: list[str]) -> Iterator:
    """Open ``notebook`` in JupyterLab in a fresh Chromium, run all its cells and yield the page.

    On failure a screenshot ``<notebook>-failed.png`` goes to test-artifacts/.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_ARGS + chromium_args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(lab.url(notebook))
            page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=60_000)
            # the notebook's file and kernel are ready, then Run All (in that notebook, not another tab)
            page.evaluate("""async (name) => {
                const app = window.jupyterapp;
                let w = app.shell.currentWidget;
                for (let i = 0; i < 300 && !(w && w.context && w.context.path === name); i++) {
                    await new Promise((r) => setTimeout(r, 100));
                    w = app.shell.currentWidget;
                }
                await w.context.ready;
                await w.sessionContext.ready;
                await app.commands.execute('notebook:run-all-cells');
            }""", notebook)
            yield page
        except BaseException:
            shot(page, Path(notebook).stem + "-failed")
            raise
        finally:
            browser.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _small_gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(gray, (32, 24), interpolation=cv2.INTER_AREA).ravel()
    return (small - small.mean()) / (small.std() + 1e-6)


def _decode(path: Path) -> list[np.ndarray]:
    """All frames of a video (mp4 or y4m) as RGB uint8, decoded by imageio-ffmpeg's reader."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    width, height = next(gen)["size"]
    return [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in gen]


RECORDER_CELL = """
from fomm_lab.widgets import WebcamRecorder
rec = WebcamRecorder(output_dir={out!r}, max_seconds=2, fps=10)
rec
"""


def test_recorder_records_fake_camera_clip(lab: Lab, y4m: Path) -> None:
    out = lab.root / "temp-rec"
    write_notebook(lab.root / "rec.ipynb", RECORDER_CELL.format(out=str(out)))
    with notebook_page(lab, "rec.ipynb", ["--use-fake-ui-for-media-stream",
                                                           "--use-fake-device-for-media-stream",
                                                           f"--use-file-for-fake-video-capture={y4m}"]) as page:
        page.locator(".fomm-record").click(timeout=60_000)
        page.wait_for_selector(".fomm-status:has-text('Saved')", timeout=30_000)
        page.wait_for_function("document.querySelector('.fomm-recorder .fomm-pane:last-child video').readyState >= 2",
                               timeout=15_000)
        shot(page, "recorder")
    videos = sorted(out.glob("webcam-*.mp4"))
    assert len(videos) == 1, f"expected one recording in {out}, found {videos}"
    recorded = _decode(videos[0])
    fed = _decode(y4m)
    assert 15 <= len(recorded) <= 21, f"2 s at 10 fps should be ~20 frames, got {len(recorded)}"
    fed_feats = np.stack([_small_gray(f) for f in fed])
    best = [float(np.max(fed_feats @ _small_gray(f)) / fed_feats.shape[1]) for f in recorded]
    assert np.median(best) > 0.9, f"recorded frames do not match the fed clip: correlations {best}"
    mean_rec = np.mean([f.mean(axis=(0, 1)) for f in recorded], axis=0)
    mean_fed = np.mean([f.mean(axis=(0, 1)) for f in fed], axis=0)
    assert np.abs(mean_rec - mean_fed).max() < 20, (mean_rec, mean_fed)


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
from fomm_lab.media import read_image
from fomm_lab.widgets import LiveAnimator
model = load_model({config!r}, {checkpoint!r}, device="cpu")
live = LiveAnimator(Animator(model), read_image({photo!r}), output_dir={out!r}, width=320, height=240)
live
"""


def test_live_animator_shows_animated_frames(lab: Lab, y4m: Path, golden_dir: Path, repo_root: Path) -> None:
    out = lab.root / "temp-live"
    write_notebook(lab.root / "live.ipynb", LIVE_CELL.format(
        config=str(golden_dir / "tiny-vox.yaml"), checkpoint=str(golden_dir / "tiny-vox-cpk.pth.tar"),
        photo=str(repo_root / "source_image_inputs" / "astronaut.png"), out=str(out)))
    with notebook_page(lab, "live.ipynb", ["--use-fake-ui-for-media-stream",
                                                           "--use-fake-device-for-media-stream",
                                                           f"--use-file-for-fake-video-capture={y4m}"]) as page:
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
    frames = _decode(recordings[0])
    assert frames and frames[0].shape == (256, 512, 3)
