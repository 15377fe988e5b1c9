"""The inference variants: the Animator's reuse of source work, the reduced precisions, and the one set of
weights a model keeps (tolerances: speed_helpers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from speed_helpers import nchw, pair  # noqa: F401 (pair: a fixture)

from fomm_lab import Animator, load_model
from fomm_lab.engine.fast import variants
from fomm_lab.engine.fast.conv import FusedConv
from fomm_lab.engine.fast.fuse import fuse_for_inference
from fomm_lab.engine.fast.variants import InFloat32


def test_animator_reuses_source_work_across_calls(pair, monkeypatch):
    _, fused, gold = pair
    animator = Animator(fused, dtype="float32", smoothing=0)
    calls = []
    encode = animator._nets.encode
    monkeypatch.setattr(animator, "_nets", __import__("dataclasses").replace(
        animator._nets, encode=lambda t: calls.append(1) or encode(t)))
    first = list(animator.animate(gold["source"], gold["driving"]))
    second = list(animator.animate(gold["source"].copy(), gold["driving"]))
    assert len(calls) == 1 and all(np.array_equal(a, b) for a, b in zip(first, second))


KP_BF16 = 5e-3  # keypoints (in [-1, 1]) of the bfloat16 detector: 0.6 px of a 256 px frame; measured 1.1-1.5e-3
JAC_BF16 = 1e-2  # its jacobians (entries ~1): 8 significant bits leave ~4e-3 relative per rounding; measured 2-3e-3


def test_bfloat16_keypoint_detector_stays_close(pair):
    """bfloat16 keypoints: convolutions in bfloat16, softmax and weighted sums in float32; within KP_BF16 of the
    golden keypoints, and the frames within 40 dB of the float32 ones (the issue's bar; measured 52-56 dB)."""
    _, model, gold = pair
    nets = model.inference_networks(dtype=torch.bfloat16)
    assert nets.keypoint_dtype == torch.bfloat16 and nets.kp_detector is not model.kp_detector
    assert all(p.dtype == torch.bfloat16 for p in nets.kp_detector.predictor.parameters())
    frames = nchw(gold["driving"]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        kp = nets.kp_detector(frames)
    assert kp.value.dtype == torch.float32 and kp.jacobian.dtype == torch.float32
    assert float(np.abs(kp.value.numpy() - gold["kp_driving_value"]).max()) <= KP_BF16
    assert float(np.abs(kp.jacobian.numpy() - gold["kp_driving_jacobian"]).max()) <= JAC_BF16
    exact = np.stack(list(Animator(model, dtype="float32", smoothing=0).animate(gold["source"], gold["driving"]))).astype(np.float64)
    fast = np.stack(list(Animator(model, smoothing=0, dtype="bfloat16").animate(gold["source"], gold["driving"])))
    assert 10 * np.log10(255**2 / max(((exact - fast) ** 2).mean(), 1e-12)) >= 40


def _tensors(*modules):
    return {t.data_ptr(): t for m in modules for t in [*m.parameters(), *m.buffers()]}


def test_model_keeps_one_set_of_weights(tiny_vox):
    model = load_model(*tiny_vox, device="cpu")
    plain = load_model(*tiny_vox, device="cpu", fuse=False)
    fused_elements = sum(t.numel() for t in _tensors(model.kp_detector, model.generator).values())
    refused = [fuse_for_inference(plain.kp_detector), fuse_for_inference(plain.generator)]
    assert fused_elements == sum(t.numel() for t in _tensors(*refused).values())
    nets = model.inference_networks()
    assert nets.kp_detector is model.kp_detector and nets.dense_motion is model.generator.dense_motion_network
    reduced = model.inference_networks(dtype=torch.bfloat16)
    assert model.inference_networks(dtype=torch.bfloat16) is reduced
    bf16 = reduced.dense_motion.__self__ if hasattr(reduced.dense_motion, "__self__") else reduced.dense_motion
    tensors = [*bf16.parameters(), *bf16.buffers()]
    assert tensors and all(t.dtype == torch.bfloat16 for t in tensors if t.is_floating_point())
    assert not set(_tensors(bf16)) & set(_tensors(model.generator))  # a real copy ...
    assert all(t.dtype == torch.float32 for t in model.generator.parameters())  # ... and the model is untouched
    assert not any(isinstance(m, FusedConv) and m.winograd_kernels is not None for m in bf16.modules())
    assert model.inference_networks(dtype=torch.float16).kp_detector is model.kp_detector  # float32 keypoints


@pytest.mark.parametrize("dtype, native, island", [(torch.bfloat16, False, True), (torch.bfloat16, True, False),
                                                   (torch.float16, True, True)])
def test_emulated_reduced_precision_keeps_the_output_layer_float32(tiny_vox, monkeypatch, dtype, native, island):
    """Where the CPU emulates the reduced precision (bfloat16 without AVX512-BF16/AMX; float16 always), the
    generator's final convolution keeps float32 weights and computes in float32 (the float32 convolution of its
    input); every other generator weight is in the reduced precision."""
    monkeypatch.setattr(variants, "cpu_has_native_bfloat16", lambda: native)
    model = load_model(*tiny_vox, device="cpu")
    generator = model.inference_networks(dtype=dtype).decode.__self__
    assert isinstance(generator.final, InFloat32) is island
    final = generator.final.module if island else generator.final
    assert {p.dtype for p in final.parameters()} == {torch.float32 if island else dtype}
    assert {p.dtype for p in generator.up_blocks.parameters()} == {dtype}
    x = torch.rand(2, final.weight.shape[1], 32, 32, generator=torch.Generator().manual_seed(0)).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        out = generator.final(x)
    if island:
        assert out.dtype == torch.float32
        want = F.conv2d(x.float(), final.weight, final.bias, padding=final.padding)
        assert torch.allclose(out, want, atol=1e-4, rtol=1e-5)  # the float32 convolution (by taps: test_taps)
    else:
        assert out.dtype == dtype
