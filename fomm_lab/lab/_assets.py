"""Load the widgets' JavaScript and CSS assets shipped next to this module."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def esm(*names: str) -> str:
    """Concatenate JS files of this package into one ES module source (helpers first)."""
    return "\n".join((_HERE / name).read_text(encoding="utf-8") for name in names)


def css() -> str:
    """The CSS shared by every fomm_lab widget."""
    return (_HERE / "widgets.css").read_text(encoding="utf-8")
