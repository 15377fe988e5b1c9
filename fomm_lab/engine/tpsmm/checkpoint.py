"""Reading TPSMM checkpoint files safely and telling them apart from FOMM's.

The authors' files (``vox.pth.tar``, ``taichi.pth.tar``, ``ted.pth.tar``, ``mgif.pth.tar``) are ``torch.save``
dicts: ``kp_detector``, ``dense_motion_network`` and ``inpainting_network`` state dicts, plus ``avd_network``
after the second training stage, ``bg_predictor`` (``bg: True``), optimizer states and ``epoch``, which
inference ignores. They are read with ``torch.load(weights_only=True)``, with the same refusals as FOMM's files
(:mod:`fomm_lab.engine.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ...errors import CheckpointError, shorten
from ..checkpoint import TPSMM_ENTRIES, checkpoint_format, read_checkpoint

REQUIRED = TPSMM_ENTRIES
"""The entries the three inference networks load from."""

FOMM_ENTRIES = ("generator", "kp_detector")


def read_tpsmm_checkpoint(path: str | Path) -> dict:
    """The checkpoint's top-level dict, read without executing code; CheckpointError saying what the file is when
    it is not a TPSMM checkpoint (a FOMM one, a web page, a damaged file ...)."""
    path = Path(path)
    if path.is_file() and checkpoint_format(path) == "pdparams":
        raise CheckpointError(f"{path} is a PaddleGAN First Order Motion Model checkpoint (.pdparams), not a "
                              "Thin-Plate Spline Motion Model one: use it with a FOMM config (e.g. vox-256)")
    return read_checkpoint(path, required=check_entries)


def check_entries(path: Path, data: Mapping) -> dict:
    """``data`` as a dict when it holds the three inference networks' entries; else a CheckpointError naming what
    the file is (a FOMM checkpoint is told apart by its ``generator``)."""
    keys = [str(k) for k in data]
    if all(key in data for key in FOMM_ENTRIES) and "dense_motion_network" not in data:
        raise CheckpointError(
            f"{path} is a First Order Motion Model checkpoint (it has 'generator' and 'kp_detector'), not a "
            "Thin-Plate Spline Motion Model one: use it with a FOMM config (e.g. vox-256), or give a TPSMM "
            "checkpoint (with kp_detector, dense_motion_network and inpainting_network) for this config",
            details=[f"it has: {shorten(keys, 8)}"])
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise CheckpointError(
            f"{path} has no {' or '.join(repr(m) for m in missing)} entry: it is not a Thin-Plate Spline Motion "
            "Model checkpoint (the authors' files hold kp_detector, dense_motion_network and inpainting_network)",
            details=[f"it has: {shorten(keys, 8) or 'nothing'}"])
    return dict(data)
