"""The lab: Jupyter widgets (webcam recorder, live animator, comparison player, photo gallery) and a
camera on the kernel's machine.

Import them from here (``from fomm_lab.lab import WebcamRecorder``); they need the ``lab`` extra
(anywidget, ipywidgets), which is imported only when a widget is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "WebcamRecorder": "fomm_lab.lab.recorder",
    "LiveAnimator": "fomm_lab.lab.live_animator",
    "ComparisonPlayer": "fomm_lab.lab.compare",
    "ImageGallery": "fomm_lab.lab.gallery",
    "LocalCamera": "fomm_lab.lab.local_camera",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fomm_lab.lab' has no attribute {name!r}")
