"""What the speed-path tests share: tolerances, tensor helpers and the fused / checkpoint-form model pairs.

Tolerances. The rewrites are exact in real arithmetic; what differs is float32 rounding: summation order
(folded batch norm, sub-pixel kernels, pooled jacobians) and, for Winograd, the transforms' extra
roundings (a few times those of a direct convolution: relative ~1e-6 of the output's magnitude). On the
networks' outputs (keypoints in [-1, 1], deformations in [-1, 1], frames in [0, 1]) that is ~1e-6; the
tests allow 1e-5 against the checkpoint-form networks and keep the golden fixtures' 1e-4 against the
official implementation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fomm_lab import load_model
from fomm_lab.engine.motion import normalize_keypoints

EXACT = 1e-5  # rewrites vs the checkpoint-form networks (float32 rounding only)
GOLDEN = 1e-4  # vs the official implementation's outputs (tests/fixtures/README.md)


def nchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def randomise_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Batch-norm statistics and affine terms that are not the identity, so folding them is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def winograd_bound(direct_error: float, exact: torch.Tensor) -> float:
    """What F(4x4, 3x3) may add to a direct convolution's rounding: its transforms have entries up to 5 (B^T) and
    8 (A^T), so ~20x the direct error, or 5e-5 of the output's magnitude (float32 has 6e-8 per rounding). The
    direct error is itself a noisy sample of the summation's rounding, so the second bound is what holds: on a
    2700-term sum (300 channels x 3 x 3) Winograd was measured up to 48x the direct error and 1.3e-5 of the
    magnitude over 8 seeds (Intel Xeon with AMX). A wrong transform errs by the output's own magnitude."""
    return max(20 * direct_error, 5e-5 * float(exact.abs().max()))


@pytest.fixture(scope="module", params=["vox", "mgif"])
def pair(request, golden_dir):
    """(checkpoint-form model, fused model, golden arrays) of a tiny official model (mgif: one jacobian map)."""
    name = request.param
    args = golden_dir / f"tiny-{name}.yaml", golden_dir / f"tiny-{name}-cpk.pth.tar"
    return load_model(*args, device="cpu", fuse=False), load_model(*args, device="cpu"), \
        dict(np.load(golden_dir / f"tiny-{name}-golden.npz"))


def forward(model, gold, relative=True):
    source, driving = nchw(gold["source"][None]), nchw(gold["driving"])
    with torch.inference_mode():
        kp_s, kp_d = model.kp_detector(source), model.kp_detector(driving)
        out = model.generator(source, normalize_keypoints(kp_s, kp_d, kp_d[0], relative=relative), kp_s)
    return kp_s, kp_d, out
