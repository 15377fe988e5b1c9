"""Winograd's F(2x2, 3x3) for bfloat16 channels-last 3x3 layers (fomm_lab/engine/fast/winograd_f2.py): the
convolution exactly in float32, within a few rounding steps in bfloat16, and a tuner form of FusedConv."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from fomm_lab import Animator, load_model
from fomm_lab.device import CpuInfo
from fomm_lab.engine.fast import conv as conv_module
from fomm_lab.engine.fast.conv import FusedConv, input_signature, winograd_f2_by_default
from fomm_lab.engine.fast.fuse import enable_winograd_f2
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
    assert conv.default_form(x) == "direct"  # not allowed untuned (enable_winograd_f2): tuned only


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


TPSMM_YAML = Path(__file__).resolve().parents[1] / "fixtures" / "tpsmm-golden" / "tiny-vox.yaml"
EPYC_BF16 = CpuInfo("AMD EPYC", ("avx2", "avx512f", "avx512_bf16"))
XEON_AMX = CpuInfo("Intel Xeon", ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"))
EPYC_AVX2 = CpuInfo("AMD EPYC", ("avx2",))


def test_the_untuned_rule_takes_f2_only_on_avx512_bf16_cpus_without_amx():
    assert winograd_f2_by_default(EPYC_BF16)
    assert not winograd_f2_by_default(XEON_AMX)  # its direct bfloat16 convolutions run on AMX tiles
    assert not winograd_f2_by_default(EPYC_AVX2)  # bfloat16 emulated: not the default precision there
    assert not winograd_f2_by_default(CpuInfo("Intel Xeon", ("avx2", "avx512f")))


@pytest.mark.parametrize("cin, cout, kernel, allowed", [
    (128, 64, 3, True), (512, 512, 3, True),  # wide, a transformed kernel of at most 8 MB
    (64, 256, 3, False),  # narrow: slower than direct
    (1024, 512, 3, False),  # a 17 MB transformed kernel for a layer on tiny maps
    (256, 256, 2, False),  # not 3x3
])
def test_which_layers_the_untuned_rule_runs_by_f2(cin, cout, kernel, allowed):
    generator = torch.Generator().manual_seed(4)
    weight = (torch.randn(cout, cin, kernel, kernel, generator=generator) / (9 * cin) ** 0.5).bfloat16()
    conv = FusedConv(weight, torch.zeros(cout).bfloat16(), 1 if kernel == 3 else 0)
    assert enable_winograd_f2(nn.Sequential(conv), XEON_AMX) == 0 and not conv.winograd_f2_untuned
    assert enable_winograd_f2(nn.Sequential(conv), EPYC_BF16) == int(allowed)
    x = torch.randn(1, cin, 32, 32, generator=generator).bfloat16().contiguous(memory_format=torch.channels_last)
    assert conv.default_form(x) == ("winograd_f2" if allowed else "direct")
    assert conv.default_form(x.contiguous()) == "direct"  # NCHW: not its layout
    assert conv.default_form(x[:, :, :16, :31].contiguous(memory_format=torch.channels_last)) == "direct"  # small map
    if allowed:
        with torch.inference_mode():
            out = conv(x)
        assert torch.equal(out, conv3x3_f2(x, f2_kernels(weight), conv.bias))
        conv.forms = {input_signature(x): "direct"}  # a tuned choice overrides the rule
        assert conv.form(x) == "direct"


def _wide(source: Path, tmp_path: Path, widths: dict[str, dict[str, int]]) -> Path:
    """The tiny yaml ``source`` with ``widths`` merged into its model_params sections (random weights)."""
    config = yaml.safe_load(source.read_text())
    for section, values in widths.items():
        params = config["model_params"]
        for key in section.split("."):
            params = params[key]
        params.update(values)
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(config))
    return path


def psnr(frame: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of a float frame in [0, 1] against another."""
    return 10 * np.log10(1 / max(float(((frame.astype(np.float64) - reference) ** 2).mean()), 1e-12))


def _f2_layers(modules) -> list[FusedConv]:
    return [m for module in modules for m in module.modules() if isinstance(m, FusedConv) and m.winograd_f2_untuned]


def test_fomm_bfloat16_frames_run_f2_where_the_cpu_takes_it(golden_dir, tmp_path, monkeypatch):
    """A FOMM model whose generator's bottleneck is 128 channels wide (random weights, its output layer scaled up
    so that the frames are not a flat grey), in bfloat16: on the AVX512-BF16 EPYC its residual blocks run by
    F(2x2, 3x3) untuned, on a Xeon with AMX none does, and the frames are as close to float32 either way."""
    path = _wide(golden_dir / "tiny-vox.yaml", tmp_path,
                 {"generator_params": {"block_expansion": 32, "max_features": 128}})
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    source, driving = gold["source"], list(gold["driving"][:3])
    frames, layers = {}, {}
    for cpu in (EPYC_BF16, XEON_AMX):
        monkeypatch.setattr(conv_module, "cpu_info", lambda cpu=cpu: cpu)
        torch.manual_seed(0)
        model = load_model(path, device="cpu")
        with torch.no_grad():
            model.generator.final.weight.mul_(30)  # random weights give frames within 0.5 +- 0.004
        exact = np.stack(list(Animator(model, smoothing=0, dtype="float32", float_output=True).animate(source,
                                                                                                         driving)))
        frames[cpu] = np.stack(list(Animator(model, smoothing=0, dtype="bfloat16", float_output=True).animate(
            source, driving)))
        layers[cpu] = [m for m in _f2_layers(model._inference["torch.bfloat16-modules"])
                       if m.winograd_f2_kernels is not None]  # ran by F(2x2, 3x3)
    assert exact.std() > 0.03
    assert layers[EPYC_BF16] and not layers[XEON_AMX]
    assert psnr(frames[EPYC_BF16], exact) > 50  # zeroing those layers' output gives 30 dB
    assert psnr(frames[EPYC_BF16], exact) > psnr(frames[XEON_AMX], exact) - 1


def test_tpsmm_bfloat16_wide_layers_run_f2_on_that_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(conv_module, "cpu_info", lambda: EPYC_BF16)
    path = _wide(TPSMM_YAML, tmp_path, {"generator_params": {"block_expansion": 32, "max_features": 128}})
    torch.manual_seed(0)
    model = load_model(path, device="cpu")
    inpainting = model.inference_modules(torch.bfloat16)[2]
    assert _f2_layers([inpainting])
    assert not _f2_layers(model.inference_modules(torch.float32))  # float32 keeps its own Winograd
