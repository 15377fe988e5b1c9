"""How the command line shows errors and warnings: one ``fomm-lab: error: ...`` line, advice in flags."""

from __future__ import annotations

import sys

from .. import options
from ..errors import FommLabError, Remedy
from .parser import PROG


def cli_words(remedy: Remedy, overrides: dict[str, str | None] | None = None) -> str | None:
    """A remedy in command-line flags (None: this command has no flag for it)."""
    if overrides and remedy.option in overrides:
        return overrides[remedy.option]
    return options.cli_words(remedy.option, remedy.value)


def render_error(exc: BaseException, overrides: dict[str, str | None] | None = None) -> str:
    """An error as the CLI shows it: a first line, then details indented on their own lines."""
    if isinstance(exc, FommLabError):
        first, details = exc.first_line(lambda r: cli_words(r, overrides)), exc.details
    elif isinstance(exc, OSError) and exc.strerror:
        first, details = (f"{exc.filename}: " if exc.filename else "") + exc.strerror, []
    else:
        first, details = str(exc) or type(exc).__name__, []
    lines = [f"{PROG}: error: {' '.join(first.split())}", *(f"  {line}" for line in details)]
    return "\n".join(lines)


class Warnings:
    """Warnings as one ``fomm-lab: warning: ...`` line each, every distinct one said once."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def show(self, message, category, filename, lineno, file=None, line=None) -> None:
        error = getattr(message, "error", None)
        text = str(message)
        if isinstance(error, FommLabError):
            text = str(message).split(":", 1)[0] + ": " + error.first_line(cli_words)
        text = " ".join(text.split())
        if text not in self.seen:
            self.seen.add(text)
            print(f"{PROG}: warning: {text}", file=sys.stderr)
