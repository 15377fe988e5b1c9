"""Reading face-enhancer weights files safely, telling what they hold, and loading them into the networks.

- GPEN: PaddleGAN's ``GPEN-512.pdparams``, a plain pickle of a flat ``{name: ndarray}`` dict. It is read only
  by :func:`fomm_lab.engine.pdparams.read_pdparams` (a restricted unpickler: arrays of numbers and plain
  containers, nothing that runs code). Loading follows Paddle's ``load_dict``: unknown names are ignored, and
  the never-read ``generator.noises.*`` buffers (and the fixed ``upsample.kernel`` buffers) may be absent;
  every parameter must be there with its shape.
- GFPGAN: ``GFPGANv1.3.pth``/``GFPGANv1.4.pth``, a torch file holding ``{'params_ema': state}`` (or
  ``'params'``), read with ``torch.load(weights_only=True)`` and loaded strictly, as GFPGANer does.

The hyper-parameters (widths, style size, resolution) are read from the tensors' shapes, so a narrow test
model loads like the released one.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine import pdparams
from ..engine.checkpoint import describe_mismatch, mismatch, non_finite
from ..errors import CheckpointError, shorten
from ..io import sniff
from .gfpgan import GFPGANConfig, GFPGANv1Clean
from .gpen import GPEN, GPENConfig
from .kinds import EXPECTED, KINDS, check_kind

log = logging.getLogger(__name__)

__all__ = ["KINDS", "WeightsFile", "check_kind", "check_weights", "identify", "load_network", "read_weights"]

MAX_UNPACKED_BYTES = 2 << 30
"""Largest total a torch zip file may unpack to (GFPGANv1.4.pth holds 0.35 GB)."""

_HINT = "download it again or check the path"
_CODE_WORDS = re.compile(r"unsupported global|is blocked|not an allowed global", re.IGNORECASE)


@dataclass(frozen=True)
class WeightsFile:
    """A weights file's top-level content. ``format``: ``"pdparams"`` or ``"torch"``."""

    path: Path
    format: str
    data: Any


