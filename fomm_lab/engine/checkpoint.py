"""Reading FOMM checkpoint files safely and loading them into the networks.

Official files (``vox-cpk.pth.tar`` ...) are torch pickles (legacy or zip format) holding a dict
with ``generator`` and ``kp_detector`` state dicts plus training state (``discriminator``,
``optimizer_*``, ``epoch``) that inference ignores. They are always read with
``torch.load(weights_only=True)``: a file that would run code when unpickled is refused.
PaddleGAN's ``.pdparams`` files (plain pickles of numpy arrays) are told apart by their content, whatever
their name, and read by :mod:`fomm_lab.engine.pdparams` with the same refusal of anything but arrays.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, shorten
from ..io import sniff
from . import pdparams

REQUIRED_ENTRIES = ("generator", "kp_detector")
_HINT = "download it again (`fomm-lab download NAME`) or check the path"


def _sniff(path: Path) -> None:
    """Raise a specific CheckpointError for files that are clearly not a torch checkpoint."""
    if path.is_dir():
        if (path / "data.pkl").exists() or any(path.glob("*/data.pkl")):
            raise CheckpointError(
                f"{path} is a folder holding an unpacked checkpoint: a .pth.tar file is a torch checkpoint, "
                "not a tar archive, and must not be extracted. Use the original .pth.tar file itself."
            )
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download failed; {_HINT}")
    head = sniff.read_head(path)
    if sniff.is_html(head):
        raise CheckpointError(
            f"{path} is an HTML page, not a checkpoint (a download link served a web page, e.g. a Google Drive "
            f"quota or confirmation page); {_HINT}"
        )
    if path.name == "data.pkl":
        raise CheckpointError(
            f"{path} is one file of an unpacked checkpoint: a .pth.tar file is a torch checkpoint, not a tar "
            "archive, and must not be extracted. Use the original .pth.tar file itself."
        )
    if not head.startswith(b"PK") and tarfile.is_tarfile(path):
        raise CheckpointError(
            f"{path} is a tar archive, not a torch checkpoint; extract the .pth.tar checkpoint from it and use that"
        )


_SAFE_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")


def _pickled_callables(path: Path) -> list[str]:
    """Names of the non-torch callables a (plain) pickle file would import, read without unpickling."""
    names: list[str] = []
    strings: list[str] = []
    try:
        with path.open("rb") as fh:
            for opcode, arg, _ in pickletools.genops(fh):
                if isinstance(arg, str):
                    strings.append(arg)
                if opcode.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
    except (ValueError, EOFError, UnicodeDecodeError, pickle.PickleError):
        pass
    return [name for name in names if not name.startswith(_SAFE_GLOBALS)]


MAX_UNPACKED_BYTES = 4 << 30
"""Largest total a zip checkpoint may unpack to (the official ones hold about 0.7 GB); a small file
that would inflate past it is refused before it is read."""

_CODE_WORDS = re.compile(r"unsupported global|is blocked|not an allowed global", re.IGNORECASE)


def _check_zip_size(path: Path) -> None:
    """Refuse a zip checkpoint whose entries would unpack to more than MAX_UNPACKED_BYTES."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # torch.load reports the damage itself
    if total > MAX_UNPACKED_BYTES:
        raise CheckpointError(f"{path} would unpack to {total / 1e9:.1f} GB from {path.stat().st_size / 1e6:.1f} MB "
                              f"(more than {MAX_UNPACKED_BYTES / 1e9:.1f} GB): it is not a FOMM checkpoint and was "
                              "not loaded; use the original file")


def code_refusal(path: Path, names: list[str]) -> CheckpointError:
    named = f" ({shorten(names, 3)})" if names else ""
    return CheckpointError(f"{path} holds Python objects that would run code when loaded{named}: it was refused and "
                           "nothing was executed; FOMM checkpoints hold only tensors, so use one from a trusted source")


def checkpoint_format(path: str | Path) -> str:
    """``"pdparams"`` for PaddleGAN's pickles of numpy arrays, ``"torch"`` for everything else (torch's zip
    and legacy formats, and files that are neither, which torch's reader then names as damaged)."""
    return "pdparams" if pdparams.is_pdparams(sniff.read_head(path)) else "torch"


RequiredEntries = Callable[[Path, Mapping], dict]
"""A family's check of a checkpoint's top-level dict: (path, dict) -> the dict, or CheckpointError naming what the
file is when it lacks the family's networks."""


