"""Reading TPSMM checkpoint files safely and telling them apart from FOMM's.

The authors' files (``vox.pth.tar``, ``taichi.pth.tar``, ``ted.pth.tar``, ``mgif.pth.tar``) are ``torch.save``
dicts: ``kp_detector``, ``dense_motion_network`` and ``inpainting_network`` state dicts, plus ``avd_network``
after the second training stage, ``bg_predictor`` (``bg: True``), optimizer states and ``epoch``, which
inference ignores. They are read with ``torch.load(weights_only=True)``, with the same refusals as FOMM's files
(:mod:`fomm_lab.engine.checkpoint`).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ...errors import CheckpointError, shorten
from ...io import sniff
from .. import checkpoint as fomm_checkpoint

REQUIRED = ("kp_detector", "dense_motion_network", "inpainting_network")
"""The entries the three inference networks load from."""

FOMM_ENTRIES = ("generator", "kp_detector")
_HINT = "check the path, or download the file again"


def read_tpsmm_checkpoint(path: str | Path) -> dict:
    """The checkpoint's top-level dict, read without executing code; CheckpointError saying what the file is when
    it is not a TPSMM checkpoint (a FOMM one, a web page, a damaged file ...)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; {_HINT}")
    fomm_checkpoint._sniff(path)
    if fomm_checkpoint.checkpoint_format(path) == "pdparams":
        raise CheckpointError(f"{path} is a PaddleGAN First Order Motion Model checkpoint (.pdparams), not a "
                              "Thin-Plate Spline Motion Model one: use it with a FOMM config (e.g. vox-256)")
    zipped = sniff.is_zip(sniff.read_head(path))
    if zipped:
        fomm_checkpoint._check_zip_size(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as exc:
        callables = fomm_checkpoint._pickled_callables(path)
        if fomm_checkpoint._CODE_WORDS.search(str(exc)) or callables:
            raise fomm_checkpoint.code_refusal(path, callables or re.findall(r"GLOBAL (\S+)", str(exc))) from exc
        raise CheckpointError(f"{path} is not a torch checkpoint (its pickle cannot be read as tensors); {_HINT}",
                              details=[fomm_checkpoint._first_line(exc)]) from exc
    except Exception as exc:  # torch raises many types (EOFError, KeyError, RuntimeError ...) for bad bytes
        raise CheckpointError(f"{path} is truncated or corrupt; {_HINT}",
                              details=[f"{type(exc).__name__}: {fomm_checkpoint._first_line(exc)}"]) from exc
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dict; {_HINT}")
    return check_entries(path, data)


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
