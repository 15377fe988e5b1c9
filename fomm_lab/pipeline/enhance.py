"""The face-enhancement stage both sessions run (animation and swap): after the faces are made, before they are
pasted back or written."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .job import OutputOptions, RuntimeOptions


def load_output_enhancer(output: OutputOptions, runtime: RuntimeOptions, device: str, *,
                         cache_dir: Path | None = None, progress: bool = True) -> Any:
    """The face enhancer ``output`` asks for (:func:`fomm_lab.enhance.load_enhancer`): its given weights file, else
    the registry's (downloaded and verified once), on ``device`` in the runtime's precision (``auto`` resolved
    there: bfloat16 only on a CPU that computes it natively; bfloat16 or float16 on a GPU)."""
    from ..enhance import load_enhancer
    from ..enhance.weights import check_kind

    kind = check_kind(str(output.enhance))
    weights = output.enhancer_weights
    if weights is None:
        from ..enhance.weights import check_weights
        from ..hub.download import ensure_checkpoint
        from ..hub.registry import ENHANCERS

        def verify(path: Path) -> None:
            check_weights(kind, path)

        weights = ensure_checkpoint(ENHANCERS[kind], cache_dir=cache_dir, progress=progress, verify=verify)
    return load_enhancer(kind, weights, device=device, dtype=runtime.dtype, batch_size=runtime.batch_size)


def enhanced(faces: Iterator[np.ndarray], enhancer: Any, *, batch_size: int, size: tuple[int, int] | None,
             strength: float) -> Iterator[np.ndarray]:
    """``faces`` enhanced in batches of ``batch_size``, to 512x512 or ``size`` (w, h), blended by ``strength``."""
    while batch := list(itertools.islice(faces, batch_size)):
        yield from enhancer.enhance_faces(np.stack(batch), size=size, strength=strength)
