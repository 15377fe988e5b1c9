"""Every exact rewrite of the blocks and the whole networks against the checkpoint-form networks, and the memory
fusing frees (tolerances: speed_helpers)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from speed_helpers import EXACT, GOLDEN, forward, pair, randomise_norms, winograd_bound  # noqa: F401 (pair: a fixture)

from fomm_lab.engine.fast import fuse
from fomm_lab.engine.fast.conv import FusedConv
from fomm_lab.engine.fast.fuse import (
    FusedResBlock,
    FusedSameBlock,
    FusedUpBlock,
    PooledJacobianHead,
    StridedBlur,
    SubpixelUpBlock,
    enable_winograd,
    fuse_for_inference,
)
from fomm_lab.engine.model import build_networks
from fomm_lab.engine.nets.blocks import (
    AntiAliasInterpolation2d,
    DownBlock2d,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    inverse_2x2,
)

# ------------------------------------------------------------------------------------ the blocks


@pytest.mark.parametrize("block", [SameBlock2d(6, 10), DownBlock2d(6, 10), ResBlock2d(10), UpBlock2d(10, 7),
                                   UpBlock2d(300, 240), SameBlock2d(3, 8, kernel_size=(7, 7), padding=(3, 3))])
@pytest.mark.parametrize("winograd", [False, True])
def test_fused_block_equals_block(block, winograd):
    block = block.eval()
    randomise_norms(block)
    fused = fuse_for_inference(torch.nn.Sequential(block).eval())[0]
    assert type(fused) in (FusedSameBlock, FusedResBlock, SubpixelUpBlock, FusedUpBlock)
    if isinstance(block, UpBlock2d):  # sub-pixel unless wide (its kernels would take 16/9 of the memory)
        assert isinstance(fused, SubpixelUpBlock) == (block.conv.in_channels < 100)
    if winograd:
        enable_winograd(fused)
    x = torch.randn(2, block.conv.in_channels if hasattr(block, "conv") else 10, 48, 40,
                    generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want, got = block(x), fused(x)
        exact = __import__("copy").deepcopy(block).double()(x.double())
    assert got.shape == want.shape
    direct_error = float((want.double() - exact).abs().max())
    assert float((got.double() - exact).abs().max()) <= winograd_bound(direct_error, exact)


def test_subpixel_export_path_and_channels_last_equal_the_fast_path(monkeypatch):
    block = UpBlock2d(8, 5).eval()
    randomise_norms(block)
    fused = SubpixelUpBlock(block)
    x = torch.randn(2, 8, 13, 17)
    x_last = x.contiguous(memory_format=torch.channels_last)  # (its convolution may round differently)
    with torch.inference_mode():
        fast, fast_from_last = fused(x), fused(x_last)
        fused.channels_last = True
        last = fused(x)
        monkeypatch.setattr(fuse, "plain_ops", lambda: True)
        plain = fused(x)
        plain_from_last = fused(x_last)  # the interleave done in NHWC
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert plain_from_last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast, last) and torch.equal(fast, plain) and torch.equal(fast_from_last, plain_from_last)
    monkeypatch.undo()
    fused.channels_last = False
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # as the reduced precisions run it
        fast_bf16 = fused(x_last)
        monkeypatch.setattr(fuse, "plain_ops", lambda: True)
        plain_bf16 = fused(x_last)
    assert fast_bf16.dtype == torch.bfloat16 and fast_bf16.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast_bf16, plain_bf16)
    with torch.inference_mode():
        assert torch.allclose(fast, block(x), atol=EXACT, rtol=0)


@pytest.mark.parametrize("scale, size", [(0.25, (256, 256)), (0.25, (250, 203)), (0.125, (96, 80)), (0.5, (31, 30)),
                                         (1 / 3, (64, 65))])
def test_strided_blur_is_bit_identical(scale, size):
    block = AntiAliasInterpolation2d(3, scale)
    assert StridedBlur.applies(block)
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        want, got = block(x), StridedBlur(block)(x)
    assert got.shape == want.shape and torch.equal(got, want)


def test_non_integer_downscale_is_kept():
    block = AntiAliasInterpolation2d(3, 0.4)  # nearest sampling every 2.5 pixels: not a strided convolution
    assert not StridedBlur.applies(block)
    assert type(fuse_for_inference(torch.nn.Sequential(block).eval())[0]) is AntiAliasInterpolation2d


@pytest.mark.parametrize("padding", [0, 3])
def test_pooled_jacobian_head_equals_dense_head(padding, monkeypatch):
    g = torch.Generator().manual_seed(2)
    conv = torch.nn.Conv2d(9, 4 * 5, 7, padding=padding).eval()
    features = torch.randn(3, 9, 20, 22, generator=g)
    h, w = 20 + 2 * padding - 6, 22 + 2 * padding - 6
    heatmap = torch.softmax(torch.randn(3, 5, h * w, generator=g) * 3, dim=2).view(3, 5, h, w)
    with torch.inference_mode():
        dense = torch.einsum("nkhw,nkchw->nkc", heatmap, conv(features).view(3, 5, 4, h, w))
        head = PooledJacobianHead(conv)
        pooled = head(features, heatmap)
        pooled_channels_last = head(features.contiguous(memory_format=torch.channels_last), heatmap)
        monkeypatch.setattr(fuse, "plain_ops", lambda: True)
        exported_form = head(features, heatmap)
    assert torch.allclose(pooled, dense, atol=EXACT, rtol=0) and torch.equal(pooled_channels_last, pooled)
    assert torch.allclose(exported_form, dense, atol=EXACT, rtol=0)


def test_inverse_2x2_equals_torch_inverse():
    m = torch.randn(4, 10, 2, 2, dtype=torch.float64) + 2 * torch.eye(2, dtype=torch.float64)
    assert torch.allclose(inverse_2x2(m), torch.inverse(m), atol=1e-12, rtol=0)


# ----------------------------------------------------------------- whole networks vs the checkpoint's

@pytest.mark.parametrize("winograd", [False, True])
def test_fused_networks_equal_checkpoint_networks_and_golden(pair, winograd):
    plain, fused, gold = pair
    assert not plain.fused and fused.fused
    if winograd:
        fused.inference_networks()  # makes the Winograd transforms of the model's own (fused) networks
    kp_s0, kp_d0, out0 = forward(plain, gold)
    kp_s1, kp_d1, out1 = forward(fused, gold)
    for a, b in [(kp_s0.value, kp_s1.value), (kp_s0.jacobian, kp_s1.jacobian), (kp_d0.value, kp_d1.value),
                 (kp_d0.jacobian, kp_d1.jacobian), (out0["deformation"], out1["deformation"]),
                 (out0["occlusion_map"], out1["occlusion_map"]), (out0["prediction"], out1["prediction"])]:
        assert float((a - b).abs().max()) <= EXACT
    np.testing.assert_allclose(out1["prediction"].permute(0, 2, 3, 1).numpy(), gold["prediction_rel1_adapt1"],
                               atol=GOLDEN, rtol=0)
    np.testing.assert_allclose(kp_d1.jacobian.numpy(), gold["kp_driving_jacobian"], atol=GOLDEN, rtol=0)


def test_fused_kp_detector_pools_the_jacobian_only_when_it_is_cheaper(pair):
    plain, fused, _ = pair
    if plain.kp_detector.num_jacobian_maps == 1:  # mgif: one shared map, the convolution is 4 outputs
        assert isinstance(fused.kp_detector.jacobian, torch.nn.Conv2d)
    else:
        assert isinstance(fused.kp_detector.jacobian, PooledJacobianHead)
    assert isinstance(fused.kp_detector.down, StridedBlur)


def test_the_convolutions_to_a_few_channels_become_fused(pair):
    """The occlusion mask (1 channel) and the final layer (3): FusedConvs, run by taps (test_taps) where the rule
    says; the mask head (K + 1 channels) stays the standard convolution (the whole networks are bounded above)."""
    _, fused, _ = pair
    generator = fused.generator
    assert isinstance(generator.final, FusedConv) and isinstance(generator.dense_motion_network.occlusion, FusedConv)
    assert type(generator.dense_motion_network.mask) is torch.nn.Conv2d
    features = torch.randn(1, generator.dense_motion_network.occlusion.weight.shape[1], 16, 16)
    assert generator.dense_motion_network.occlusion.form(features) == "taps"


# ------------------------------------------------------------------------------------------ memory


def test_fusing_in_place_frees_the_unfused_blocks():
    kp_detector, generator = build_networks(__import__("fomm_lab").load_config(
        Path(__file__).parents[1] / "fixtures" / "fomm-golden" / "tiny-vox.yaml"))
    generator.eval()
    blocks = [m for m in generator.modules() if isinstance(m, (ResBlock2d, UpBlock2d, DownBlock2d, SameBlock2d))]
    refs = [weakref.ref(m) for m in blocks] + [weakref.ref(m.conv1.weight if isinstance(m, ResBlock2d) else
                                                           m.conv.weight) for m in blocks]
    del blocks
    fuse_for_inference(generator, inplace=True)
    gc.collect()
    assert refs and all(r() is None for r in refs)
    assert not any(isinstance(m, (ResBlock2d, UpBlock2d, DownBlock2d, SameBlock2d)) for m in generator.modules())
