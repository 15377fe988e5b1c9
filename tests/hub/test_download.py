"""Checkpoint download against a real HTTP server on 127.0.0.1 serving the golden checkpoint."""

from __future__ import annotations

import hashlib
import shutil
import socket
from pathlib import Path

import pytest
import torch
from httpserver import LocalServer

from fomm_lab.engine.weights import download_checkpoint, ensure_checkpoint
from fomm_lab.errors import CheckpointError, DownloadError
from fomm_lab.hub.download import cache_status
from fomm_lab.hub.registry import Mirror, RemoteFile

CUT = 300_000  # bytes sent before a connection is dropped


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def good(golden_dir) -> bytes:
    return (golden_dir / "tiny-vox-cpk.pth.tar").read_bytes()


@pytest.fixture(scope="module")
def other(golden_dir) -> bytes:
    """A valid checkpoint, but not the one asked for."""
    return (golden_dir / "tiny-mgif-cpk.pth.tar").read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny(*urls: str | Mirror, **checksums) -> RemoteFile:
    mirrors = tuple(u if isinstance(u, Mirror) else Mirror(u) for u in urls)
    return RemoteFile("tiny", "tiny-cpk.pth.tar", "vox-256", mirrors, **checksums)


def dead_url() -> str:
    """A URL on a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.pth.tar"


def assert_cached(path: Path, data: bytes) -> None:
    assert path.read_bytes() == data
    assert Path(f"{path}.sha256").read_text().split() == [sha(data), path.name]
    assert not Path(f"{path}.part").exists()


def test_download_verifies_and_records_sha256(server, tmp_path, good, capsys):
    url = server.add("/tiny.pth.tar", good)
    path = ensure_checkpoint(tiny(url), cache_dir=tmp_path)
    assert path == tmp_path / "tiny-cpk.pth.tar"
    assert_cached(path, good)
    assert "tiny-cpk.pth.tar" in capsys.readouterr().err  # the progress bar


def test_resumes_with_range_after_connection_cut(server, tmp_path, good):
    url = server.add("/tiny.pth.tar", good, cuts=[CUT])
    path = ensure_checkpoint(tiny(url), cache_dir=tmp_path, progress=False)
    assert_cached(path, good)
    first, second = server.seen
    assert first.range is None
    resumed_at = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= CUT  # bytes of a chunk cut short are fetched again


def test_restarts_when_server_ignores_range(server, tmp_path, good):
    url = server.add("/tiny.pth.tar", good, cuts=[CUT], ignore_range=True)
    path = ensure_checkpoint(tiny(url), cache_dir=tmp_path, progress=False)
    assert_cached(path, good)
    assert len(server.seen) == 2


def test_resumes_part_left_by_an_interrupted_run(server, tmp_path, good):
    (tmp_path / "tiny-cpk.pth.tar.part").write_bytes(good[:CUT])
    url = server.add("/tiny.pth.tar", good)
    path = ensure_checkpoint(tiny(url), cache_dir=tmp_path, progress=False)
    assert_cached(path, good)
    assert [s.range for s in server.seen] == [f"bytes={CUT}-"]


def test_bad_leftover_part_is_discarded_and_downloaded_afresh(server, tmp_path, good):
    (tmp_path / "tiny-cpk.pth.tar.part").write_bytes(b"\0" * CUT)
    url = server.add("/tiny.pth.tar", good)
    path = ensure_checkpoint(tiny(url, sha256=sha(good)), cache_dir=tmp_path, progress=False)
    assert_cached(path, good)
    assert [s.range for s in server.seen] == [f"bytes={CUT}-", None]


def test_checksum_mismatch_removes_file_and_uses_next_mirror(server, tmp_path, good, other):
    wrong = server.add("/wrong.pth.tar", other)
    right = server.add("/right.pth.tar", good)
    path = ensure_checkpoint(tiny(wrong, right, sha256=sha(good)), cache_dir=tmp_path,
                             progress=False)
    assert_cached(path, good)
    assert [s.path for s in server.seen] == ["/wrong.pth.tar", "/right.pth.tar"]


def test_md5_mismatch_alone_fails_and_leaves_nothing(server, tmp_path, other):
    wrong = server.add("/wrong.pth.tar", other)
    with pytest.raises(DownloadError, match="md5 is .* but tiny-cpk.pth.tar should have 0123"):
        ensure_checkpoint(tiny(wrong, md5="0123456789abcdef0123456789abcdef"),
                          cache_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-cpk.pth.tar.lock"]  # the lock stays, empty


def test_structural_check_without_checksum(server, tmp_path, good):
    not_fomm = tmp_path / "not-fomm.pth"
    torch.save({"model": torch.zeros(3)}, not_fomm)
    first = server.add("/other-model.pth", not_fomm.read_bytes())
    second = server.add("/tiny.pth.tar", good)
    cache = tmp_path / "cache"
    path = ensure_checkpoint(tiny(first, second), cache_dir=cache, progress=False)
    assert_cached(path, good)
    with pytest.raises(DownloadError, match="no 'generator' or 'kp_detector' entry"):
        ensure_checkpoint(tiny(first), cache_dir=tmp_path / "cache2", progress=False)


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_is_skipped(server, tmp_path, good, content_type):
    page = b"<!DOCTYPE html><html><body>Download quota exceeded</body></html>"
    html = server.add("/quota", page, content_type=content_type)
    right = server.add("/tiny.pth.tar", good)
    path = ensure_checkpoint(tiny(html, right), cache_dir=tmp_path, progress=False)
    assert_cached(path, good)
    with pytest.raises(DownloadError, match="served an HTML page instead of the file"):
        ensure_checkpoint(tiny(html), cache_dir=tmp_path / "other", progress=False)


def test_404_on_first_mirror(server, tmp_path, good):
    right = server.add("/tiny.pth.tar", good)
    path = ensure_checkpoint(tiny(server.url("/missing"), right), cache_dir=tmp_path,
                             progress=False)
    assert_cached(path, good)
    assert [s.path for s in server.seen] == ["/missing", "/tiny.pth.tar"]


def test_every_mirror_failing_explains_what_to_do(server, tmp_path):
    html = server.add("/page", b"<html>sign in</html>", content_type="text/html")
    dead = dead_url()
    info = tiny(server.url("/missing"), html, dead,
                Mirror("https://example.org/folder", "manual", "a shared folder"))
    with pytest.raises(DownloadError) as err:
        ensure_checkpoint(info, cache_dir=tmp_path, progress=False)
    text = str(err.value)
    assert f"{server.url('/missing')}: HTTP 404" in text
    assert f"{html}: served an HTML page" in text
    assert f"{dead}: cannot connect to 127.0.0.1" in text
    assert "https://example.org/folder (a shared folder)" in text
    assert text.splitlines()[-1] == f"or put the file, as it is (do not unpack the .pth.tar), at {tmp_path / 'tiny-cpk.pth.tar'}"
    assert "download('tiny', url=URL)" in text.splitlines()[0]  # Python's words here
    from fomm_lab.cli import render_error

    assert "(`fomm-lab download tiny --url URL`)" in render_error(err.value).splitlines()[0]  # the CLI's
    assert [s.path for s in server.seen] == ["/missing", "/page"]


def test_cached_file_is_reused_without_a_request(server, tmp_path, good):
    url = server.add("/tiny.pth.tar", good)
    first = ensure_checkpoint(tiny(url), cache_dir=tmp_path, progress=False)
    second = ensure_checkpoint(tiny(url, dead_url()), cache_dir=tmp_path, progress=False)
    assert first == second
    assert len(server.seen) == 1


def test_corrupted_cache_is_downloaded_again(server, tmp_path, good):
    url = server.add("/tiny.pth.tar", good)
    path = ensure_checkpoint(tiny(url), cache_dir=tmp_path, progress=False)
    path.write_bytes(good[:CUT])  # damaged after it was verified
    assert ensure_checkpoint(tiny(url), cache_dir=tmp_path, progress=False) == path
    assert_cached(path, good)
    assert len(server.seen) == 2


def test_replaced_but_valid_file_is_kept(server, tmp_path, good, other):
    url = server.add("/tiny.pth.tar", good)
    path = ensure_checkpoint(tiny(url), cache_dir=tmp_path, progress=False)
    path.write_bytes(other)  # the user put another valid checkpoint there by hand
    assert ensure_checkpoint(tiny(url), cache_dir=tmp_path, progress=False) == path
    assert_cached(path, other)
    assert len(server.seen) == 1


def test_manually_placed_file_is_used(tmp_path, good, golden_dir):
    shutil.copy(golden_dir / "tiny-vox-cpk.pth.tar", tmp_path / "tiny-cpk.pth.tar")
    path = ensure_checkpoint(tiny(dead_url(), sha256=sha(good)), cache_dir=tmp_path)
    assert_cached(path, good)


def test_manually_placed_bad_file_is_reported_not_deleted(tmp_path):
    placed = tmp_path / "tiny-cpk.pth.tar"
    placed.write_bytes(b"<html><body>Google Drive - Virus scan warning</body></html>")
    with pytest.raises(CheckpointError, match=r"is an HTML page.*placed by hand"):
        ensure_checkpoint(tiny(dead_url()), cache_dir=tmp_path, progress=False)
    assert placed.exists()


def test_cache_dir_that_cannot_be_created(tmp_path, good):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DownloadError, match=f"{blocker / 'cache'}.*Set FOMM_LAB_HOME"):
        ensure_checkpoint(tiny(dead_url()), cache_dir=blocker / "cache", progress=False)


def test_yandex_public_link_is_resolved(server, tmp_path, good):
    file_url = server.add("/yandex-file", good)
    api = server.add_json("/v1/disk/public/resources/download", {"href": file_url})
    path = ensure_checkpoint(tiny(Mirror(api + "?public_key=x", "yandex")), cache_dir=tmp_path,
                             progress=False)
    assert_cached(path, good)
    assert server.seen[0].query == {"public_key": ["x"]}


def test_yandex_error_is_reported(server, tmp_path):
    api = server.add_json("/api", {"error": "DiskNotFoundError", "description": "Resource not found."},
                          status=404)
    with pytest.raises(DownloadError, match="Yandex Disk API answered HTTP 404: Resource not found"):
        ensure_checkpoint(tiny(Mirror(api, "yandex")), cache_dir=tmp_path, progress=False)


def test_google_drive_confirmation_form_is_followed(server, tmp_path, good):
    server.add("/usercontent", good)
    page = f"""<!DOCTYPE html><html><body><p>Google Drive can't scan this file for viruses.</p>
        <form id="download-form" action="{server.url('/usercontent')}" method="get">
        <input type="submit" value="Download anyway">
        <input type="hidden" name="id" value="FILEID"><input type="hidden" name="export" value="download">
        <input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-1">
        </form></body></html>""".encode()
    uc = server.add("/uc", page, content_type="text/html; charset=utf-8")
    path = ensure_checkpoint(tiny(Mirror(uc + "?export=download&id=FILEID", "gdrive")),
                             cache_dir=tmp_path, progress=False)
    assert_cached(path, good)
    assert server.hits("/usercontent")[-1].query == {
        "id": ["FILEID"], "export": ["download"], "confirm": ["t"], "uuid": ["u-1"]}


def test_google_drive_quota_page_is_skipped(server, tmp_path, good):
    page = b"<html><body>Too many users have viewed or downloaded this file recently.</body></html>"
    uc = server.add("/uc", page, content_type="text/html")
    right = server.add("/tiny.pth.tar", good)
    info = tiny(Mirror(uc + "?id=X", "gdrive"), right)
    assert_cached(ensure_checkpoint(info, cache_dir=tmp_path, progress=False), good)
    with pytest.raises(DownloadError, match="Google Drive download quota exceeded"):
        ensure_checkpoint(tiny(Mirror(uc + "?id=X", "gdrive")), cache_dir=tmp_path / "b",
                          progress=False)


def test_download_checkpoint_from_given_url_and_sha256(server, tmp_path, good, other):
    url = server.add("/private/vox-cpk.pth.tar", good)
    path = download_checkpoint("vox", cache_dir=tmp_path, url=url, sha256=sha(good).upper(),
                               progress=False)
    assert path == tmp_path / "vox-cpk.pth.tar"
    assert_cached(path, good)
    wrong = server.add("/private/other.pth.tar", other)
    with pytest.raises(DownloadError, match=f"{wrong}: the downloaded file failed verification"):
        download_checkpoint("vox-adv", cache_dir=tmp_path, url=wrong, sha256=sha(good),
                            progress=False)
    with pytest.raises(DownloadError, match="64 hexadecimal digits"):
        download_checkpoint("vox", cache_dir=tmp_path, url=url, sha256="abc")


def test_cache_status_rows(server, tmp_path, good):
    download_checkpoint("mgif", cache_dir=tmp_path, url=server.add("/m", good), progress=False)
    (tmp_path / "bair-cpk.pth.tar").write_bytes(b"placed by hand")
    rows = {row.name: row for row in cache_status(tmp_path)}
    assert rows["mgif"].cached and rows["mgif"].verified and rows["mgif"].size == len(good)
    assert rows["bair"].cached and not rows["bair"].verified
    assert not rows["vox"].cached and rows["vox"].size is None
    assert rows["vox"].path == tmp_path / "vox-cpk.pth.tar"
