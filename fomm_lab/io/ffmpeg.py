"""Running the ffmpeg binary: one place that finds it, runs it and turns its failures into errors.

ffmpeg sometimes exits 0 although the output is broken (e.g. "Error writing trailer ...: No space left
on device"), so :func:`check` reads its messages as well as its exit code. Arguments are argv lists;
ffmpeg-python is used only where a filter graph is built, and compiles to such a list.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from ..errors import MediaError

QUIET = ["-hide_banner", "-nostdin", "-loglevel", "error"]
"""Global options of every ffmpeg call that only needs errors reported."""

_FATAL = re.compile(r"No space left on device|Error writing trailer|Error closing file|Permission denied|"
                    r"Read-only file system|Disk quota exceeded|Conversion failed|Error while filtering",
                    re.IGNORECASE)


def ffmpeg_exe() -> str:
    """Path of an ffmpeg binary: the one on ``PATH`` first, else the one bundled by imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise MediaError(
            "no ffmpeg binary found (none on PATH and imageio-ffmpeg has none); install ffmpeg "
            "(e.g. `apt-get install ffmpeg`) or `pip install imageio-ffmpeg`", details=[str(exc)]) from exc


def tail(stderr: str, lines: int = 3) -> str:
    """The last lines of ffmpeg's messages, joined into one."""
    return " ".join(line.strip() for line in stderr.strip().splitlines()[-lines:])


def failure(stderr: str, what: str, output: Path | None = None) -> MediaError:
    """The MediaError for a failed ffmpeg run: the cause in words (full disk, no permission), else its messages."""
    folder = output.parent if output is not None and str(output.parent) else Path(".")
    lowered = stderr.lower()
    if "no space left on device" in lowered or "disk quota exceeded" in lowered:
        cause, todo = f"no space left on device in {folder}", "free some disk space or write somewhere else"
    elif output is not None and ("permission denied" in lowered or "read-only file system" in lowered):
        cause, todo = f"folder {folder} is not writable", "choose a writable folder"
    else:
        cause, todo = "ffmpeg failed", "check the input files and free disk space"
    return MediaError(f"{what}: {cause}; {todo}", details=[f"ffmpeg: {tail(stderr)}"] if stderr.strip() else [])


def check(returncode: int | None, stderr: str, what: str, output: Path | None = None) -> None:
    """Raise :func:`failure` when ffmpeg exited non-zero or reported a fatal problem."""
    if returncode != 0 or _FATAL.search(stderr):
        raise failure(stderr, what, output)


def run(args: list[str], what: str, output: Path | None = None, timeout: float | None = None,
        quiet: bool = True) -> str:
    """Run ``ffmpeg [QUIET] args`` to the end; returns its messages, raises MediaError on any failure."""
    command = [ffmpeg_exe(), *(QUIET if quiet else ["-hide_banner", "-nostdin"]), *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{what}: ffmpeg took over {timeout:.0f} s; is a file on a slow or hung drive?") from exc
    check(proc.returncode, proc.stderr, what, output)
    return proc.stderr


def read_messages(stream: IO[bytes], limit: int = 20000) -> str:
    """What an ffmpeg process wrote into its (temporary file) stderr."""
    stream.seek(0)
    return stream.read().decode("utf-8", "replace")[-limit:]


def stderr_file() -> IO[bytes]:
    """A temporary file for a streaming ffmpeg's messages (a pipe could fill up and block it)."""
    return tempfile.TemporaryFile()
