"""``fomm-lab download NAME`` fetches every kind of registry file (animation checkpoints, face enhancers, segment
models, the face parser) from a mirror on this machine, and verifies each as what it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from httpserver import LocalServer

from fomm_lab.cli import main
from fomm_lab.errors import DownloadError
from fomm_lab.hub.registry import downloadable
from fomm_lab.pipeline.weights import download

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FILES = {
    "gpen": FIXTURES / "enhance-golden" / "gpen-tiny-512.pdparams",
    "gfpgan": FIXTURES / "enhance-golden" / "gfpgan-tiny-512.pth",
    "vox-10segments": FIXTURES / "swap-golden" / "tiny-vox-10segments.pth.tar",
    "bisenet": FIXTURES / "swap-golden" / "tiny-bisenet-79999_iter.pth",
    "tpsmm-vox": FIXTURES / "tpsmm-golden" / "tiny-vox.pth.tar",
    "vox": FIXTURES / "fomm-golden" / "tiny-vox-cpk.pth.tar",
}


@pytest.mark.parametrize("name", FILES)
def test_each_kind_is_downloaded_and_verified_as_what_it_is(name, tmp_path):
    entry = downloadable()[name]
    with LocalServer() as server:
        url = server.add(f"/{entry.filename}", FILES[name].read_bytes())
        path = download(name, cache_dir=tmp_path, url=url, progress=False)
    assert path == tmp_path / entry.filename and path.read_bytes() == FILES[name].read_bytes()


@pytest.mark.parametrize("name,wrong", [("gpen", "vox"), ("bisenet", "gfpgan"), ("vox-10segments", "vox"),
                                        ("tpsmm-vox", "vox-10segments")])
def test_another_kinds_file_is_refused_and_not_kept(name, wrong, tmp_path):
    entry = downloadable()[name]
    with LocalServer() as server:
        url = server.add(f"/{entry.filename}", FILES[wrong].read_bytes())
        with pytest.raises(DownloadError, match="failed verification"):
            download(name, cache_dir=tmp_path, url=url, progress=False)
    assert not (tmp_path / entry.filename).exists()


def test_models_lists_every_kind(tmp_path, capsys):
    assert main(["models", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name, kind in (("vox", "fomm"), ("tpsmm-vox", "tpsmm"), ("gpen", "enhance"), ("gfpgan", "enhance"),
                       ("vox-10segments", "swap"), ("bisenet", "parser")):
        assert any(line.split()[:2] == [name, kind] for line in out.splitlines()), out
