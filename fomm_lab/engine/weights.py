"""The registry's pretrained FOMM checkpoints: fetched into the cache by :mod:`fomm_lab.hub.download` and verified
by reading them with the engine's safe reader (:func:`~fomm_lab.engine.checkpoint.read_checkpoint`).

The hub knows files, mirrors and checksums; what makes a file a checkpoint is the engine's to say, so the engine
hands its check down. This module imports neither torch nor requests until a function is called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..hub.registry import RemoteFile


def verify_checkpoint(path: Path) -> None:
    """CheckpointError unless ``path`` holds ``generator`` and ``kp_detector`` state dicts (read without running
    code)."""
    from .checkpoint import read_checkpoint

    read_checkpoint(path)


def ensure_checkpoint(name: str | RemoteFile, cache_dir: str | os.PathLike[str] | None = None,
                      progress: bool = True) -> Path:
    """Path of the checkpoint ``name`` (registry name or :class:`RemoteFile`) in the cache, downloaded and
    verified if needed (:func:`fomm_lab.hub.download.ensure_checkpoint`)."""
    from ..hub import download

    return download.ensure_checkpoint(name, cache_dir, progress, verify=verify_checkpoint)


def download_checkpoint(name: str, cache_dir: str | os.PathLike[str] | None = None, url: str | None = None,
                        sha256: str | None = None, progress: bool = True) -> Path:
    """Like :func:`ensure_checkpoint`, optionally from another ``url`` and with another ``sha256``
    (:func:`fomm_lab.hub.download.download_checkpoint`)."""
    from ..hub import download

    return download.download_checkpoint(name, cache_dir, url, sha256, progress, verify=verify_checkpoint)
