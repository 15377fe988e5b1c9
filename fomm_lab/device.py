"""Choice of the torch device and the compute precision."""

from __future__ import annotations

import logging

import torch

from .errors import FommLabError, Remedy

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Precisions the engine runs in, by name; ``"auto"`` picks one of them (:func:`auto_dtype`)."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or the best available one: cuda > mps > cpu (logged at INFO)."""
    if device is not None:
        chosen = torch.device(device)
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise FommLabError(f"device {str(device)!r} was asked for but CUDA is not available here",
                               remedies=[Remedy("use the CPU ({})", "runtime.device", "cpu")])
        return chosen
    if torch.cuda.is_available():
        chosen = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        chosen = torch.device("mps")
    else:
        chosen = torch.device("cpu")
    log.info("fomm_lab: using device %s", chosen)
    return chosen


def cpu_has_native_bfloat16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bfloat16 is faster than float32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        flags = []
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def auto_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a CPU with native bfloat16 or a GPU that supports it, float16 on other GPUs,
    float32 otherwise (the choice of ``dtype="auto"``)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype, device: torch.device | None = None) -> torch.dtype:
    """A torch dtype from a name (``float32``, ``bfloat16``, ``float16``, ``auto``) or a dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise FommLabError(f"dtype {dtype} is not supported; use one of {', '.join(DTYPES)}")
        return dtype
    if dtype == "auto":
        return auto_dtype(device or torch.device("cpu"))
    if dtype not in DTYPES:
        raise FommLabError(f"dtype {dtype!r} is not supported; use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)
