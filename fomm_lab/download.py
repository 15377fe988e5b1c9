"""Fetch registry checkpoints into the cache: resumable, verified, with mirrors.

A download goes to ``<file>.part`` in the cache directory, resumes with HTTP ``Range`` after a
broken connection, skips mirrors that answer with an HTML page (quota warnings, login pages),
is verified (published checksum, else a structural check that it is a FOMM checkpoint) and only
then renamed into place. The file's sha256 is written beside it (``<file>.sha256``, the format
of ``sha256sum``) so later corruption is noticed the next time the checkpoint is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin

import requests

from fomm_lab.errors import CheckpointError, DownloadError
from fomm_lab.registry import MODELS, Mirror, ModelInfo, model_info
from fomm_lab.registry import cache_dir as resolve_cache_dir

__all__ = ["CacheEntry", "cache_status", "download_checkpoint", "ensure_checkpoint"]

log = logging.getLogger(__name__)

#: (connect, read) timeouts in seconds for every request.
TIMEOUT = (15.0, 60.0)
#: Bytes read per chunk of a download.
CHUNK = 1 << 16
#: Most requests made to one URL for one file (each after the first resumes with Range).
MAX_ATTEMPTS = 20
#: Bytes of a response sniffed for an HTML page.
_SNIFF = 512

_RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class _MirrorFailed(Exception):
    """One mirror could not deliver the file; the message says why (for the final error)."""


@dataclass(frozen=True)
class CacheEntry:
    """One row of :func:`cache_status`: a registry entry and the state of its cached file.

    ``size`` is in bytes (None when not cached); ``verified`` means its sha256 was recorded
    after a successful verification (a file placed by hand is verified on first use).
    """

    name: str
    filename: str
    path: Path
    cached: bool
    size: int | None
    verified: bool


def ensure_checkpoint(
    name: str | ModelInfo,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Path of the checkpoint ``name`` in the cache, downloading and verifying it if needed.

    ``name`` is a registry name (see :func:`fomm_lab.registry.available_models`) or a
    :class:`ModelInfo` (for private mirrors). A cached file whose recorded sha256 still matches is
    returned without any network request; a file placed by hand is verified and then used. If
    every mirror fails, :class:`DownloadError` lists each URL with its failure and the exact path
    to place the file at by hand. ``progress=False`` hides the progress bar.
    """
    info = name if isinstance(name, ModelInfo) else model_info(name)
    target = resolve_cache_dir(cache_dir, create=False) / info.filename
    if _cached_is_usable(target, info):
        return target
    target = resolve_cache_dir(cache_dir) / info.filename
    return _download(info, target, progress)


