"""TPSMM checkpoints through the registry: downloaded from a real HTTP server on 127.0.0.1 or placed by hand, and
verified by TPSMM's reader (a FOMM reader would refuse them for lacking ``generator``)."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
from httpserver import LocalServer

from fomm_lab import load_model
from fomm_lab.engine.weights import ensure_checkpoint
from fomm_lab.errors import CheckpointError, DownloadError
from fomm_lab.hub import registry
from fomm_lab.hub.registry import Mirror

TPSMM = Path(__file__).resolve().parents[1] / "fixtures" / "tpsmm-golden"
TINY_YAML, TINY_CHECKPOINT = TPSMM / "tiny-vox.yaml", TPSMM / "tiny-vox.pth.tar"


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


def tiny_entry(monkeypatch, *mirrors: Mirror, **facts) -> registry.RemoteFile:
    """``tpsmm-vox`` as the registry has it, but with the tiny fixture's config (the full-size one would not fit
    the tiny weights) and the given mirrors."""
    entry = dataclasses.replace(registry.MODELS["tpsmm-vox"], config=str(TINY_YAML), mirrors=mirrors, **facts)
    monkeypatch.setitem(registry.MODELS, "tpsmm-vox", entry)
    return entry


def test_served_tpsmm_checkpoint_is_downloaded_verified_and_loaded(server, tmp_path, monkeypatch):
    data = TINY_CHECKPOINT.read_bytes()
    url = server.add("/vox.pth.tar", data)
    tiny_entry(monkeypatch, Mirror(url), sha256=hashlib.sha256(data).hexdigest())
    model = load_model("tpsmm-vox", cache_dir=tmp_path, progress=False, device="cpu")
    assert model.family == "tpsmm" and model.name == "tpsmm-vox" and model.has_avd
    assert model.checkpoint == tmp_path / "vox.pth.tar" and (tmp_path / "vox.pth.tar").read_bytes() == data
    assert (tmp_path / "vox.pth.tar.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()
    assert len(server.seen) == 1
    load_model("tpsmm-vox", cache_dir=tmp_path, progress=False, device="cpu")  # cached: no request
    assert len(server.seen) == 1


def test_placed_tpsmm_checkpoint_is_found_and_loaded(tmp_path, monkeypatch):
    shutil.copy(TINY_CHECKPOINT, tmp_path / "vox.pth.tar")  # the authors' name, as the registry says
    tiny_entry(monkeypatch, *registry.MODELS["tpsmm-vox"].mirrors)  # manual mirrors only: no request is possible
    model = load_model("tpsmm-vox", cache_dir=tmp_path, progress=False, device="cpu")
    assert model.family == "tpsmm" and model.checkpoint == tmp_path / "vox.pth.tar"
    assert (tmp_path / "vox.pth.tar.sha256").exists()  # verified once, recorded


def test_registry_entry_verifies_with_the_tpsmm_reader(tmp_path):
    """The real ``tpsmm-vox`` entry: a placed TPSMM file passes weights.ensure_checkpoint (the CLI's route), a FOMM
    checkpoint placed under its name is refused as such, and a missing one says where to put it."""
    with pytest.raises(DownloadError) as missing:
        ensure_checkpoint("tpsmm-vox", cache_dir=tmp_path, progress=False)
    assert str(tmp_path / "vox.pth.tar") in str(missing.value)
    shutil.copy(TINY_CHECKPOINT, tmp_path / "vox.pth.tar")
    assert ensure_checkpoint("tpsmm-vox", cache_dir=tmp_path, progress=False) == tmp_path / "vox.pth.tar"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(TPSMM.parent / "fomm-golden" / "tiny-vox-cpk.pth.tar", other / "vox.pth.tar")
    with pytest.raises(CheckpointError, match="is a First Order Motion Model checkpoint.*placed by hand"):
        ensure_checkpoint("tpsmm-vox", cache_dir=other, progress=False)


def test_fomm_entry_refuses_a_tpsmm_file_naming_it(tmp_path):
    shutil.copy(TINY_CHECKPOINT, tmp_path / "vox-cpk.pth.tar")
    with pytest.raises(CheckpointError, match=r"Thin-Plate Spline Motion Model checkpoint.*use a TPSMM config "
                                              r"\(e\.g\. tpsmm-vox\)"):
        ensure_checkpoint("vox", cache_dir=tmp_path, progress=False)
