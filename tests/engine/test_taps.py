"""Convolutions to a few channels by taps (fomm_lab/engine/fast/taps.py): one product per input pixel and tap, then
the taps' shifted sums. The same convolution as oneDNN's, in either layout and precision, and where it runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fomm_lab.engine.fast import taps as taps_module
from fomm_lab.engine.fast.conv import FusedConv, input_signature, taps_conv
from fomm_lab.engine.fast.taps import conv_by_taps, tap_rows, taps_shape_applies

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _case(cout: int, cin: int, k: int, size: tuple[int, int], batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, *size, generator=g)
    weight = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5
    return x, weight, torch.randn(cout, generator=g)


@pytest.mark.parametrize("cout,k", [(1, 7), (3, 7), (4, 3), (2, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_taps_are_the_convolution_in_float32(monkeypatch, cout, k, channels_last):
    """Against the float64 convolution: within float32 rounding, in several bands of rows (BAND_BYTES made small),
    a batch of two, a map that is not square; the output in the input's layout."""
    monkeypatch.setattr(taps_module, "BAND_BYTES", 4096)
    x, weight, bias = _case(cout, 9, k, (13, 10), 2)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    want = F.conv2d(x.double(), weight.double(), bias.double(), padding=k // 2)
    out = conv_by_taps(x, tap_rows(weight), bias, k)
    assert out.dtype == torch.float32 and out.shape == want.shape
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=layout)
    assert (out.double() - want).abs().max() < 1e-5


def test_taps_in_bfloat16_stay_within_twice_the_direct_convolutions_error():
    """bfloat16: each tap's product is rounded to bfloat16 once (the matrix product's output) before the float32
    sums, so the error to the float64 convolution is up to twice oneDNN's, which rounds only its output (measured
    1.5x)."""
    x, weight, bias = _case(1, 37, 7, (64, 64), 1, seed=1)
    x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    weight, bias = weight.to(torch.bfloat16), bias.to(torch.bfloat16)
    want = F.conv2d(x.double(), weight.double(), bias.double(), padding=3)
    direct = (F.conv2d(x, weight, bias, padding=3).double() - want).abs()
    out = conv_by_taps(x, tap_rows(weight), bias, 7)
    assert out.dtype == torch.bfloat16
    error = (out.double() - want).abs()
    assert error.max() <= direct.max() * 2 and error.mean() <= direct.mean() * 2


def test_which_convolutions_run_by_taps():
    """Square odd kernels with same padding, stride 1, ungrouped, to at most TAPS_MAX_OUT_CHANNELS channels."""
    assert taps_shape_applies((1, 37, 7, 7), 3, 1, 1, 1)
    assert taps_shape_applies((3, 64, 7, 7), (3, 3), (1, 1), (1, 1), 1)
    assert not taps_shape_applies((taps_module.TAPS_MAX_OUT_CHANNELS + 1, 64, 7, 7), 3, 1, 1, 1)
    assert not taps_shape_applies((1, 8, 7, 7), 2, 1, 1, 1)  # not "same"
    assert not taps_shape_applies((1, 8, 7, 7), 3, 2, 1, 1)  # strided
    assert not taps_shape_applies((1, 8, 4, 4), 2, 1, 1, 1)  # even kernel
    assert not taps_shape_applies((1, 8, 1, 1), 0, 1, 1, 1)  # a 1x1 convolution is one product already
    assert not taps_shape_applies((2, 4, 3, 3), 1, 1, 1, 2)  # grouped
    assert taps_conv(nn.Conv2d(8, 1, 7, padding=3)) is not None
    assert taps_conv(nn.Conv2d(8, 11, 7, padding=3)) is None
    assert taps_conv(nn.Conv2d(8, 1, 7, padding=3, padding_mode="reflect")) is None


def test_the_untuned_rule_takes_taps_where_they_were_measured_faster():
    """Wherever they apply, in either layout and under autocast to the weights' precision; another precision than
    the weights' and exports keep the direct convolution."""
    x, weight, bias = _case(1, 8, 7, (16, 16), 1)
    one = FusedConv(weight, bias, padding=3)
    three = FusedConv(torch.randn(3, 8, 7, 7), torch.zeros(3), padding=3)
    last = x.contiguous(memory_format=torch.channels_last)
    assert one.form(x) == "taps" and one.form(last) == "taps"
    assert three.form(last) == "taps" and three.form(x) == "taps"
    assert one.form(x.bfloat16()) == "direct"
    reduced = FusedConv(weight.bfloat16(), bias.bfloat16(), padding=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert one.form(x) == "direct"  # float32 weights: autocast casts them per call
        assert reduced.form(x) == "taps" and reduced.form(x.bfloat16()) == "taps"
        assert reduced(x).dtype == torch.bfloat16  # as the direct convolution under autocast
    with torch.inference_mode():
        for conv, given in ((one, x), (three, x), (three, last)):
            assert torch.allclose(conv(given), F.conv2d(given, conv.weight, conv.bias, padding=3), atol=1e-5)
        three.forms = {input_signature(x): "direct"}  # a tuned choice overrides the rule for its input
        assert three.form(x) == "direct" and three.form(last) == "taps"
        traced = torch.jit.trace(one, x)  # exports and traces: the standard operator
    assert "aten::_convolution" in str(traced.graph) and "aten::add_" not in str(traced.graph)