def download_checkpoint(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Like :func:`ensure_checkpoint`, optionally from another ``url`` and with another checksum.

    ``url`` replaces the registry's mirrors (Google Drive and Yandex Disk share links are
    understood). ``sha256`` (64 hex digits) replaces the registry's checksums. A valid cached
    file is kept as is; delete it to fetch it again.
    """
    info = model_info(name)
    if url:
        info = dataclasses.replace(info, mirrors=(Mirror.from_url(url),))
    if sha256:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise DownloadError(
                f"--sha256 {sha256!r} is not a sha256 digest: expected 64 hexadecimal digits "
                "(as printed by `sha256sum FILE`)."
            )
        info = dataclasses.replace(info, sha256=sha256.lower(), md5=None)
    return ensure_checkpoint(info, cache_dir, progress)


def cache_status(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """State of every registry entry in the cache (no network, no hashing, creates nothing)."""
    root = resolve_cache_dir(cache_dir, create=False)
    rows = []
    for info in MODELS.values():
        path = root / info.filename
        cached = path.is_file()
        rows.append(CacheEntry(
            info.name, info.filename, path, cached,
            path.stat().st_size if cached else None,
            cached and _sidecar(path).is_file(),
        ))
    return rows


# --- the cached file -----------------------------------------------------------------------------

def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_sha256(path: Path) -> str | None:
    try:
        return _sidecar(path).read_text().split()[0].lower()
    except (OSError, IndexError):
        return None


def _record_sha256(path: Path, digest: str) -> None:
    """Write ``<file>.sha256`` atomically; a read-only cache just goes without one."""
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    try:
        tmp.write_text(f"{digest}  {path.name}\n")
        os.replace(tmp, sidecar)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("could not record the checksum of %s (%s); it will be re-verified next time",
                    path, exc)


def _cached_is_usable(path: Path, info: ModelInfo) -> bool:
    """True when ``path`` holds a good copy of ``info``'s checkpoint.

    A file with a recorded sha256 that no longer verifies is removed (it will be downloaded
    again); a file placed by hand that fails verification raises :class:`DownloadError`, since
    only the user knows where it came from.
    """
    if not path.exists():
        return False
    recorded = _recorded_sha256(path)
    if recorded and path.is_file():
        actual = _digests(path)["sha256"]
        if actual == recorded and info.sha256 in (None, actual):
            return True
        log.warning("%s changed since it was verified (sha256 %s, recorded %s); checking it again",
                    path, actual, recorded)
    try:
        digest = _verify(path, info)
    except CheckpointError as exc:
        if recorded is None:
            raise CheckpointError(
                f"{exc} This file was placed by hand: replace it with the original "
                f"{info.filename} (not unpacked), or delete it to download {info.name!r} again."
            ) from exc
        log.warning("%s; removing it and downloading %r again", exc, info.name)
        try:
            path.unlink()
            _sidecar(path).unlink(missing_ok=True)
        except OSError as err:
            raise CheckpointError(f"{exc} It cannot be removed ({err}): replace it by hand.") from err
        return False
    _record_sha256(path, digest)
    return True


def _digests(path: Path) -> dict[str, str]:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _verify(path: Path, info: ModelInfo) -> str:
    """Check ``path`` against ``info``; return its sha256 or raise :class:`CheckpointError`."""
    from fomm_lab.checkpoint import read_checkpoint

    if path.is_dir():
        read_checkpoint(path)  # raises, saying whether it is an unpacked checkpoint
    digests = _digests(path)
    for algo in ("sha256", "md5"):
        expected = getattr(info, algo)
        if expected and digests[algo] != expected.lower():
            raise CheckpointError(
                f"{path}: {algo} is {digests[algo]} but {info.filename} should have {expected}; "
                "the file is damaged, incomplete or a different file."
            )
    if not (info.sha256 or info.md5):
        read_checkpoint(path)  # raises unless it holds `generator` and `kp_detector`
    return digests["sha256"]


# --- downloading ---------------------------------------------------------------------------------

def _download(info: ModelInfo, target: Path, progress: bool) -> Path:
    """Try each automatic mirror in order; see :func:`ensure_checkpoint`."""
    part = target.with_name(target.name + ".part")
    failures: list[str] = []
    with requests.Session() as session:
        session.headers.update({"User-Agent": "fomm-lab", "Accept-Encoding": "identity"})
        for mirror in info.mirrors:
            if mirror.kind == "manual":
                continue
            try:
                digest = _from_mirror(session, mirror, part, info, progress)
            except _MirrorFailed as exc:
                log.info("mirror %s failed: %s", mirror.url, exc)
                failures.append(f"  - {mirror.url}: {exc}")
                continue
            os.replace(part, target)
            _record_sha256(target, digest)
            return target
    raise DownloadError(_failure_message(info, target, failures))


def _from_mirror(session: requests.Session, mirror: Mirror, part: Path, info: ModelInfo,
                 progress: bool) -> str:
    """Download ``mirror`` into ``part`` and verify it; return the sha256."""
    url = _resolve(session, mirror)
    kept = part.exists() and part.stat().st_size > 0  # bytes from an earlier attempt
    while True:
        _fetch(session, url, part, progress, info.filename)
        try:
            return _verify(part, info)
        except CheckpointError as exc:
            part.unlink(missing_ok=True)
            if not kept:
                raise _MirrorFailed(f"the downloaded file failed verification: {exc}") from exc
            kept = False
            log.info("bytes kept from an earlier attempt were bad; downloading %s afresh", url)


def _fetch(session: requests.Session, url: str, part: Path, progress: bool, desc: str) -> None:
    """Download ``url`` into ``part``, continuing from the bytes already there when the server
    honours ``Range``; retry while each attempt makes progress."""
    for _attempt in range(MAX_ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        total = None
        try:
            with session.get(url, headers=headers, stream=True, timeout=TIMEOUT) as resp:
                if resp.status_code == 416 and have:
                    if _range_total(resp) == have:
                        return  # the previous attempt had already got everything
                    part.unlink()
                    continue
                if resp.status_code >= 400:
                    raise _MirrorFailed(f"HTTP {resp.status_code} {resp.reason}")
                if _is_html_type(resp):
                    raise _MirrorFailed(_HTML_PAGE)
                if have and not (resp.status_code == 206 and _range_start(resp) == have):
                    have = 0  # the server ignored Range: start over
                total = _range_total(resp) if resp.status_code == 206 else _content_length(resp)
                _write_stream(resp, part, have, total, progress, desc)
        except _RETRYABLE as exc:
            got = part.stat().st_size if part.exists() else 0
            if got <= have:
                raise _MirrorFailed(f"connection failed: {exc}") from exc
            log.info("connection to %s broke after %d bytes (%s); resuming", url, got, exc)
            continue
        got = part.stat().st_size
        if total is None or got >= total:
            return
        if got <= have:
            raise _MirrorFailed(f"the server stopped sending at byte {got} of {total}")
    raise _MirrorFailed(f"still incomplete after {MAX_ATTEMPTS} attempts")


def _write_stream(resp: requests.Response, part: Path, have: int, total: int | None,
                  progress: bool, desc: str) -> None:
    """Append the body of ``resp`` to ``part`` at offset ``have`` (0: truncate first)."""
    from tqdm.auto import tqdm

    chunks = resp.iter_content(CHUNK)
    if have == 0:
        first = next(chunks, b"")
        if _looks_like_html(first):
            raise _MirrorFailed(_HTML_PAGE)
        chunks = _prepend(first, chunks)
    with open(part, "ab" if have else "wb") as f, tqdm(
        total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
        desc=desc, disable=not progress,
    ) as bar:
        for chunk in chunks:
            f.write(chunk)
            bar.update(len(chunk))


def _prepend(first: bytes, rest):
    yield first
    yield from rest


_HTML_PAGE = ("served an HTML page instead of the file (a quota warning, login or error page); "
              "skipped")


def _is_html_type(resp: requests.Response) -> bool:
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower() in {
        "text/html", "application/xhtml+xml"}


def _looks_like_html(data: bytes) -> bool:
    head = data[:_SNIFF].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")) or \
        b"<html" in head


def _content_length(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _range_start(resp: requests.Response) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _range_total(resp: requests.Response) -> int | None:
    match = re.search(r"/(\d+)\s*$", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


# --- mirror kinds --------------------------------------------------------------------------------

def _resolve(session: requests.Session, mirror: Mirror) -> str:
    """The URL that serves the file itself for ``mirror``."""
    try:
        if mirror.kind == "yandex":
            return _resolve_yandex(session, mirror.url)
        if mirror.kind == "gdrive":
            return _resolve_gdrive(session, mirror.url)
    except _RETRYABLE as exc:
        raise _MirrorFailed(f"connection failed: {exc}") from exc
    return mirror.url


def _resolve_yandex(session: requests.Session, api_url: str) -> str:
    """Ask the Yandex Disk public API for the file's download address."""
    resp = session.get(api_url, timeout=TIMEOUT)
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    if resp.status_code != 200 or not answer.get("href"):
        why = answer.get("description") or answer.get("error") or resp.reason
        raise _MirrorFailed(f"Yandex Disk API answered HTTP {resp.status_code}: {why}")
    return answer["href"]