def read_checkpoint(path: str | Path, *, required: RequiredEntries | None = None) -> dict:
    """Load a checkpoint file's top-level dict without executing code.

    Torch files are read with ``torch.load(weights_only=True)``, PaddleGAN's ``.pdparams`` with
    :func:`fomm_lab.engine.pdparams.read_pdparams` (names mapped to the torch networks'); the format is
    told by the content, not the name. Returns the dict (entries such as ``generator`` and
    ``kp_detector`` are state dicts of tensors). Raises CheckpointError saying what the file is when it is
    not a usable checkpoint. required: the family's check of the entries (default FOMM's ``generator`` and
    ``kp_detector``; :mod:`fomm_lab.engine.tpsmm.checkpoint` passes TPSMM's).
    """
    path = Path(path)
    check = required_entries if required is None else required
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; {_HINT}")
    _sniff(path)
    if checkpoint_format(path) == "pdparams":
        return check(path, pdparams.read_pdparams(path))
    if sniff.is_zip(sniff.read_head(path)):
        _check_zip_size(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=sniff.is_zip(sniff.read_head(path)))
    except pickle.UnpicklingError as exc:
        callables = _pickled_callables(path)
        blocked = re.findall(r"GLOBAL (\S+)", str(exc))
        if _CODE_WORDS.search(str(exc)) or callables:
            raise code_refusal(path, callables or blocked) from exc
        raise CheckpointError(f"{path} is not a torch checkpoint (its pickle cannot be read as tensors); {_HINT}",
                              details=[_first_line(exc)]) from exc
    except Exception as exc:  # torch raises many types (EOFError, KeyError, RuntimeError ...) for bad bytes
        raise CheckpointError(f"{path} is truncated or corrupt; {_HINT}",
                              details=[f"{type(exc).__name__}: {_first_line(exc)}"]) from exc
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dict; {_HINT}")
    return check(path, data)


TPSMM_ENTRIES = ("kp_detector", "dense_motion_network", "inpainting_network")
"""The entries of a Thin-Plate Spline Motion Model checkpoint (what tells one apart from a FOMM checkpoint)."""


def required_entries(path: Path, data: Mapping) -> dict:
    """``data`` as a dict, or CheckpointError when it lacks FOMM's networks' entries (a TPSMM checkpoint is named
    as such, and so is a face swap's segment model, in either of its layouts)."""
    kp_detector = data.get("kp_detector")
    if "segmentation_module" in data or "reconstruction_module" in data or (
            isinstance(kp_detector, Mapping) and any(str(k).startswith("semantic_seg.") for k in kp_detector)):
        raise CheckpointError(f"{path} is a co-part segmentation (face swap) checkpoint, not a First Order Motion "
                              "Model checkpoint: it swaps faces (`fomm-lab swap --checkpoint`, "
                              "fomm_lab.pipeline.SwapJob); animate with a motion model's checkpoint")
    missing = [key for key in REQUIRED_ENTRIES if key not in data]
    if missing and all(key in data for key in TPSMM_ENTRIES):
        raise CheckpointError(
            f"{path} has no 'generator' entry: it is a Thin-Plate Spline Motion Model checkpoint (it has "
            "dense_motion_network and inpainting_network): use a TPSMM config (e.g. tpsmm-vox)",
            details=[f"it has: {shorten([str(k) for k in data], 8)}"])
    if missing:
        raise CheckpointError(
            f"{path} has no {' or '.join(repr(m) for m in missing)} entry: it is not a First Order Motion Model "
            "checkpoint", details=[f"it has: {shorten([str(k) for k in data], 8) or 'nothing'}"])
    return dict(data)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "weights_only" not in line and "Weights only" not in line]
    return (useful or lines or [""])[0].strip()


def non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding NaN or infinity."""
    return [name for name, tensor in state.items()
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove a DataParallel ``module.`` prefix from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def mismatch(module: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    """Keys missing from ``state``, unexpected in it, and present with another shape."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, shaped


def describe_mismatch(name: str, missing: list[str], unexpected: list[str], shaped: list[str]) -> list[str]:
    """Detail lines for a state dict that does not fit a network: each list shortened with a count."""
    return [f"{name}: {title} ({len(items)}): {shorten(items, 4)}"
            for title, items in (("missing", missing), ("unexpected", unexpected), ("shape (file vs config)", shaped))
            if items]
