"""Any registry file fetched and verified by what reads it: animation checkpoints by their family's reader, the
face enhancers', the swap's segment models' and its face parser's by theirs (``fomm-lab download NAME``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..hub.download import Verify
    from ..hub.registry import RemoteFile


def verifier(entry: RemoteFile) -> Verify:
    """The structural check of ``entry``'s file, by its ``family``."""
    if entry.family == "enhance":
        from ..enhance.weights import check_weights

        def verify(path: Path) -> None:
            check_weights(entry.name, path)

        return verify
    if entry.family == "swap":
        from ..swap.registry import verify_segment_checkpoint

        return verify_segment_checkpoint
    if entry.family == "parser":
        from ..swap.registry import verify_face_parser

        return verify_face_parser
    from ..engine.weights import verifier as checkpoint_verifier

    return checkpoint_verifier(entry.family)


def download(name: str, cache_dir: str | os.PathLike[str] | None = None, url: str | None = None,
             sha256: str | None = None, progress: bool = True) -> Path:
    """The registry file ``name`` (any of :func:`fomm_lab.hub.registry.downloadable`) in the cache: downloaded
    (from ``url`` instead of the mirrors, checked against ``sha256`` when given) and verified as what it is."""
    from ..hub import download as hub
    from ..hub.registry import model_info

    return hub.download_checkpoint(name, cache_dir, url, sha256, progress, verify=verifier(model_info(name)))
