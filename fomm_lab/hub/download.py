"""Fetch registry files into their cache: resumable, verified, one writer at a time.

One downloader serves every file (checkpoints, face-alignment's weights). A download takes a lock
beside the cache entry (``<file>.lock``): a second process asking for the same file waits, says so,
and then reuses the verified file. Bytes go to ``<file>.part``, resume with HTTP ``Range`` after a
broken connection, mirrors that answer with an HTML page (quota warnings, login pages) are skipped,
and the file is verified (published checksum or sha256 prefix, else the caller's structural check)
before it is renamed into place. The sha256 of the verified bytes is written beside it
(``<file>.sha256``, the format of ``sha256sum``) so later damage is noticed. A download that runs
past :data:`DEADLINE_S` or slower than :data:`MIN_RATE` bytes/s for :data:`RATE_WINDOW_S` stops
with an error naming the URL. A mirror serving the weights in another format (PaddleGAN's ``.pdparams``
copy of ``vox``) is tried after the file's own mirrors; its file is cached under its own name
(``vox-cpk.pdparams``) and verified by its structure, and a cached copy of it is used like the file itself.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlparse

import requests

from ..errors import CheckpointError, DownloadError, Remedy
from ..io import sniff
from .registry import Mirror, RemoteFile, downloadable, model_info
from .registry import cache_dir as resolve_cache_dir

__all__ = ["CacheEntry", "cache_status", "download_checkpoint", "ensure_checkpoint", "fetch"]

log = logging.getLogger(__name__)

TIMEOUT = (15.0, 60.0)
"""(connect, read) timeouts in seconds for every request."""
CHUNK = 1 << 16
"""Bytes read per chunk of a download."""
MAX_ATTEMPTS = 20
"""Most requests made to one URL for one file (each after the first resumes with Range)."""
DEADLINE_S = 4 * 3600.0
"""Longest a whole download may take."""
MIN_RATE = 4096
"""Slowest accepted transfer, in bytes per second, averaged over RATE_WINDOW_S."""
RATE_WINDOW_S = 60.0

Verify = Callable[[Path], None]
"""A structural check of a downloaded file: raises CheckpointError when it is not what was asked for."""

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


def ensure_checkpoint(name: str | RemoteFile, cache_dir: str | os.PathLike[str] | None = None,
                      progress: bool = True, *, verify: Verify) -> Path:
    """Path of the checkpoint ``name`` in the cache, downloading and verifying it if needed.

    ``name`` is a registry name (see :func:`fomm_lab.hub.registry.available_models`) or a
    :class:`RemoteFile` (for private mirrors). ``verify``: the structural check of the file, which the
    caller that reads checkpoints supplies (:func:`fomm_lab.engine.weights.ensure_checkpoint` passes the
    engine's reader). A cached file whose recorded sha256 still matches is returned without any network
    request; a file placed by hand is verified and then used. If every mirror fails, :class:`DownloadError`
    lists each URL with its failure and the exact path to place the file at by hand. ``progress=False``
    hides the progress bar.
    """
    info = name if isinstance(name, RemoteFile) else model_info(name)
    root = resolve_cache_dir(cache_dir, create=False)
    for filename in info.filenames:  # its own file first, then another format's (PaddleGAN's .pdparams)
        if _cached_is_usable(root / filename, info.file_entry(filename), verify):
            return root / filename
    target = resolve_cache_dir(cache_dir) / info.filename
    return fetch(info, target, progress=progress, verify=verify)


def download_checkpoint(name: str, cache_dir: str | os.PathLike[str] | None = None, url: str | None = None,
                        sha256: str | None = None, progress: bool = True, *, verify: Verify) -> Path:
    """Like :func:`ensure_checkpoint`, optionally from another ``url`` and with another checksum.

    ``url`` replaces the registry's mirrors (Google Drive and Yandex Disk share links are
    understood; a ``.pdparams`` address is cached as PaddleGAN's format, under that ending, without the
    registry's checksums of the torch file). ``sha256`` (64 hex digits) replaces the registry's checksums.
    A valid cached file is kept as is; delete it to fetch it again.
    """
    info = model_info(name)
    if url:
        mirror = Mirror.from_url(url)
        filename = info.filename_for(mirror)
        if filename != info.filename:  # another format: its own name, none of the registry's checksums
            info = dataclasses.replace(info, filename=filename, md5=None, sha256=None, sha256_prefix=None, size=None)
        info = dataclasses.replace(info, mirrors=(dataclasses.replace(mirror, format=None),))
    if sha256:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise DownloadError(f"sha256 {sha256!r} is not a sha256 digest: expected 64 hexadecimal digits "
                                "(as printed by `sha256sum FILE`)")
        info = dataclasses.replace(info, sha256=sha256.lower(), md5=None, sha256_prefix=None)
    return ensure_checkpoint(info, cache_dir, progress, verify=verify)


def cache_status(cache_dir: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """State of every downloadable registry file in the cache (no network, no hashing, creates nothing)."""
    root = resolve_cache_dir(cache_dir, create=False)
    rows = []
    for info in downloadable().values():
        path = next((root / name for name in info.filenames if (root / name).is_file()), root / info.filename)
        cached = path.is_file()
        rows.append(CacheEntry(info.name, path.name, path, cached, path.stat().st_size if cached else None,
                               cached and _sidecar(path).is_file()))
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
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{digest}  {path.name}\n")
        os.replace(tmp, sidecar)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("could not record the checksum of %s (%s); it will be verified again next time", path, exc)


def _cached_is_usable(path: Path, info: RemoteFile, verify: Verify | None) -> bool:
    """True when ``path`` holds a good copy of ``info``'s file.

    A file with a recorded sha256 that no longer verifies is removed (it will be downloaded again);
    a file placed by hand that fails verification raises :class:`CheckpointError`, since only the
    user knows where it came from.
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
        digest = _verify(path, info, verify)
    except CheckpointError as exc:
        if recorded is None:
            raise CheckpointError(
                f"{exc.first_line()} This file was placed by hand: replace it with the original {info.filename} "
                f"(not unpacked), or delete it to download {info.name!r} again") from exc
        log.warning("%s; removing it and downloading %r again", exc.first_line(), info.name)
        try:
            path.unlink()
            _sidecar(path).unlink(missing_ok=True)
        except OSError as err:
            raise CheckpointError(f"{exc.first_line()} It cannot be removed ({err}): replace it by hand") from err
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


def _verify(path: Path, info: RemoteFile, verify: Verify | None) -> str:
    """Check ``path`` against ``info``; return the sha256 of the bytes checked, or raise CheckpointError."""
    if path.is_dir():
        if verify is not None:
            verify(path)  # says what the folder is (e.g. an unpacked checkpoint)
        raise CheckpointError(f"{path} is a folder, not the file {info.filename}")
    digests = _digests(path)
    for algo in ("sha256", "md5"):
        expected = getattr(info, algo)
        if expected and digests[algo] != expected.lower():
            raise CheckpointError(f"{path}: {algo} is {digests[algo]} but {info.filename} should have {expected}; "
                                  "the file is damaged, incomplete or a different file")
    prefix = info.sha256_prefix
    if prefix and not digests["sha256"].startswith(prefix.lower()):
        raise CheckpointError(f"{path}: sha256 is {digests['sha256']} but {info.filename} should start with {prefix}; "
                              "the file is damaged, incomplete or a different file")
    if not (info.sha256 or info.md5 or prefix) and verify is not None:
        verify(path)
    return digests["sha256"]


# --- locking -------------------------------------------------------------------------------------

@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold ``<target>.lock`` (an exclusive advisory lock); say so while waiting for another process."""
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another process is downloading %s; waiting for it to finish", target.name)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- downloading ---------------------------------------------------------------------------------

def fetch(info: RemoteFile, target: Path, progress: bool = True, verify: Verify | None = None) -> Path:
    """``target`` holding ``info``'s file: kept when already there and good, else downloaded from the first
    mirror that delivers verified bytes (see the module's description). DownloadError when none does.

    Mirrors serving the same weights in another format (:attr:`Mirror.format`) are tried after those of
    the file itself, in their order; what they serve goes beside ``target`` under its own name
    (:meth:`RemoteFile.filename_for`), and that path is returned."""
    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for filename in info.filenames:
        entry, path = info.file_entry(filename), target.with_name(filename)
        with _locked(path):
            if _cached_is_usable(path, entry, verify):
                return path  # another process finished it while we waited
            if _from_mirrors(entry, path, progress, verify, failures):
                return path
    raise _failure(info, target, failures)


def _from_mirrors(info: RemoteFile, target: Path, progress: bool, verify: Verify | None,
                  failures: list[str]) -> bool:
    """Try ``info``'s automatic mirrors in order until one delivers ``target``; each failure is added to
    ``failures``. True when ``target`` now holds the verified file."""
    part = target.with_name(target.name + ".part")
    with requests.Session() as session:
        session.headers.update({"User-Agent": "fomm-lab", "Accept-Encoding": "identity"})
        session.max_redirects = 10
        for mirror in info.mirrors:
            if mirror.kind == "manual" or info.filename_for(mirror) != info.filename:
                continue  # a page for people, or another format's file (tried for that file, once)
            try:
                digest = _from_mirror(session, mirror, part, info, progress, verify)
            except _MirrorFailed as exc:
                log.info("mirror %s failed: %s", mirror.url, exc)
                failures.append(f"  - {_where(mirror)}: {exc}")
                continue
            os.replace(part, target)
            _record_sha256(target, digest)
            return True
    return False


def _from_mirror(session: requests.Session, mirror: Mirror, part: Path, info: RemoteFile, progress: bool,
                 verify: Verify | None) -> str:
    """Download ``mirror`` into ``part`` and verify it; return the sha256 of the verified bytes."""
    url = _resolve(session, mirror)
    kept = part.exists() and part.stat().st_size > 0  # bytes from an earlier attempt
    while True:
        _fetch(session, url, part, progress, info.filename)
        try:
            return _verify(part, info, verify)
        except CheckpointError as exc:
            part.unlink(missing_ok=True)
            if not kept:
                raise _MirrorFailed(f"the downloaded file failed verification: {exc.first_line()}") from exc
            kept = False
            log.info("bytes kept from an earlier attempt were bad; downloading %s afresh", url)


def _request_error(exc: requests.RequestException, url: str) -> str:
    """One short line for a failed request: what went wrong, in words (never the library's exception text)."""
    host = urlparse(url).netloc or url
    text = f"{exc!r} {exc.__cause__!r} {exc.__context__!r}"
    if isinstance(exc, requests.TooManyRedirects):
        return f"too many redirects (a redirect loop) starting at {url}"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"the TLS certificate of {host} could not be verified"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connecting to {host} timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"{host} stopped sending for {TIMEOUT[1]:.0f} s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"the connection to {host} broke during the transfer"
    if isinstance(exc, requests.ConnectionError):
        if any(word in text for word in ("NameResolution", "Name or service not known", "getaddrinfo",
                                         "name resolution", "nodename nor servname")):
            return f"cannot resolve {host} (no network, or no DNS)"
        return f"cannot connect to {host} (no network, or the server is down)"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return f"{url} is not a valid address"
    return f"the request to {host} failed ({type(exc).__name__})"


def _where(mirror: Mirror) -> str:
    """A mirror as a person reads it: the file's address, or the host of a share link's API (Yandex, Google)."""
    return mirror.url if mirror.kind == "direct" else f"{urlparse(mirror.url).netloc} ({mirror.note or mirror.kind})"


def _fetch(session: requests.Session, url: str, part: Path, progress: bool, desc: str) -> None:
    """Download ``url`` into ``part``, continuing from the bytes already there when the server
    honours ``Range``; retry while each attempt makes progress."""
    started = time.monotonic()
    for _attempt in range(MAX_ATTEMPTS):
        have = before = part.stat().st_size if part.exists() else 0
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
                _write_stream(resp, part, have, total, progress, desc, started)
        except _RETRYABLE as exc:
            got = part.stat().st_size if part.exists() else 0
            if got <= before:  # this attempt got no further than the last one: give up on this mirror
                raise _MirrorFailed(_request_error(exc, url)) from exc
            log.info("connection to %s broke after %d bytes (%s); resuming", url, got, exc)
            continue
        except requests.RequestException as exc:
            raise _MirrorFailed(_request_error(exc, url)) from exc
        got = part.stat().st_size
        if total is None or got >= total:
            return
        if got <= before:
            raise _MirrorFailed(f"the server stopped sending at byte {got} of {total}")
    raise _MirrorFailed(f"still incomplete after {MAX_ATTEMPTS} attempts")


def _write_stream(resp: requests.Response, part: Path, have: int, total: int | None, progress: bool, desc: str,
                  started: float) -> None:
    """Append the body of ``resp`` to ``part`` at offset ``have`` (0: truncate first), within the
    deadline and the minimum rate."""
    from tqdm.auto import tqdm

    chunks = _chunks(resp)
    head = [next(chunks, b"")] if have == 0 else []
    if head and sniff.is_html(head[0]):
        raise _MirrorFailed(_HTML_PAGE)  # before the part file is touched
    with open(part, "ab" if have else "wb") as f, tqdm(
        total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress,
    ) as bar:
        window_start, window_bytes = time.monotonic(), 0
        for chunk in itertools.chain(head, chunks):
            f.write(chunk)
            bar.update(len(chunk))
            now = time.monotonic()
            if now - started > DEADLINE_S:
                raise _MirrorFailed(f"the download took longer than {DEADLINE_S / 60:.0f} minutes")
            window_bytes += len(chunk)
            if now - window_start >= RATE_WINDOW_S:
                rate = window_bytes / (now - window_start)
                if rate < MIN_RATE:
                    raise _MirrorFailed(f"the server sends only {rate:.0f} bytes/s (less than {MIN_RATE} for "
                                        f"{RATE_WINDOW_S:.0f} s)")
                window_start, window_bytes = now, 0


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives (at most CHUNK bytes at a time, without waiting to fill a chunk, so a
    trickling server is measured too), with urllib3's errors raised as requests' own."""
    import urllib3

    read1 = getattr(resp.raw, "read1", None)
    if read1 is None:
        yield from resp.iter_content(CHUNK)
        return
    while True:
        try:
            data = read1(CHUNK)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.exceptions.ReadTimeout(exc) from exc
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError, OSError) as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        if not data:
            return
        yield data


_HTML_PAGE = "served an HTML page instead of the file (a quota warning, login or error page); skipped"


def _is_html_type(resp: requests.Response) -> bool:
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower() in {"text/html", "application/xhtml+xml"}


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
    except requests.RequestException as exc:
        raise _MirrorFailed(_request_error(exc, mirror.url)) from exc
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


def _failure(info: RemoteFile, target: Path, failures: list[str]) -> DownloadError:
    """Every mirror tried, once, in one short line each (where: cause); the pages a browser finds the file on; the
    place to put it by hand (and the place for its copy in another format)."""
    what = f"the {info.name!r} checkpoint" if info.config else info.name
    details = ["tried:", *failures] if failures else ["no mirror can be fetched automatically"]
    manual = [m for m in info.mirrors if m.kind == "manual"]
    if manual:
        details.append("in a web browser the file is at:")
        details += [f"  - {m.url}" + (f" ({m.note})" if m.note else "") for m in manual]
    for name in info.filenames:
        if name != info.filename:
            sources = ", ".join(m.url for m in info.file_entry(name).mirrors)
            details.append(f"or put its copy in another format, {name} (from {sources}), as it is, at "
                           f"{target.with_name(name)}")
    unpack = " (do not unpack the .pth.tar)" if info.filename.endswith(".tar") else ""
    place = f"put the file, as it is{unpack}, at {target}"
    if info.config:  # a checkpoint: `fomm-lab download NAME --url URL` can fetch it from elsewhere
        return DownloadError(f"could not download {what} ({info.filename}) from any mirror",
                             details=[*details, f"or {place}"],
                             remedies=[Remedy("fetch it from another address ({})", "download.url", info.name)])
    return DownloadError(f"could not download {what} ({info.filename}) from any mirror; {place}", details=details)
