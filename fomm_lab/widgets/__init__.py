"""Jupyter widgets of the lab: webcam recorder, live animator and comparison player.

Import them from here (``from fomm_lab.widgets import WebcamRecorder``); they need the ``lab``
extra (anywidget, ipywidgets), which is imported only when a widget is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "WebcamRecorder": "fomm_lab.widgets.recorder",
    "LiveAnimator": "fomm_lab.widgets.live",
    "ComparisonPlayer": "fomm_lab.widgets.compare",
    "ImageGallery": "fomm_lab.widgets.gallery",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fomm_lab.widgets' has no attribute {name!r}")