class _FormParser(HTMLParser):
    """Collects each ``<form>``'s action and hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append((attr.get("action", ""), {}))
        elif tag == "input" and self.forms and attr.get("type") == "hidden" and attr.get("name"):
            self.forms[-1][1][attr["name"]] = attr.get("value", "")


def _resolve_gdrive(session: requests.Session, url: str) -> str:
    """Follow Google Drive's "can't scan this file for viruses" confirmation for large files."""
    with session.get(url, stream=True, timeout=TIMEOUT) as resp:
        if resp.status_code >= 400:
            raise _MirrorFailed(f"HTTP {resp.status_code} {resp.reason}")
        if not _is_html_type(resp):
            return resp.url  # a small file is served directly
        page = resp.text
        cookies = dict(resp.cookies)
        page_url = resp.url
    parser = _FormParser()
    parser.feed(page)
    for action, fields in parser.forms:
        if "id" in fields and ("confirm" in fields or "download" in action):
            return f"{urljoin(page_url, action)}?{urlencode(fields)}"
    for key, token in cookies.items():
        if key.startswith("download_warning"):
            return f"{url}&{urlencode({'confirm': token})}"
    if "quota" in page.lower() or "too many users" in page.lower():
        raise _MirrorFailed("Google Drive download quota exceeded for this file; try again later")
    raise _MirrorFailed("Google Drive served a page without a download link (file moved or private?)")


def _failure_message(info: ModelInfo, target: Path, failures: list[str]) -> str:
    lines = [f"Could not download the {info.name!r} checkpoint ({info.filename})."]
    lines += ["Tried:", *failures] if failures else ["No mirror can be fetched automatically."]
    manual = [m for m in info.mirrors if m.kind == "manual"]
    if manual:
        lines.append("You can get the file in a web browser from:")
        lines += [f"  - {m.url}" + (f" ({m.note})" if m.note else "") for m in manual]
    lines += [
        f"Then place it, as is (do not unpack the .pth.tar), at: {target}",
        f"or fetch it from another mirror: fomm-lab download {info.name} --url URL [--sha256 HEX]",
    ]
    return "\n".join(lines)
