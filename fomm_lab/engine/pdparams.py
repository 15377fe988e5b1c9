"""Reading PaddleGAN's ``.pdparams`` weights safely, without PaddlePaddle.

``paddle.save`` writes a plain pickle (protocol 2 to 4). PaddleGAN's First Order Motion files hold
``{'generator': {name: ndarray}, 'kp_detector': {name: ndarray}}`` (plus Paddle's bookkeeping entries,
whose names end in ``@@``); Paddle 2.1 and later store each tensor of such a nested dict as a
``(name, ndarray)`` tuple instead of a bare array.

The pickle is read by a restricted unpickler. The only things it may name are numpy's array
reconstruction (``_reconstruct`` and ``scalar`` of ``numpy.core.multiarray`` or, numpy 2,
``numpy._core.multiarray``; ``numpy.ndarray``; ``numpy.dtype``), plain containers (``tuple``, ``list``,
``dict``, ``collections.OrderedDict``) and ``_codecs.encode`` of latin-1 text (how protocol 2 stores
bytes). Anything else (``os.system``, ``builtins.eval``, a class with a ``__reduce__`` ...) is refused
when the pickle names it, before anything runs. Arrays may hold numbers only, and together no more bytes
than the file has (a pickle cannot inflate one stored array into many).

Names are mapped to the torch networks' state dicts: BatchNorm ``_mean``/``_variance`` become
``running_mean``/``running_var`` and the ``num_batches_tracked`` counter that Paddle does not keep is
added (0); every other name is kept. Conv weights have the same (out, in/groups, kh, kw) layout in both
frameworks, so values are used as they are.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, shorten

try:  # numpy 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]

__all__ = ["MAX_FILE_BYTES", "is_pdparams", "read_pdparams", "torch_state"]

MAX_FILE_BYTES = 4 << 30
"""Largest .pdparams file read (PaddleGAN's biggest FOMM file is about 0.23 GB)."""

_TORCH_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
"""How a legacy (non-zip) torch file starts, after the protocol (and, from protocol 4, frame) header: a
pickled LONG1 of torch's magic number 0x1950a86a20f9469cfc6c."""

_BOOKKEEPING = "@@"
"""Paddle's own entries (``StructuredToParameterName@@``) end with this; they hold no weights."""

_SPLIT_ARRAYS = "UnpackBigParamInfor@@"
"""Paddle's marker for arrays over 1 GB split into slices (protocol 2-3); no FOMM weight is that big."""

_RENAMES = {"_mean": "running_mean", "_variance": "running_var"}
_NUMERIC_KINDS = "fiub"  # float, signed, unsigned, bool


def is_pdparams(head: bytes) -> bool:
    """True when a file's first bytes are a protocol 2-5 pickle that is not a legacy torch checkpoint."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and _TORCH_LEGACY_MAGIC not in head[:32]


class _Refused(Exception):
    """The pickle asks for something a weights file never holds. ``name``: what; ``code``: True when it
    names a callable or class (which would run code), False for data that is not numbers."""

    def __init__(self, name: str, why: str = "", code: bool = True) -> None:
        super().__init__(name)
        self.name = name
        self.why = why
        self.code = code


class _Budget:
    """Bytes of array data built so far, against the file's size."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class _Unpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, and refuses every other name."""

    def __init__(self, file: io.BytesIO, budget: _Budget) -> None:
        super().__init__(file)
        array_class = _array_class(budget)

        def reconstruct(subtype: Any, shape: Any, typecode: Any) -> Any:
            # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') then sets its state; the
            # shape given here is never used for anything else, so an empty array is all that is made.
            if subtype is not array_class:
                raise _Refused("numpy's array reconstruction of a non-array", "a malformed pickle", code=False)
            return _multiarray._reconstruct(array_class, (0,), typecode)

        self._allowed: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): array_class,
            ("numpy", "dtype"): np.dtype,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("builtins", "tuple"): tuple,
            ("builtins", "list"): list,
            ("builtins", "dict"): dict,
            ("_codecs", "encode"): _latin1,
        }
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            self._allowed[(module, "_reconstruct")] = reconstruct
            self._allowed[(module, "scalar")] = _multiarray.scalar

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # how protocol-2 pickles name Python 3's builtins
            module = "builtins"
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent id", "an object stored outside the pickle", code=False)


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it: latin-1 text back to the bytes it stands for."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode of something other than latin-1 text", "a malformed pickle", code=False)
    return text.encode("latin1")


