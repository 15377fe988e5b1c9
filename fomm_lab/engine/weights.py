"""The registry's pretrained checkpoints: fetched into the cache by :mod:`fomm_lab.hub.download` and verified by
reading them with their family's safe reader (FOMM's :func:`~fomm_lab.engine.checkpoint.read_checkpoint`,
TPSMM's :func:`~fomm_lab.engine.tpsmm.checkpoint.read_tpsmm_checkpoint`: ``Family.verify`` of
:mod:`fomm_lab.engine.families`).

The hub knows files, mirrors and checksums; what makes a file a checkpoint is the engine's to say, so the engine
hands its check down. This module imports neither torch nor requests until a function is called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..hub.download import Verify
    from ..hub.registry import RemoteFile


def verify_checkpoint(path: Path) -> None:
    """CheckpointError unless ``path`` holds ``generator`` and ``kp_detector`` state dicts (a FOMM checkpoint,
    read without running code)."""
    from .checkpoint import read_checkpoint

    read_checkpoint(path)


def verifier(family: str | None) -> Verify:
    """The structural check of a checkpoint of ``family`` (a registry entry's ``family``; None: FOMM's)."""
    from .families import family_named

    return family_named(family or "fomm").verify


def _entry(name: str | RemoteFile) -> RemoteFile:
    from ..hub.registry import RemoteFile, model_info

    return name if isinstance(name, RemoteFile) else model_info(name)


def ensure_checkpoint(name: str | RemoteFile, cache_dir: str | os.PathLike[str] | None = None,
                      progress: bool = True, *, verify: Verify | None = None) -> Path:
    """Path of the checkpoint ``name`` (registry name or :class:`RemoteFile`) in the cache, downloaded and
    verified if needed (:func:`fomm_lab.hub.download.ensure_checkpoint`). verify: the file's check (default: its
    family's reader, from the entry's ``family``), so a placed or cached TPSMM file is read as one."""
    from ..hub import download

    entry = _entry(name)
    return download.ensure_checkpoint(entry, cache_dir, progress, verify=verify or verifier(entry.family))


def download_checkpoint(name: str, cache_dir: str | os.PathLike[str] | None = None, url: str | None = None,
                        sha256: str | None = None, progress: bool = True) -> Path:
    """Like :func:`ensure_checkpoint`, optionally from another ``url`` and with another ``sha256``
    (:func:`fomm_lab.hub.download.download_checkpoint`), verified by the entry's family's reader."""
    from ..hub import download

    return download.download_checkpoint(name, cache_dir, url, sha256, progress,
                                        verify=verifier(_entry(name).family))
