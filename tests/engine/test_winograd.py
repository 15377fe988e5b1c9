"""Winograd's minimal filtering: its matrices, its convolutions against direct ones, and where the fused
convolutions use it (tolerances: speed_helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from speed_helpers import winograd_bound
from torch import nn

from fomm_lab import Animator, load_model
from fomm_lab.device import CpuInfo, cpu_info
from fomm_lab.engine.fast.conv import FusedConv, input_signature, winograd_onednn_by_default
from fomm_lab.engine.fast.fuse import enable_winograd
from fomm_lab.engine.fast.tune import candidate_forms
from fomm_lab.engine.fast.winograd import WinogradPlan, winograd_matrices


@pytest.mark.parametrize("m, r", [(4, 3), (3, 2), (2, 3)])
def test_winograd_matrices_compute_a_correlation_exactly(m, r):
    at, g, bt = winograd_matrices(m, r)
    rng = np.random.default_rng(0)
    for _ in range(5):
        d, k = rng.standard_normal(m + r - 1), rng.standard_normal(r)
        want = [sum(k[j] * d[i + j] for j in range(r)) for i in range(m)]
        np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), want, atol=1e-12)


@pytest.mark.parametrize("shape, cout, r, padding", [
    ((1, 16, 64, 64), 24, 3, 1), ((2, 8, 37, 29), 5, 3, 1), ((1, 12, 33, 40), 20, 2, 1), ((3, 4, 9, 7), 6, 2, 0),
    ((1, 6, 11, 13), 3, 3, 2),
])
def test_winograd_convolution_equals_direct(shape, cout, r, padding):
    """Any size (tiles that overhang the edge), batch, padding; error a few times the direct convolution's."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g)
    w = torch.randn(cout, shape[1], r, r, generator=g) / (shape[1] * r * r) ** 0.5
    b = torch.randn(cout, generator=g)
    exact = F.conv2d(x.double(), w.double(), b.double(), padding=padding)
    direct = F.conv2d(x, w, b, padding=padding)
    plan = WinogradPlan(r)
    winograd = plan(x, plan.kernels(w), b, padding)
    assert winograd.shape == direct.shape
    direct_error = float((direct.double() - exact).abs().max())
    winograd_error = float((winograd.double() - exact).abs().max())
    assert winograd_error <= winograd_bound(direct_error, exact), (winograd_error, direct_error)


@pytest.mark.parametrize("band_tiles", [1, 7, 32, None])
def test_bands_of_tiles_give_the_same_convolution(band_tiles):
    """Band after band (one tile row; several, the last one shorter; the default bands): the same sums as all
    tiles at once."""
    g = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(2, 8, 49, 21, generator=g), torch.randn(12, 8, 3, 3, generator=g), torch.randn(12, generator=g)
    plan = WinogradPlan(3)
    kernels = plan.kernels(w)
    whole = plan(x, kernels, b, 1, band_tiles=10**9)
    torch.testing.assert_close(plan(x, kernels, b, 1, band_tiles=band_tiles), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(whole, F.conv2d(x, w, b, padding=1), atol=2e-4, rtol=0)
    torch.testing.assert_close(plan(x, kernels, None, 1, band_tiles=band_tiles) + b.view(1, -1, 1, 1), whole,
                               atol=1e-5, rtol=0)


def test_fused_conv_uses_winograd_only_where_it_pays():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).eval()
    fused = FusedConv.from_conv(conv)
    assert enable_winograd(fused) == 1 and fused.winograd_kernels is None  # allowed; the transform is made on first use
    big, small = torch.randn(1, 32, 40, 40), torch.randn(1, 32, 8, 8)
    assert fused._use_winograd(big) and not fused._use_winograd(small)
    assert not fused._use_winograd(big.bfloat16())
    with torch.inference_mode():
        assert torch.equal(fused(small), F.conv2d(small, fused.weight, fused.bias, padding=1))
        assert fused.winograd_kernels is None  # small inputs run directly and make no transform
        exact = F.conv2d(big.double(), conv.weight.double(), conv.bias.double(), padding=1)
        direct_error = float((conv(big).double() - exact).abs().max())
        assert float((fused(big).double() - exact).abs().max()) <= winograd_bound(direct_error, exact)
        assert fused.winograd_kernels is not None
    assert FusedConv.from_conv(torch.nn.Conv2d(512, 512, 3, padding=1)).enable_winograd()  # TPSMM's, at 64x64
    wide = FusedConv.from_conv(torch.nn.Conv2d(1024, 512, 3, padding=1))
    assert not wide.enable_winograd()  # its transform would cost 72 MB, for hourglass maps of 8x8 pixels
    copied = __import__("copy").deepcopy(fused)
    assert copied.winograd_kernels is None and copied.winograd is not None  # derived data: copies leave it out


def test_a_model_makes_only_the_winograd_transforms_its_frame_size_uses(tiny_vox, golden_dir):
    """Transforms are made for the convolutions whose inputs, at the model's frame size, are in Winograd's
    range; the others (here the generator's full-resolution encoder) hold none."""
    model = load_model(*tiny_vox, device="cpu")
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    nets = [model.kp_detector, model.generator]
    model.inference_networks()
    convs = [m for net in nets for m in net.modules() if isinstance(m, FusedConv)]
    allowed = [m for m in convs if m.winograd is not None]
    assert all(m.winograd_kernels is None for m in convs) and len(allowed) > 20
    in_range = set()
    hooks = [m.register_forward_pre_hook(lambda m, args: in_range.add(m) if m._use_winograd(args[0]) else None)
             for m in convs]
    list(Animator(model, dtype="float32", smoothing=0).animate(gold["source"], gold["driving"][:2]))
    for hook in hooks:
        hook.remove()
    planned = {m for m in convs if m.winograd_kernels is not None}
    assert planned == in_range
    first = model.generator.down_blocks[0].conv  # 256x256 outputs: beyond Winograd's range
    assert first in allowed and first.winograd_kernels is None
    assert len(planned) < len(allowed)  # some allowed layers never see such inputs