def read_weights(path: str | Path) -> WeightsFile:
    """Read a weights file without executing code; CheckpointError says why a file cannot be read."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist; {_HINT}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a weights file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download failed; {_HINT}")
    head = sniff.read_head(path)
    if sniff.is_html(head):
        raise CheckpointError(f"{path} is an HTML page, not a weights file (a download link served a web page); "
                              f"{_HINT}")
    if pdparams.is_pdparams(head):
        return WeightsFile(path, "pdparams", pdparams.read_pdparams(path))
    is_zip = sniff.is_zip(head)
    if is_zip:
        _check_zip_size(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        if _CODE_WORDS.search(str(exc)):
            raise CheckpointError(f"{path} holds Python objects that would run code when loaded: it was refused and "
                                  "nothing was executed; weights files hold only tensors, so use one from a "
                                  "trusted source", details=[_first_line(exc)]) from exc
        raise CheckpointError(f"{path} is not a weights file (its pickle cannot be read as tensors); {_HINT}",
                              details=[_first_line(exc)]) from exc
    except Exception as exc:  # torch raises many types (EOFError, RuntimeError, KeyError ...) for damaged bytes
        raise CheckpointError(f"{path} is truncated or corrupt; {_HINT}",
                              details=[f"{type(exc).__name__}: {_first_line(exc)}"]) from exc
    return WeightsFile(path, "torch", data)


def _check_zip_size(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # torch.load names the damage
    if total > MAX_UNPACKED_BYTES:
        raise CheckpointError(f"{path} would unpack to {total / 1e9:.1f} GB, more than any face enhancer's weights "
                              f"({MAX_UNPACKED_BYTES / 1e9:.1f} GB): it was not loaded")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _inner_state(data: Any) -> tuple[Any, str | None]:
    """The state dict a file holds: ``data['params_ema']``, else ``data['params']``, else ``data`` itself."""
    if isinstance(data, Mapping):
        for key in ("params_ema", "params"):
            if isinstance(data.get(key), Mapping):
                return data[key], key
    return data, None


def identify(weights: WeightsFile) -> tuple[str, str | None]:
    """(what the file holds, in words; the enhancer kind it fits, or None)."""
    data = weights.data
    if not isinstance(data, Mapping):
        return f"a {type(data).__name__}, not a dict of weights", None
    if "generator" in data and "kp_detector" in data:
        return "a First Order Motion Model checkpoint (generator, kp_detector)", None
    state, _ = _inner_state(data)
    keys = [str(key) for key in state] if isinstance(state, Mapping) else []
    if "conv_body_first.weight" in keys and "stylegan_decoder.constant_input.weight" in keys:
        return "GFPGAN weights (clean architecture, as GFPGANv1.3/v1.4)", "gfpgan"
    if any(key.startswith("stylegan_decoder.") for key in keys):
        return "GFPGAN weights of another architecture (the original or bilinear one), which is not supported", None
    if "final_linear.0.weight" in keys and "ecd0.0.0.weight" in keys:
        if weights.format == "pdparams":
            return "GPEN weights (PaddleGAN's layout)", "gpen"
        return "GPEN weights in a torch file (yangxy/GPEN's layout), which is not supported", None
    if not keys:
        return "no weights", None
    return f"{len(keys)} entries of an unknown network (such as {shorten(keys, 3)})", None


def _refuse(weights: WeightsFile, kind: str, what: str, fits: str | None) -> CheckpointError:
    where = (f"it is for the {fits!r} enhancer (load_enhancer({fits!r}, ...))" if fits
             else "it fits no face enhancer" if "First Order" not in what
             else "it is for animating (load_model), not for face enhancement")
    return CheckpointError(f"{weights.path} holds {what}, not {EXPECTED[kind]}: {where}",
                           details=[f"the {kind!r} enhancer needs {EXPECTED[kind]}"])


def _tensors(weights: WeightsFile, state: Any) -> dict[str, torch.Tensor]:
    if weights.format == "pdparams":
        return pdparams.torch_state(state, str(weights.path))
    not_tensors = [str(key) for key, value in state.items() if not torch.is_tensor(value)]
    if not_tensors:
        raise CheckpointError(f"{weights.path} holds entries that are not tensors: {shorten(not_tensors, 4)}")
    return {str(key): value for key, value in state.items()}


def check_weights(kind: str, path: str | Path) -> WeightsFile:
    """Read ``path`` and check that it holds ``kind``'s weights, without building the network (what a download is
    verified with). CheckpointError: which file, what it holds, which enhancer it fits."""
    kind = check_kind(kind)
    weights = read_weights(path)
    what, fits = identify(weights)
    if fits != kind:
        raise _refuse(weights, kind, what, fits)
    return weights


_GPEN_OPTIONAL = ("generator.noises.", ".upsample.kernel")
"""State entries Paddle's ``load_dict`` may leave at their initial values: unused noise buffers and the fixed
upsampling kernels."""


def load_network(kind: str, path: str | Path) -> nn.Module:
    """The ``kind`` network (GPEN or GFPGANv1Clean) with the file's weights, in eval mode, on the CPU.

    Raises ConfigError for an unknown kind and CheckpointError (which file, what it holds, which enhancer it
    fits) for a file that is not that enhancer's weights, does not fit its layout, or holds NaN/infinity.
    """
    kind = check_kind(kind)
    weights = check_weights(kind, path)
    what, _ = identify(weights)
    inner, _ = _inner_state(weights.data)
    state = _tensors(weights, inner)
    bad = non_finite(state)
    if bad:
        raise CheckpointError(f"{weights.path} holds NaN or infinite values in {len(bad)} tensors: the weights are "
                              f"damaged; {_HINT}", details=[f"non-finite: {shorten(bad, 4)}"])
    network: nn.Module
    try:
        network = GPEN(GPENConfig.from_state_dict(state)) if kind == "gpen" else \
            GFPGANv1Clean(GFPGANConfig.from_state_dict(state))
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{weights.path} holds {what} whose layout no {kind} network has; {_HINT}",
                              details=[f"{type(exc).__name__}: {exc}"]) from exc
    missing, unexpected, shaped = mismatch(network, state)
    if kind == "gpen":
        missing = [key for key in missing if not any(part in key for part in _GPEN_OPTIONAL)]
        if unexpected:
            log.debug("%s: ignored entries that GPEN does not have: %s", weights.path, shorten(unexpected, 5))
        unexpected = []
    if missing or unexpected or shaped:
        raise CheckpointError(f"{weights.path} holds {what} that do not fit the {kind} network built from their "
                              f"shapes; {_HINT}", details=describe_mismatch(kind, missing, unexpected, shaped))
    expected = network.state_dict()
    network.load_state_dict({key: value for key, value in state.items() if key in expected}, strict=False)
    network.eval().requires_grad_(False)
    return network
