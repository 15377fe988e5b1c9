"""Comparison player widget: several result videos in sync, with captions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..errors import MediaError
from . import _assets


class ComparisonPlayer(anywidget.AnyWidget):
    """Show ``videos`` (mp4 paths, browser-playable H.264) side by side under ``captions``, with
    one play/pause button and one scrub bar driving all of them together.

    The video bytes travel to the browser inside the widget, so it also works when the kernel runs
    on a remote machine.
    """

    _esm = _assets.esm("camera.js", "compare.js")
    _css = _assets.css()

    videos = traitlets.List(traitlets.Any()).tag(sync=True)
    captions = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, videos: Sequence[str | Path], captions: Sequence[str] | None = None, **kwargs: Any) -> None:
        paths = [Path(p) for p in videos]
        for path in paths:
            if not path.is_file():
                raise MediaError(f"Cannot show '{path}' in the comparison player: the file does not exist. "
                                 "Run the animation cells first.")
        captions = list(captions) if captions is not None else [p.stem for p in paths]
        if len(captions) != len(paths):
            raise MediaError(f"The comparison player got {len(paths)} videos but {len(captions)} captions; "
                             "give one caption per video.")
        super().__init__(videos=[p.read_bytes() for p in paths], captions=captions, **kwargs)
        self.paths = paths
