"""The ```python examples of README.md and docs/*.md run as written, so they stay copy-pasteable.

Each block runs in its own namespace, in a fresh folder holding the files the examples name (a real face photo,
short face clips with sound), offline: the registry's model names are served from a local HTTP mirror that holds
the tiny golden checkpoints (``vox`` is the tiny First Order Motion Model, the segment model and face parser of
the swap and the face enhancers are the tiny golden ones), through a fresh cache (``FOMM_LAB_HOME``). A block that cannot run here
(it needs a GPU, a webcam or a JupyterLab page) says so in the markdown right before it::

    <!-- not run: needs a webcam in a JupyterLab page -->

and is only compiled. The blocks are found again on every run: a new example is tested without a change here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--\s*not run:(?P<why>[^>]*?)\s*-->\s*\n)?```python\n(?P<code>.*?)```", re.S)
GOLDEN = REPO / "tests" / "fixtures"


@dataclasses.dataclass(frozen=True)
class Example:
    where: str
    code: str
    why_not_run: str | None


def examples() -> list[Example]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text[:match.start("code")].count("\n")
            why = match.group("why")
            found.append(Example(f"{path.relative_to(REPO)}:{line}", match.group("code"), why.strip() if why else None))
    return found


EXAMPLES = examples()


def test_the_docs_have_examples_and_most_run():
    assert len(EXAMPLES) >= 8
    assert sum(e.why_not_run is None for e in EXAMPLES) >= len(EXAMPLES) - 2
    for example in EXAMPLES:  # a marker says why, in words
        assert example.why_not_run is None or len(example.why_not_run) > 8, example.where


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    """The files the examples name, made once: photos of a real face, short face clips with sound."""
    from clips import make_face_clip
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("media")
    photo = Image.fromarray(data.astronaut())
    photo.save(folder / "photo.jpg", quality=92)
    photo.crop((100, 0, 356, 256)).save(folder / "face-crop.png")
    make_face_clip(folder / "clip.mp4", seconds=1.5, fps=10, size=(320, 240), audio=True)
    files = {name: (folder / source).read_bytes() for name, source in (
        ("photo.jpg", "photo.jpg"), ("me.jpg", "photo.jpg"), ("face.jpg", "photo.jpg"),
        ("face-crop.png", "face-crop.png"), ("clip.mp4", "clip.mp4"), ("phone.mp4", "clip.mp4"))}
    make_face_clip(folder / "phone.mov", seconds=1.5, fps=10, size=(320, 240), audio=True)
    files["phone.mov"] = (folder / "phone.mov").read_bytes()
    files["a.mp4"] = files["b.mp4"] = files["clip.mp4"]
    files["GFPGANv1.4.pth"] = (GOLDEN / "enhance-golden" / "gfpgan-tiny-512.pth").read_bytes()
    return files


@pytest.fixture(scope="module")
def mirror():
    """A local HTTP server holding the tiny golden weights."""
    from httpserver import LocalServer

    with LocalServer() as server:
        urls = {name: server.add(f"/{name}", path.read_bytes()) for name, path in (
            ("vox", GOLDEN / "fomm-golden" / "tiny-vox-cpk.pth.tar"),
            ("tpsmm-vox", GOLDEN / "tpsmm-golden" / "tiny-vox.pth.tar"),
            ("vox-10segments", GOLDEN / "swap-golden" / "tiny-vox-10segments.pth.tar"),
            ("bisenet", GOLDEN / "swap-golden" / "tiny-bisenet-79999_iter.pth"),
            ("gpen", GOLDEN / "enhance-golden" / "gpen-tiny-512.pdparams"),
            ("gfpgan", GOLDEN / "enhance-golden" / "gfpgan-tiny-512.pth"))}
        yield urls


def _offline_registry(monkeypatch, urls: dict[str, str]) -> None:
    """The registry's names point at the tiny golden models on the local mirror (and nowhere else)."""
    from fomm_lab.hub import registry
    from fomm_lab.hub.registry import Mirror

    tiny = {"vox": GOLDEN / "fomm-golden" / "tiny-vox.yaml", "tpsmm-vox": GOLDEN / "tpsmm-golden" / "tiny-vox.yaml",
            "vox-10segments": GOLDEN / "swap-golden" / "tiny-vox-10segments.yaml"}
    for table in (registry.MODELS, registry.SWAPPERS, registry.FACE_PARSERS, registry.ENHANCERS):
        for name, entry in list(table.items()):
            mirrors = (Mirror(urls[name]),) if name in urls else ()
            config = str(tiny[name]) if name in tiny else entry.config
            if table is registry.SWAPPERS and name in tiny:  # the swap finds its config as <shipped folder>/<name>.yaml
                config = str(tiny[name].with_suffix(""))
            monkeypatch.setitem(table, name, dataclasses.replace(entry, mirrors=mirrors, config=config, md5=None,
                                                                 sha256=None, sha256_prefix=None, size=None))


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_example_runs(example: Example, media, mirror, tmp_path, monkeypatch):
    compiled = compile(example.code, example.where, "exec")  # every block is at least valid Python
    if example.why_not_run is not None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import torch

    torch.set_num_threads(1)
    for name, data in media.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOMM_LAB_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no face-alignment weights: Haar, offline
    _offline_registry(monkeypatch, mirror)
    exec(compiled, {"__name__": "__docs_example__"})  # noqa: S102 - the docs' own code, run as a reader would
