"""One way to write any output: into a hidden temporary sibling, published by an atomic rename.

A failed or interrupted write never leaves anything at the final name; the temporary name carries the
writer's process id, so the next run on the same output removes what a killed run left behind.
Published files get the user's normal mode (umask), like any new file.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import MediaError

_PART = ".part"


def _prefix(path: Path) -> str:
    return f".{path.name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(path: Path) -> None:
    """Remove temporary siblings of ``path`` left by runs that were killed (their process is gone)."""
    try:
        siblings = list(path.parent.glob(_prefix(path) + "*" + _PART + "*"))
    except OSError:
        return
    for sibling in siblings:
        pid_text = sibling.name[len(_prefix(path)):].split(".", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        try:
            shutil.rmtree(sibling) if sibling.is_dir() else sibling.unlink()
        except OSError:
            pass


def write_error(path: Path, exc: OSError) -> MediaError:
    """A MediaError about writing ``path`` (never naming the hidden temporary file)."""
    folder = path.parent if str(path.parent) else Path(".")
    if exc.errno == errno.ENOSPC:
        why = f"no space left on device in {folder}"
        todo = "free some disk space or write somewhere else"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"folder {folder} is not writable ({exc.strerror})"
        todo = "choose a writable folder"
    elif exc.errno == errno.ENOENT:
        why = f"folder {folder} does not exist"
        todo = "create it first"
    else:
        why = exc.strerror or str(exc)
        todo = "check the folder"
    return MediaError(f"cannot write {path}: {why}; {todo}")


def temp_sibling(path: Path, directory: bool = False) -> Path:
    """A new empty file (or folder) next to ``path``, so that renaming it onto ``path`` is atomic."""
    path = Path(path)
    clean_leftovers(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f"{_prefix(path)}{os.getpid()}."
        if directory:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=_PART, dir=path.parent))
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=_PART + path.suffix, dir=path.parent)
        os.close(fd)
        return Path(tmp)
    except OSError as exc:
        raise write_error(path, exc) from exc


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Give the finished ``tmp`` the mode a new file or folder would get (umask) and rename it to ``path``."""
    mask = os.umask(0o022)
    os.umask(mask)
    try:
        os.chmod(tmp, (0o777 if os.path.isdir(tmp) else 0o666) & ~mask)
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(Path(path), exc) from exc
    return Path(path)


def remove(path: Path) -> None:
    """Delete a temporary file or folder, if it is still there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: str | os.PathLike[str], directory: bool = False) -> Iterator[Path]:
    """``with atomic_output("out.gif") as tmp:`` write ``tmp``; it becomes ``out.gif`` only when the
    block succeeds, and is removed on any exception (Ctrl-C included)."""
    path = Path(path)
    tmp = temp_sibling(path, directory=directory)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        remove(tmp)


def check_output_folder(path: Path) -> None:
    """MediaError now, before any work, when ``path`` cannot be written: missing or read-only folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise MediaError(f"cannot write {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"cannot write {path}: folder {folder} is not writable; choose a writable folder")
    if path.is_dir() and path.suffix:
        raise MediaError(f"cannot write {path}: it is a folder; choose a file name")
