"""Winograd's F(2x2, 3x3) for bfloat16 channels-last 3x3 layers (fomm_lab/engine/fast/winograd_f2.py): the
convolution exactly in float32, within a few rounding steps in bfloat16, and a tuner form of FusedConv."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fomm_lab.engine.fast.conv import FusedConv, input_signature
from fomm_lab.engine.fast.tune import candidate_forms
from fomm_lab.engine.fast.winograd_f2 import conv3x3_f2, f2_kernels


def _layer(cin: int, cout: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(cout, cin, 3, 3, generator=generator) / (9 * cin) ** 0.5
    return weight, torch.randn(cout, generator=generator)


@pytest.mark.parametrize("shape", [(1, 8, 6, 10), (2, 5, 7, 9), (1, 16, 1, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_f2_is_the_convolution_in_float32(shape, with_bias):
    weight, bias = _layer(shape[1], 6)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    out = conv3x3_f2(x, f2_kernels(weight), bias if with_bias else None)
    expected = F.conv2d(x, weight, bias if with_bias else None, padding=1)
    assert out.shape == expected.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert (out - expected).abs().max() < 1e-5


@pytest.mark.parametrize("size", [(16, 16), (15, 13)])
def test_f2_in_bfloat16_stays_within_a_few_rounding_steps_of_the_direct_convolution(size):
    """Against the float32 layer's exact result (what bfloat16 inference approximates): its tiles and products are
    rounded to bfloat16 on top of the direct convolution's roundings (weights, output), measured 2.2x the direct
    convolution's rms error."""
    weight, bias = _layer(64, 32)
    x = torch.randn(1, 64, *size, generator=torch.Generator().manual_seed(2)).bfloat16()
    x = x.contiguous(memory_format=torch.channels_last)
    exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    out = conv3x3_f2(x, f2_kernels(weight.bfloat16()), bias.bfloat16())
    direct = F.conv2d(x, weight.bfloat16().contiguous(memory_format=torch.channels_last), bias.bfloat16(), padding=1)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)

    def rms(y: torch.Tensor) -> float:
        return float((y.double() - exact).pow(2).mean().sqrt())

    assert rms(out) < 3 * rms(direct)
    assert rms(out) < 0.02 * float(exact.pow(2).mean().sqrt())  # and a small error in itself


def test_which_convolutions_and_inputs_f2_applies_to():
    weight, bias = _layer(8, 8)
    conv = FusedConv(weight.bfloat16(), bias.bfloat16(), 1)
    x = torch.randn(1, 8, 12, 12).bfloat16().contiguous(memory_format=torch.channels_last)
    assert conv.winograd_f2_applies(x)
    assert not conv.winograd_f2_applies(x.contiguous())  # NCHW: the direct convolution's layout stays
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a float32 input cast by autocast
        assert conv.winograd_f2_applies(x.float().contiguous(memory_format=torch.channels_last))
    assert not FusedConv(weight, bias, 1).winograd_f2_applies(x.float())  # float32: the float32 Winograd's case
    assert not FusedConv(weight.bfloat16(), bias.bfloat16(), 0).winograd_f2_applies(x)
    assert not FusedConv(weight.bfloat16(), bias.bfloat16(), 1, stride=2).winograd_f2_applies(x)
    five = torch.randn(8, 8, 5, 5).bfloat16()
    assert not FusedConv(five, bias.bfloat16(), 2).winograd_f2_applies(x)
    assert "winograd_f2" in candidate_forms(conv, x)
    assert "winograd_f2" not in candidate_forms(FusedConv(weight, bias, 1), x.float())
    assert conv.default_form(x) == "direct"  # tuned only


def test_a_tuned_fused_convolution_runs_f2_and_keeps_its_kernels_out_of_copies():
    weight, bias = _layer(16, 12)
    conv = FusedConv(weight.bfloat16(), bias.bfloat16(), 1)
    x = torch.randn(1, 16, 10, 10).bfloat16().contiguous(memory_format=torch.channels_last)
    conv.forms = {input_signature(x): "winograd_f2"}
    with torch.inference_mode():
        out = conv(x)
    assert torch.equal(out, conv3x3_f2(x, f2_kernels(weight.bfloat16()), bias.bfloat16()))
    assert conv.winograd_f2_kernels is not None and conv.winograd_f2_kernels.shape == (16, 16, 12)
    assert copy.deepcopy(conv).winograd_f2_kernels is None  # derived data: made again on first use
    assert conv.form(x.contiguous()) == "direct"  # an NCHW input is another signature: the rule


def test_bands_of_tiles_give_the_same_output_bit_for_bit():
    weight, bias = _layer(16, 8)
    kernels = f2_kernels(weight.bfloat16())
    x = torch.randn(2, 16, 13, 10, generator=torch.Generator().manual_seed(3)).bfloat16()
    whole = conv3x3_f2(x, kernels, bias.bfloat16(), band_tiles=1 << 30)
    for band_tiles in (1, 10, 25):  # one tile row, two, a band with a shorter last one
        assert torch.equal(conv3x3_f2(x, kernels, bias.bfloat16(), band_tiles=band_tiles), whole)