@pytest.mark.parametrize("shape, cout, r, padding, band_tiles", [
    ((1, 16, 64, 64), 24, 3, 1, None), ((2, 8, 37, 29), 5, 3, 1, 7), ((1, 12, 33, 40), 20, 2, 1, 1),
    ((3, 4, 9, 7), 6, 2, 0, None), ((1, 6, 11, 13), 3, 3, 2, 10**9),
])
def test_the_tile_major_form_computes_the_banded_forms_convolution(shape, cout, r, padding, band_tiles):
    """Any size, batch, padding and band: the same tiles and sums as the banded form (only the products' order of
    summation differs), within the Winograd bound of the exact convolution."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, generator=g)
    w = torch.randn(cout, shape[1], r, r, generator=g) / (shape[1] * r * r) ** 0.5
    b = torch.randn(cout, generator=g)
    plan = WinogradPlan(r)
    kernels = plan.kernels(w)
    tile_major = plan.tile_major(x, kernels, b, padding, band_tiles)
    banded = plan(x, kernels, b, padding)
    assert tile_major.shape == banded.shape
    torch.testing.assert_close(tile_major, banded, atol=1e-5, rtol=0)
    exact = F.conv2d(x.double(), w.double(), b.double(), padding=padding)
    direct_error = float((F.conv2d(x, w, b, padding=padding).double() - exact).abs().max())
    assert float((tile_major.double() - exact).abs().max()) <= winograd_bound(direct_error, exact)
    torch.testing.assert_close(plan.tile_major(x, kernels, None, padding, band_tiles) + b.view(1, -1, 1, 1),
                               tile_major, atol=1e-5, rtol=0)


EPYC = CpuInfo("AMD EPYC", ("avx2", "avx512f", "avx512_bf16"), "AuthenticAMD")
XEON = CpuInfo("Intel Xeon", ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), "GenuineIntel")


def test_the_untuned_rule_takes_the_tile_major_form_for_wide_layers_on_amd_cpus():
    """On AMD CPUs (MKL's batched products slow there) the wide Winograd layers run tile-major with oneDNN's
    products; narrower ones, and every layer on Intel CPUs, keep the banded form; the tuner measures both."""
    assert winograd_onednn_by_default(EPYC) and not winograd_onednn_by_default(XEON)
    assert not winograd_onednn_by_default(CpuInfo("unknown CPU", ()))
    g = torch.Generator().manual_seed(6)
    wide = FusedConv(torch.randn(16, 256, 3, 3, generator=g) / 48, torch.randn(16, generator=g), 1)
    narrow = FusedConv(torch.randn(16, 128, 3, 3, generator=g) / 34, torch.randn(16, generator=g), 1)
    x = torch.randn(1, 256, 40, 40, generator=g)
    assert enable_winograd(nn.Sequential(wide, narrow), XEON) == 2
    assert wide.default_form(x) == "winograd" and not wide.winograd_onednn_untuned
    assert enable_winograd(nn.Sequential(wide, narrow), EPYC) == 2
    assert wide.winograd_onednn_untuned and not narrow.winograd_onednn_untuned
    assert wide.default_form(x) == "winograd_onednn" and narrow.default_form(x[:, :128]) == "winograd"
    assert wide.default_form(x[:, :, :8, :8]) == "direct"  # below Winograd's range either way
    phases = FusedConv(torch.randn(16, 256, 2, 2, generator=g) / 32, torch.randn(16, generator=g), 0)
    large = torch.randn(1, 256, 129, 129, generator=g)  # above the banded form's range for 2x2 kernels
    assert phases.enable_winograd() and phases.default_form(large) == "direct"
    assert phases.enable_winograd(onednn_products=True) and phases.default_form(large) == "winograd_onednn"
    assert wide.default_form(x.bfloat16()) != "winograd_onednn"
    assert {"winograd", "winograd_onednn"} <= set(candidate_forms(wide, x))
    assert "winograd_onednn" in candidate_forms(narrow, x[:, :128])  # the tuner measures it on any Winograd layer
    with torch.inference_mode():
        exact = F.conv2d(x.double(), wide.weight.double(), wide.bias.double(), padding=1)
        direct_error = float((wide._direct(x).double() - exact).abs().max())
        tile_major = wide(x)
        assert float((tile_major.double() - exact).abs().max()) <= winograd_bound(direct_error, exact)
        wide.forms = {input_signature(x): "winograd"}  # a tuned choice overrides the rule, same kernels
        torch.testing.assert_close(wide(x), tile_major, atol=1e-4, rtol=0)


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads Linux's /proc/cpuinfo")
def test_cpu_info_reads_the_vendor_that_decides_the_products():
    vendors = {line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.partition(":")[0].strip() == "vendor_id"}
    info = cpu_info()
    assert info.vendor in vendors and winograd_onednn_by_default(info) == (info.vendor == "AuthenticAMD")