def _array_class(budget: _Budget) -> type[np.ndarray]:
    """An ndarray subclass whose unpickling checks the state it is given (numbers only, within budget)."""

    class _Array(np.ndarray):
        def __setstate__(self, state: Any) -> None:
            if not isinstance(state, tuple) or len(state) not in (4, 5):
                raise _Refused("an array with an unknown pickled state", "a malformed pickle", code=False)
            dtype, data = state[-3], state[-1]
            if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in _NUMERIC_KINDS:
                raise _Refused(f"an array of {dtype} values", "weights are numbers", code=False)
            if not isinstance(data, (bytes, bytearray)):
                raise _Refused("an array of Python objects", "weights are numbers", code=False)
            budget.used += len(data)
            if budget.used > budget.limit:
                raise _Refused("more array data than the file's size", "a stored array reused many times",
                               code=False)
            super().__setstate__(state)

    return _Array


def _refusal(path: Path, refused: _Refused) -> CheckpointError:
    if refused.code:
        return CheckpointError(
            f"{path} holds Python objects that would run code when loaded ({refused.name}): it was refused and "
            "nothing was executed; weights files hold only arrays of numbers, so use one from a trusted source")
    return CheckpointError(f"{path} is not a weights file: it holds {refused.name} ({refused.why}); it was refused "
                           "and nothing in it was used")


def read_pdparams(path: str | Path) -> dict[str, Any]:
    """Unpickle a ``.pdparams`` file with the restricted unpickler (see the module's description).

    Returns the top-level dict, its ``generator`` and ``kp_detector`` entries (when present) as torch
    state dicts (:func:`torch_state`). Raises CheckpointError for a refused, truncated or damaged file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path} is {size / 1e9:.1f} GB, more than any PaddleGAN weights file "
                              f"({MAX_FILE_BYTES / 1e9:.1f} GB at most): it was not read")
    raw = path.read_bytes()
    try:
        data = _Unpickler(io.BytesIO(raw), _Budget(len(raw))).load()
    except _Refused as refused:
        raise _refusal(path, refused) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path} is truncated or corrupt: its pickle cannot be read to the end; download it again or check "
            "the path", details=[f"{type(exc).__name__}: {exc}"]) from exc
    finally:
        del raw
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a dict of networks' weights: it is not a "
                              "PaddleGAN First Order Motion Model file")
    if _SPLIT_ARRAYS in data:
        raise CheckpointError(f"{path} stores arrays split in slices (Paddle's format for arrays over 1 GB); "
                              "no First Order Motion Model weight is that large, so this is another model's file")
    return {key: (torch_state(value, f"{path}: {key}") if key in ("generator", "kp_detector") else value)
            for key, value in data.items() if not str(key).endswith(_BOOKKEEPING)}


def torch_state(entries: Any, where: str) -> dict[str, torch.Tensor]:
    """One network's Paddle weights ``{name: ndarray or (name, ndarray)}`` as a torch state dict.

    BatchNorm statistics are renamed (``_mean`` -> ``running_mean``, ``_variance`` -> ``running_var``) and
    get the ``num_batches_tracked`` counter torch keeps; other names are unchanged. ``where`` names the
    entry in error messages. Arrays must be floating point (FOMM's weights and statistics all are).
    """
    if not isinstance(entries, Mapping):
        raise CheckpointError(f"{where} is a {type(entries).__name__}, not a mapping of parameter names to arrays")
    state: dict[str, torch.Tensor] = {}
    not_arrays, not_float = [], []
    for key, value in entries.items():
        key = str(key)
        if key.endswith(_BOOKKEEPING):
            continue
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            value = value[1]  # Paddle >= 2.1: (tensor name, values)
        if not isinstance(value, np.ndarray):
            not_arrays.append(f"{key} ({type(value).__name__})")
            continue
        value = np.ascontiguousarray(np.asarray(value))  # a plain, C-ordered ndarray
        if value.dtype.kind != "f":
            not_float.append(f"{key} ({value.dtype})")
            continue
        prefix, _, leaf = key.rpartition(".")
        if leaf in _RENAMES:
            state[f"{prefix}.{_RENAMES[leaf]}" if prefix else _RENAMES[leaf]] = torch.from_numpy(value)
            if leaf == "_mean":
                state[f"{prefix}.num_batches_tracked" if prefix else "num_batches_tracked"] = torch.tensor(0)
        else:
            state[key] = torch.from_numpy(value)
    if not_arrays:
        raise CheckpointError(f"{where} holds entries that are not arrays: {shorten(not_arrays, 4)}")
    if not_float:
        raise CheckpointError(f"{where} holds non-floating-point arrays ({shorten(not_float, 4)}); FOMM weights are "
                              "floating point (bfloat16 weights saved by Paddle as uint16 are not supported)")
    return state
