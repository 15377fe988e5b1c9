"""Bilinear sampling of channels-last maps as a weighted gather (fomm_lab/engine/fast/sample.py) against
grid_sample, and where the TPSMM decoder uses it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fomm_lab.engine.fast.sample import gather_applies, sample_channels_last


def _case(batch: int, count: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = (torch.randn(batch, 6, 9, 13, generator=g) * 3).to(dtype).contiguous(memory_format=torch.channels_last)
    grid = torch.rand(count, 7, 11, 2, generator=g) * 2.6 - 1.3  # points outside the map too
    grid[0, 0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [0.0, 1.0]])  # corners and edges exactly
    scale = torch.rand(count, 1, 7, 11, generator=g)
    return features, grid, scale


@pytest.mark.parametrize("batch, count", [(1, 1), (1, 3), (3, 3)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_equals_grid_sample_times_the_scale(batch, count, dtype):
    """grid_sample(align_corners=True, zero padding) in float32 times the scale, up to the reduced precision's
    rounding of the weights and the result; one map serves every grid, or one map per grid."""
    features, grid, scale = _case(batch, count, dtype)
    expected = F.grid_sample(features.float().expand(count, -1, -1, -1), grid, align_corners=True) * scale
    got = sample_channels_last(features, grid, scale)
    assert got.shape == expected.shape and got.dtype == dtype
    assert got.is_contiguous(memory_format=torch.channels_last)
    # each weight and the sum rounded once: within 2 eps of the sum of the absolute weighted values
    magnitude = F.grid_sample(features.float().abs().expand(count, -1, -1, -1), grid, align_corners=True) * scale
    assert bool(((got.float() - expected).abs() <= 2 * torch.finfo(dtype).eps * magnitude + 1e-6).all())
    outside = (grid.abs() > 1 + 2 / 8).any(-1)  # more than a pixel outside: every corner weighs zero
    assert bool((got.float().permute(0, 2, 3, 1)[outside] == 0).all()) and bool(outside.any())
    plain = sample_channels_last(features, grid)
    torch.testing.assert_close(plain.float(), F.grid_sample(features.float().expand(count, -1, -1, -1), grid,
                                                            align_corners=True), atol=0.1, rtol=0.02)


def test_a_wrong_number_of_maps_is_an_error():
    features, grid, _ = _case(2, 3, torch.bfloat16)
    with pytest.raises(ValueError, match="2 feature maps for 3 grids"):
        sample_channels_last(features, grid)


def test_applies_to_reduced_precision_channels_last_cpu_maps_only():
    x = torch.randn(1, 4, 5, 6)
    assert not gather_applies(x)  # float32: grid_sample, bit for bit
    assert not gather_applies(x.bfloat16())  # NCHW
    assert gather_applies(x.bfloat16().contiguous(memory_format=torch.channels_last))
    assert gather_applies(x.half().contiguous(memory_format=torch.channels_last))
