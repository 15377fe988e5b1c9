"""Shared pieces of the real-browser tests: a JupyterLab server on 127.0.0.1, Debian Chromium through
Playwright with a fake camera fed from a y4m clip, screenshots and frame comparison helpers."""

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

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-quic"]


def fake_camera(y4m: Path) -> list[str]:
    """Chromium flags: a granted camera that plays ``y4m`` in a loop."""
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A JupyterLab server on 127.0.0.1 serving ``root`` with a random token."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root, self.port, self.token = root, _free_port(), secrets.token_hex(16)
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
                   IPYTHONDIR=str(work / "ipython"), JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1",
                   # kernels never see the user's checkpoint caches (ours and face-alignment's in torch hub)
                   FOMM_LAB_HOME=str(work / "fomm-lab-home"), TORCH_HOME=str(work / "torch"))
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One JupyterLab server per test module, its root a fresh tmp folder."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian Chromium is not installed at /usr/bin/chromium: apt-get install chromium (.ci/install.sh does)")
    server = Lab(tmp_path_factory.mktemp("labroot"), tmp_path_factory.mktemp("labwork"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clip the fake camera plays: the astronaut's face moving, 2 s at 25 fps, 320x240."""
    from clips import face_clip_frames, make_y4m

    frames = face_clip_frames(seconds=2, fps=25, size=(320, 240))
    return Path(make_y4m(tmp_path_factory.mktemp("clip") / "face.y4m", frames, fps=25))


@contextmanager
def notebook_page(lab: Lab, notebook: str, chromium_args: list[str]) -> Iterator:
    """Open ``notebook`` in JupyterLab in a fresh Chromium, run all its cells and yield the page.

    Run All stops at the first cell that raises. On failure a screenshot ``<notebook>-failed.png``
    goes to test-artifacts/.
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
    """Full-page screenshot to test-artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def small_gray(frame: np.ndarray) -> np.ndarray:
    """A 32x24 grey thumbnail, zero mean and unit variance, flattened (for correlating frames)."""
    import cv2

    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(gray, (32, 24), interpolation=cv2.INTER_AREA).ravel()
    return (small - small.mean()) / (small.std() + 1e-6)


def decode(path: Path) -> list[np.ndarray]:
    """All frames of a video (mp4 or y4m) as RGB uint8, decoded by imageio-ffmpeg's reader."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    width, height = next(gen)["size"]
    return [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in gen]


def assert_resembles(recorded: list[np.ndarray], fed: list[np.ndarray]) -> None:
    """Each recorded frame correlates with some frame of the fed clip, and the colours agree."""
    fed_feats = np.stack([small_gray(f) for f in fed])
    best = [float(np.max(fed_feats @ small_gray(f)) / fed_feats.shape[1]) for f in recorded]
    assert np.median(best) > 0.9, f"recorded frames do not match the fed clip: correlations {best}"
    mean_rec = np.mean([f.mean(axis=(0, 1)) for f in recorded], axis=0)
    mean_fed = np.mean([f.mean(axis=(0, 1)) for f in fed], axis=0)
    assert np.abs(mean_rec - mean_fed).max() < 20, (mean_rec, mean_fed)
