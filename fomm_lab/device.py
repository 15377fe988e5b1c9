"""Choice of the torch device and the compute precision."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

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


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
"""The CPU flags that decide the engine's speed: AVX2 and AVX-512 vector units, native bfloat16 (AVX512-BF16, AMX)."""


@dataclass(frozen=True)
class CpuInfo:
    """This CPU as the speed choices see it: ``model`` (the model name of /proc/cpuinfo, or the platform's
    processor name), the :data:`CPU_FLAGS` it has and its ``vendor`` (/proc/cpuinfo's vendor_id,
    ``AuthenticAMD`` or ``GenuineIntel``; empty where unknown)."""

    model: str
    flags: tuple[str, ...]
    vendor: str = ""

    def describe(self) -> str:
        """``AMD EPYC (avx2 avx512f avx512_bf16)``: the model and its relevant flags, for tables and logs."""
        return f"{self.model} ({' '.join(self.flags) or 'none of ' + ', '.join(CPU_FLAGS)})"


def cpu_info() -> CpuInfo:
    """This CPU's model name, relevant flags and vendor (from /proc/cpuinfo; elsewhere the platform's name, no flags,
    no vendor)."""
    model, vendor, flags = "", "", set[str]()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = " ".join(value.split())
                elif key.strip() == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
                if model and vendor and flags:
                    break
    except OSError:
        pass
    if not model:
        import platform

        model = platform.processor() or platform.machine() or "unknown CPU"
    return CpuInfo(model, tuple(f for f in CPU_FLAGS if f in flags), vendor)


def cpu_has_native_bfloat16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bfloat16 is faster than float32."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_info().flags))


def auto_dtype(device: torch.device, rates: Mapping[torch.dtype, float] | None = None) -> torch.dtype:
    """bfloat16 on a CPU with native bfloat16 or a GPU that supports it, float16 on other GPUs,
    float32 otherwise (the choice of ``dtype="auto"``).

    rates: this machine's measured convolution rates by precision (GFLOP/s, from ``fomm-lab tune``:
    :func:`fomm_lab.engine.fast.tune.measured_rates`); on a CPU with both float32's and bfloat16's, bfloat16 is
    chosen only when its rate beats float32's (the flags alone can mislead: a CPU may have the instructions and
    still run bfloat16 no faster)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        if rates and torch.float32 in rates and torch.bfloat16 in rates:
            return torch.bfloat16 if rates[torch.bfloat16] > rates[torch.float32] else torch.float32
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype, device: torch.device | None = None,
                  rates: Mapping[torch.dtype, float] | None = None) -> torch.dtype:
    """A torch dtype from a name (``float32``, ``bfloat16``, ``float16``, ``auto``) or a dtype; ``rates``: the
    measured rates ``auto`` weighs (:func:`auto_dtype`)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise FommLabError(f"dtype {dtype} is not supported; use one of {', '.join(DTYPES)}")
        return dtype
    if dtype == "auto":
        return auto_dtype(device or torch.device("cpu"), rates)
    if dtype not in DTYPES:
        raise FommLabError(f"dtype {dtype!r} is not supported; use one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)
