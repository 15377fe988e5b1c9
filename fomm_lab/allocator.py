"""How the C library's allocator treats large freed blocks: kept for reuse by the programs that animate.

glibc's malloc maps every block above its threshold (128 KB, raised up to 32 MB as blocks are freed) afresh from
the kernel and unmaps it when it is freed, and trims the heap's free top beyond 128 KB; each page of a new
mapping then costs a page fault when first written. The engine allocates activation maps of 8 to 17 MB for every
256x256 frame, so a TPSMM float32 frame took about 40,000 page faults (8 % of its time; docs/performance.md). With
larger thresholds those blocks come from the heap and are reused frame after frame. The settings are process-wide:
the command line applies them to itself (:func:`keep_freed_blocks`) and passes them to the JupyterLab server it
starts (:func:`child_environment`, which glibc reads at start-up); the library never changes them on import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 64 * 2**20
"""Blocks up to this size come from the heap (a 256x256 frame's maps are at most about 17 MB)."""

TRIM_THRESHOLD = 256 * 2**20
"""Free memory kept at the heap's top instead of being returned to the kernel (about a frame's transient maps)."""

MALLOC_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
"""The same settings as glibc's environment variables, for child processes (read when they start)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def _user_chose() -> bool:
    return any(name in os.environ for name in MALLOC_ENVIRONMENT)


def child_environment() -> dict[str, str]:
    """The variables to add to a child process's environment: :data:`MALLOC_ENVIRONMENT`, or none where the
    environment already sets either of them (the user's choice stands)."""
    return {} if _user_chose() else dict(MALLOC_ENVIRONMENT)


def keep_freed_blocks() -> bool:
    """Set this process's glibc malloc to :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD`; True when set. Nothing
    is changed where the C library is not glibc or where the environment already sets either variable (the user's
    choice stands)."""
    if _user_chose():
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
