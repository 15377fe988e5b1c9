"""The checkpoint registry and the cache directory rules (no network)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from fomm_lab.engine.config import available_configs
from fomm_lab.errors import DownloadError
from fomm_lab.hub.registry import MODELS, Mirror, available_models, cache_dir, model_info

FILES = {
    "vox": "vox-cpk.pth.tar", "vox-adv": "vox-adv-cpk.pth.tar", "taichi": "taichi-cpk.pth.tar",
    "taichi-adv": "taichi-adv-cpk.pth.tar", "bair": "bair-cpk.pth.tar", "mgif": "mgif-cpk.pth.tar",
    "fashion": "fashion.pth.tar", "nemo": "nemo-cpk.pth.tar",
    "vox-512": "vox-cpk-512.pdparams", "vox-mobile": "vox-mobile.pdparams",
}
TPSMM_FILES = {"tpsmm-vox": "vox.pth.tar", "tpsmm-taichi": "taichi.pth.tar", "tpsmm-ted": "ted.pth.tar",
               "tpsmm-mgif": "mgif.pth.tar"}
PADDLEGAN = "https://paddlegan.bj.bcebos.com/applications/first_order_model/"


def test_entries_and_their_shipped_configs():
    from fomm_lab.engine.families import load_any_config

    assert available_models() == [*FILES, *TPSMM_FILES]
    shipped = available_configs()
    for name, filename in {**FILES, **TPSMM_FILES}.items():
        info = model_info(name)
        assert (info.name, info.filename) == (name, filename)
        assert info.description and info.licence and info.family in ("fomm", "tpsmm")
        config = load_any_config(info.config)  # a shipped config of its family
        assert info.config in shipped or info.family == "tpsmm"
        assert config.frame_size == (info.frame_size, info.frame_size)
        assert config.is_face_model == info.face


def test_the_registry_says_which_models_are_of_faces():
    faces = {name for name, info in MODELS.items() if info.face}
    assert faces == {"vox", "vox-adv", "nemo", "vox-512", "vox-mobile", "tpsmm-vox"}


def test_mirrors_in_order_of_preference():
    for info in MODELS.values():
        if info.format == "pdparams" or info.family == "tpsmm":
            continue  # PaddleGAN's files: test_paddlegan_entries; TPSMM's: test_tpsmm_entries
        first = info.mirrors[0]
        assert (first.kind, first.url) == (
            "direct",
            "https://github.com/graphemecluster/first-order-model-demo/releases/download/"
            f"checkpoints/{info.filename}")
        kinds = [m.kind for m in info.mirrors]
        assert kinds[-2:] == ["manual", "manual"]  # the authors' shared folders, browser only
        assert all(m.url.startswith("https://") for m in info.mirrors)


def test_tpsmm_entries_point_to_the_authors_folders():
    for name in TPSMM_FILES:
        info = model_info(name)
        assert [m.kind for m in info.mirrors] == ["manual", "manual", "manual"]  # browser only: no direct link
        assert info.licence.startswith("MIT")


def test_vox_adv_has_the_avatarify_copies_and_md5():
    info = model_info("vox-adv")
    assert info.md5 == "8a45a24037871c045fbb8a6a8aa95ebc"
    assert "https://openavatarify.s3-avatarify.com/weights/vox-adv-cpk.pth.tar" in [
        m.url for m in info.mirrors]
    assert [m.kind for m in info.mirrors] == [
        "direct", "direct", "direct", "yandex", "gdrive", "manual", "manual"]
    assert all(i.md5 is None and i.sha256 is None for n, i in MODELS.items() if n != "vox-adv")


def test_paddlegan_entries():
    for name, config, filename in (("vox-512", "vox-512", "vox-cpk-512.pdparams"),
                                   ("vox-mobile", "vox-mobile-256", "vox-mobile.pdparams")):
        info = model_info(name)
        assert (info.config, info.format, info.filenames) == (config, "pdparams", (filename,))
        assert [(m.url, m.kind, m.format) for m in info.mirrors] == [(PADDLEGAN + filename, "direct", None)]


def test_vox_has_paddlegans_conversion_as_its_last_automatic_mirror():
    info = model_info("vox")
    automatic = [m for m in info.mirrors if m.kind != "manual"]
    assert (automatic[-1].url, automatic[-1].format) == (PADDLEGAN + "vox-cpk.pdparams", "pdparams")
    assert info.filenames == ("vox-cpk.pth.tar", "vox-cpk.pdparams")
    converted = info.file_entry("vox-cpk.pdparams")
    assert [m.url for m in converted.mirrors] == [PADDLEGAN + "vox-cpk.pdparams"]
    assert converted.mirrors[0].format is None and converted.md5 is None and converted.sha256 is None
    assert info.file_entry("vox-cpk.pth.tar") is info
    adv = model_info("vox-adv")  # a published md5 is of the torch file: never applied to another format's file
    assert adv.file_entry(adv.filename).md5 and adv.filenames == ("vox-adv-cpk.pth.tar",)
    with pytest.raises(ValueError, match="not one of the files"):
        info.file_entry("vox-cpk.zip")


def test_unknown_name_lists_known_names():
    with pytest.raises(DownloadError, match="Unknown checkpoint name 'voxx'.*vox, vox-adv, taichi"):
        model_info("voxx")


def test_mirror_from_url():
    yandex = Mirror.from_url("https://yadi.sk/d/M0FWpz2ExBfgAA")
    assert yandex.kind == "yandex"
    parts = urlsplit(yandex.url)
    assert parts.netloc == "cloud-api.yandex.net"
    assert parse_qs(parts.query) == {"public_key": ["https://yadi.sk/d/M0FWpz2ExBfgAA"]}
    drive = Mirror.from_url("https://drive.google.com/file/d/ABC_123/view?usp=sharing")
    assert drive == Mirror("https://drive.google.com/uc?export=download&id=ABC_123", "gdrive")
    assert Mirror.from_url("https://drive.google.com/open?id=XYZ").url.endswith("&id=XYZ")
    assert Mirror.from_url("http://10.0.0.5/w/vox.pth.tar") == Mirror("http://10.0.0.5/w/vox.pth.tar")
    assert Mirror.from_url("http://10.0.0.5/w/vox-cpk.pdparams").format == "pdparams"
    with pytest.raises(ValueError, match="mirror format 'onnx'"):
        Mirror("https://x/y.onnx", format="onnx")
    with pytest.raises(ValueError, match="mirror kind 'ftp'"):
        Mirror("ftp://x", "ftp")


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FOMM_LAB_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir(create=False) == tmp_path / "home" / ".cache" / "fomm-lab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fomm-lab"
    assert (tmp_path / "xdg" / "fomm-lab").is_dir()
    monkeypatch.setenv("FOMM_LAB_HOME", str(tmp_path / "env"))
    assert cache_dir(create=False) == tmp_path / "env"
    assert not (tmp_path / "env").exists()
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_cache_dir_not_creatable(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("FOMM_LAB_HOME", str(blocker / "cache"))
    with pytest.raises(DownloadError, match=f"{blocker / 'cache'}.*Set FOMM_LAB_HOME"):
        cache_dir()
    assert cache_dir(create=False) == Path(blocker / "cache")
