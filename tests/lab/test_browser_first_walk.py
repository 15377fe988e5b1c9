"""The lab as a first-time user meets it, in JupyterLab and Chromium with a fake camera (issue 28, items 1, 2, 6, 10):

- the shipped notebook opens unmodified;
- Run All of the default notebook on a machine without network ends with no traceback, and the model cell says in
  the notebook's words how to go on (``CHECKPOINT``);
- editing parameters (``CONFIG``/``CHECKPOINT``, ``SOURCE_IMAGE``) and running the cells again takes effect;
  a photo picked in the gallery afterwards is kept when the cells run again;
- the live cell shows a placeholder saying "Start camera" (not an empty bar with a broken image) until started.

Screenshots go to test-artifacts/walk-*.png.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser_util import BASE_ARGS, CHROMIUM, Lab, fake_camera, shot, y4m  # noqa: F401
from notebook_util import inject_parameters
from test_browser_demo import _assert_no_traceback, _run_from, _wait_idle
from test_notebook import OFFLINE

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, repo_root):
    """JupyterLab with the server settings ``fomm-lab lab`` ships (fomm_lab/lab/jupyter_config)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian Chromium is not installed at /usr/bin/chromium: apt-get install chromium")
    work = tmp_path_factory.mktemp("walkwork")
    (work / "config").mkdir()
    shutil.copy(repo_root / "fomm_lab" / "lab" / "jupyter_config" / "jupyter_server_config.json", work / "config")
    server = Lab(tmp_path_factory.mktemp("walkroot"), work)
    yield server
    server.close()


def _open(page, lab: Lab, notebook: str) -> None:
    page.goto(lab.url(notebook))
    page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=60_000)
    page.evaluate("""async (name) => {
        const app = window.jupyterapp;
        let w = app.shell.currentWidget;
        for (let i = 0; i < 300 && !(w && w.context && w.context.path === name); i++) {
            await new Promise((r) => setTimeout(r, 100));
            w = app.shell.currentWidget;
        }
        await w.context.ready;
        await w.sessionContext.ready;
    }""", notebook)


def _outputs(page) -> str:
    return "\n".join(page.locator(".jp-OutputArea-output").all_text_contents())


def _set_parameters(page, values: dict) -> None:
    """Edit the injected parameters cell as a user would edit the parameters cell."""
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    page.evaluate("""(source) => {
        const notebook = window.jupyterapp.shell.currentWidget.content;
        const cell = notebook.widgets.find((c) => (c.model.getMetadata('tags') || []).includes('injected-parameters'));
        cell.model.sharedModel.setSource(source);
    }""", source)


def test_first_walk(lab: Lab, y4m: Path, golden_dir: Path, repo_root: Path) -> None:
    import nbformat
    from PIL import Image
    from playwright.sync_api import sync_playwright

    root = lab.root
    shutil.copytree(repo_root / "source_image_inputs", root / "source_image_inputs")
    Image.open(root / "source_image_inputs" / "astronaut.png").transpose(Image.FLIP_LEFT_RIGHT).save(
        root / "source_image_inputs" / "mirrored.png")
    (root / "notebooks").mkdir()
    shutil.copy(repo_root / "notebooks" / "demo.ipynb", root / "notebooks" / "pristine.ipynb")
    out = root / "temp"
    nb = nbformat.read(repo_root / "notebooks" / "demo.ipynb", as_version=4)
    first = {"DOWNLOAD_FACE_WEIGHTS": False, "OUTPUT_DIR": str(out)}  # the defaults otherwise: CONFIG = "vox"
    inject_parameters(nb, first)
    index = next(i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(OFFLINE))  # this kernel has no network
    nbformat.write(nb, root / "notebooks" / "walk.ipynb")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_ARGS + fake_camera(y4m))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            # 10: the shipped notebook opens unmodified (its kernel connected, nothing run)
            _open(page, lab, "notebooks/pristine.ipynb")
            page.wait_for_function("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                                   " === 'idle'", timeout=120_000)
            page.wait_for_timeout(3000)
            assert page.evaluate("window.jupyterapp.shell.currentWidget.context.model.dirty") is False
            page.evaluate("window.jupyterapp.commands.execute('application:close-all')")
            page.wait_for_timeout(1000)

            # 1: Run All offline with the defaults: no traceback, and what to do in the notebook's words
            _open(page, lab, "notebooks/walk.ipynb")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.locator(".jp-OutputArea-output", has_text="Loading the model did not work").wait_for(timeout=180_000)
            _wait_idle(page)
            _assert_no_traceback(page)
            text = _outputs(page)
            assert 'set CHECKPOINT = "path/to/vox-cpk.pth.tar" in the parameters cell' in text
            assert "Waiting: the model: the model cell above did not work" in text  # the live cell
            shot(page, "walk-offline")

            # 2: the user follows the advice and picks another photo by editing the parameters; runs them again
            photo = "../source_image_inputs/mirrored.png"
            _set_parameters(page, {**first, "CONFIG": str(golden_dir / "tiny-vox.yaml"),
                                   "CHECKPOINT": str(golden_dir / "tiny-vox-cpk.pth.tar"), "DEVICE": "cpu",
                                   "SOURCE_IMAGE": photo})
            cell = page.locator(".jp-CodeCell", has=page.locator(".jp-InputArea", has_text="OUTPUT_DIR ="))
            _run_from(page, cell.first)
            page.locator(".jp-OutputArea-output", has_text="Model tiny-vox").wait_for(timeout=240_000)
            _wait_idle(page)
            _assert_no_traceback(page)
            text = _outputs(page)
            assert f"Photo: {root / 'source_image_inputs' / 'mirrored.png'}" in text, "the edited photo was not used"
            select = page.locator(".widget-dropdown select").first
            assert select.evaluate("(s) => s.options[s.selectedIndex].text") == "mirrored.png"

            # 6: the live cell, before its camera starts: a placeholder that says what to do, no broken image
            live = page.locator(".fomm-live").last
            live.scroll_into_view_if_needed()
            hints = live.locator(".fomm-placeholder")
            assert hints.count() == 2 and all("Start camera" in t for t in hints.all_inner_texts())
            assert live.locator(".fomm-result").is_hidden() and live.locator("video").is_hidden()
            box = hints.first.bounding_box()
            assert box is not None and box["height"] >= 100  # not a thin bar
            shot(page, "walk-live-placeholder")
            live.locator(".fomm-start").click(timeout=30_000)
            page.wait_for_function("(() => { const l = [...document.querySelectorAll('.fomm-live')].pop();"
                                   " return l.querySelector('.fomm-result').naturalWidth === 256; })()",
                                   timeout=60_000)
            assert live.locator(".fomm-placeholder").first.is_hidden()
            live.locator(".fomm-stop").click()

            # 2: a photo picked in the gallery after the parameter is kept when the cells run again
            select.select_option(label="astronaut.png")
            setup = page.locator(".jp-CodeCell", has=page.locator(".jp-InputArea", has_text="lab.configure("))
            _run_from(page, setup.first)
            page.wait_for_timeout(1500)
            _wait_idle(page)
            _assert_no_traceback(page)
            assert f"Photo: {root / 'source_image_inputs' / 'astronaut.png'}" in _outputs(page)
        except BaseException:
            shot(page, "walk-failed")
            raise
        finally:
            browser.close()
    assert json.loads((root / "notebooks" / "pristine.ipynb").read_text()) == json.loads(
        (repo_root / "notebooks" / "demo.ipynb").read_text())  # opening it wrote nothing
