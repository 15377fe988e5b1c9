"""Reduced precision keeps the enhancers' quality (PSNR against float32 on the tiny fixtures), and ``auto`` picks
bfloat16 only where the CPU computes it natively."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fomm_lab import device
from fomm_lab.enhance import load_enhancer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "enhance-golden"

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MIN_PSNR = 40.0
"""bfloat16 against float32, dB. Measured on the tiny fixtures: GPEN 44.8, GFPGAN 43.3 (mean |diff| about one
level, 99th percentile 5-6 levels; float16 57.6 and 54.8). What bounds it: autocast rounds each convolution's
and matrix product's inputs to bfloat16 (8 bits of mantissa, relative error 2^-9) and accumulates in float32;
the error compounds over the networks' depth (GPEN: 7 encoder and 15 decoder layers at 512), and the cast to
uint8 turns a small float error on a truncation or rounding boundary into a whole level. These are narrow
random networks; the released weights at full width were not available to measure."""


def _psnr(got: np.ndarray, want: np.ndarray) -> float:
    mse = float(np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[Path, np.ndarray]]:
    gpen = np.load(FIXTURES / "gpen-tiny-512-golden.npz")["frames"]
    gfpgan = np.ascontiguousarray(np.load(FIXTURES / "gfpgan-tiny-512-golden.npz")["faces_bgr"][..., ::-1])
    return {"gpen": (FIXTURES / "gpen-tiny-512.pdparams", gpen), "gfpgan": (FIXTURES / "gfpgan-tiny-512.pth", gfpgan)}


@pytest.mark.parametrize("kind", ["gpen", "gfpgan"])
def test_bfloat16_keeps_the_quality_of_float32(cases, kind):
    weights, frames = cases[kind]
    full = load_enhancer(kind, weights, batch_size=2).enhance(frames)
    half = load_enhancer(kind, weights, dtype="bfloat16", batch_size=2).enhance(frames)
    assert not np.array_equal(half, full)  # it did run in bfloat16
    assert _psnr(half, full) >= MIN_PSNR


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_is_bfloat16_only_on_a_cpu_that_computes_it_natively(cases, monkeypatch, native, expected):
    monkeypatch.setattr(device, "cpu_has_native_bfloat16", lambda: native)
    weights, _ = cases["gpen"]
    assert load_enhancer("gpen", weights, dtype="auto").dtype == expected
