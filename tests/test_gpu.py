"""GPU checks, run only on a CUDA machine with ``pytest -m gpu`` (deselected by default)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fomm_lab import Animator, load_model

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_model(tiny_vox):
    if not torch.cuda.is_available():
        pytest.fail("`pytest -m gpu` needs a CUDA device; this machine has none")
    return load_model(*tiny_vox, device=None)  # None must pick CUDA here


def test_device_none_picks_cuda(cuda_model):
    assert cuda_model.device.type == "cuda"


@pytest.mark.parametrize("dtype, min_psnr", [("float32", 60.0), ("float16", 35.0), ("bfloat16", 30.0)])
def test_cuda_matches_cpu_golden(golden_dir, cuda_model, dtype, min_psnr):
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    frames = np.stack(list(Animator(cuda_model, dtype=dtype, batch_size=4).animate(gold["source"], gold["driving"])))
    expected = np.round(np.clip(gold["prediction_rel1_adapt1"], 0, 1) * 255)
    mse = ((frames.astype(np.float64) - expected) ** 2).mean()
    assert 10 * np.log10(255**2 / max(mse, 1e-12)) >= min_psnr
