"""TPSMM's inference form (fomm_lab/engine/fast/tpsmm.py): FOMM's exact rewrites where they apply, equal to the
checkpoint's networks up to float rounding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from tpsmm_support import CHECKPOINT, YAML, as_input, golden, max_diff

from fomm_lab.engine.fast.conv import FusedConv
from fomm_lab.engine.fast.fuse import StridedBlur
from fomm_lab.engine.fast.tpsmm import (
    DenseMotionInference,
    InpaintingInference,
    NormUpBlock,
    SubpixelNormUpBlock,
    channel_statistics,
    fuse_tpsmm,
    instance_norm,
)
from fomm_lab.engine.nets.tpsmm.blocks import UpBlock2d
from fomm_lab.engine.nets.tpsmm.dense_motion import DenseMotionNetwork
from fomm_lab.engine.nets.tpsmm.inpainting import InpaintingNetwork
from fomm_lab.engine.tpsmm.model import load_tpsmm


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    return load_tpsmm(YAML, CHECKPOINT, device="cpu")


def test_the_rewrites_apply(model):
    kp_detector, dense, inpainting = model.inference_modules()
    assert kp_detector is model.networks.kp_detector  # the paper's network: its rounding is the reference's
    assert isinstance(dense.down, StridedBlur)
    for network in (dense, inpainting):
        assert not any(isinstance(m, UpBlock2d) for m in network.modules())
        assert any(isinstance(m, SubpixelNormUpBlock) for m in network.modules())
        assert not any(type(m) is nn.Conv2d and m.kernel_size == (3, 3) for m in network.modules())
        assert any(isinstance(m, nn.InstanceNorm2d) for m in network.modules())  # kept: it cannot fold
    winograd = [m for network in (dense, inpainting) for m in network.modules()
                if isinstance(m, FusedConv) and m.winograd is not None]
    assert len(winograd) > 10
    assert all(isinstance(m, FusedConv) for m in dense.occlusion)  # to one channel: by taps (test_taps)
    assert isinstance(inpainting.final, FusedConv)
    assert model.inference_modules() is model.inference_modules()  # made once
    for network in (model.networks.kp_detector, model.networks.dense_motion_network):  # the originals unchanged
        assert not any(isinstance(m, FusedConv) for m in network.modules())


def test_sub_pixel_up_block_equals_upsample_then_convolution():
    torch.manual_seed(0)
    block = UpBlock2d(6, 5).eval()
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 17, 12)
    fused = fuse_tpsmm(nn.Sequential(block).eval())[0]
    assert isinstance(fused, SubpixelNormUpBlock)
    with torch.no_grad():
        assert (fused(x) - block(x)).abs().max() < 1e-5
        wide = NormUpBlock(block)
        assert (wide(x) - block(x)).abs().max() < 1e-5


def test_wide_up_blocks_are_sub_pixel_only_in_the_inpainting_decoder(monkeypatch):
    """The width limit keeps the hourglass's wide blocks (small maps) as up-sampling + convolution; the inpainting
    decoder's up blocks run on maps from 1/8 of the frame and are sub-pixel at any width."""
    monkeypatch.setattr("fomm_lab.engine.fast.tpsmm.SUBPIXEL_MAX_KERNEL_ELEMENTS", 0)  # every block counts as wide
    torch.manual_seed(0)
    network = InpaintingNetwork(num_channels=3, block_expansion=4, max_features=16, num_down_blocks=2).eval()
    fused = fuse_tpsmm(network)
    assert all(isinstance(block, SubpixelNormUpBlock) for block in fused.up_blocks)
    assert isinstance(fuse_tpsmm(nn.Sequential(UpBlock2d(6, 5)).eval())[0], NormUpBlock)
    source = torch.rand(1, 3, 32, 32)
    deformation = torch.rand(1, 8, 8, 2) * 2 - 1
    occlusion = [torch.rand(1, 1, 8 * 2**i, 8 * 2**i) for i in range(3)]
    with torch.no_grad():
        assert (fused(source, deformation, occlusion) - network(source, deformation, occlusion)).abs().max() < 1e-5


def test_fused_networks_equal_the_checkpoint_networks(model):
    data = golden()
    source, driving = as_input(data["source"]), as_input(data["driving"])
    nets = model.networks
    _, dense, inpainting = model.inference_modules()
    with torch.inference_mode():
        kp_source, kp_driving = nets.kp_detector(source), nets.kp_detector(driving)
        reference = nets.dense_motion_network(nets.dense_motion_network.prepare(source, kp_source), kp_driving)
        fused = dense(dense.prepare(source, kp_source), kp_driving)
        assert max_diff(fused.deformation, reference.deformation) < 1e-3  # the golden tests' DENSE_TOL
        expected = nets.inpainting_network(source, reference.deformation, reference.occlusion)
        got = inpainting.decode(source, inpainting.encode(source), reference.deformation, reference.occlusion)
        assert max_diff(got, expected) < 5e-3  # PREDICTION_TOL


def test_reduced_precision_copies_keep_norms_float32(model):
    kp_detector, dense, inpainting = model.inference_modules(torch.bfloat16)
    # the keypoint detector stays float32: a copy whose weights are channels-last as the frames it gets, its
    # convolutions fused ones (nothing folded), its batch norms kept
    assert kp_detector is not model.networks.kp_detector
    assert not any(type(m) is nn.Conv2d for m in kp_detector.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in kp_detector.modules())
    weights = [m.weight for m in kp_detector.modules() if isinstance(m, FusedConv)]
    assert len(weights) == 20 and all(w.dtype == torch.float32 for w in weights)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    frame = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        exact = model.networks.kp_detector(frame)
        assert max_diff(kp_detector(frame.contiguous(memory_format=torch.channels_last)), exact) < 1e-5
    for network in (dense, inpainting):
        convs = [m for m in network.modules() if isinstance(m, FusedConv)]
        assert all(c.weight.dtype == torch.bfloat16 for c in convs)
        assert all(m.weight.dtype == torch.float32 for m in network.modules() if isinstance(m, nn.InstanceNorm2d))
        assert any(c.weight.is_contiguous(memory_format=torch.channels_last) and c.weight.dim() == 4
                   and c.weight.shape[-1] > 1 for c in convs)
    networks = model.inference_networks(dtype=torch.bfloat16)
    assert networks.channels_last and networks.dtype == torch.bfloat16 and networks.keypoint_dtype == torch.float32


def test_instance_norm_of_one_image_equals_the_module_and_keeps_the_layout():
    """One image: the batch norm the instance norm calls, without its reshape (no NCHW copy of a channels-last
    map); several images: the module itself."""
    torch.manual_seed(0)
    norm = nn.InstanceNorm2d(16, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = torch.randn(1, 16, 12, 10) * 3 + 1
    torch.testing.assert_close(instance_norm(norm, x), norm(x), atol=2e-6, rtol=0)  # float32: two-pass statistics
    last = x.bfloat16().contiguous(memory_format=torch.channels_last)
    out = instance_norm(norm, last)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    assert float((out.float() - norm(x)).abs().max()) < 0.05  # bfloat16 rounding of values up to ~4
    batch = torch.randn(3, 16, 12, 10)
    assert torch.equal(instance_norm(norm, batch), norm(batch))


def test_channel_statistics_are_exact_even_far_from_zero():
    """The two-pass statistics of the float32 instance norm: the mean and the variance of each channel as float64
    computes them, also for values whose mean is thousands of times their spread (where E[x^2] - E[x]^2 would lose
    every digit)."""
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randn(1, 4, 64, 64, generator=g) * 3 + 1, torch.randn(1, 4, 64, 64, generator=g) * 0.01 + 50])
    x = x.view(1, 8, 64, 64)
    mean, var = channel_statistics(x)
    exact = x.double().view(8, -1)
    torch.testing.assert_close(mean.double(), exact.mean(1), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(var.double(), exact.var(1, unbiased=False), atol=0, rtol=1e-4)


def test_inference_decoder_equals_the_papers_and_stays_in_the_reduced_precision(model):
    """The inference decoder: the paper's decode bit for bit in float32; in bfloat16, for one driving frame at a
    time (the Animator's default), every decoder block is given bfloat16 channels-last maps (the warped skip
    features are not promoted to float32), close to float32."""
    data = golden()
    source, driving = as_input(data["source"]), as_input(data["driving"])[:1]
    kp_detector, dense, inpainting = model.inference_modules()
    assert isinstance(inpainting, InpaintingInference)
    with torch.inference_mode():
        motion = dense(dense.prepare(source, kp_detector(source)), kp_detector(driving))
        encoded = inpainting.encode(source)
        paper = copy.copy(inpainting)  # the same modules, the paper's decoder
        paper.__class__ = InpaintingNetwork
        exact = paper.decode(source, encoded, motion.deformation, motion.occlusion)
        assert torch.equal(inpainting.decode(source, encoded, motion.deformation, motion.occlusion), exact)

        reduced = model.inference_modules(torch.bfloat16)[2]
        seen = []
        hooks = [block.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
                 for block in [*reduced.resblock, *reduced.up_blocks]]
        last = source.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = reduced.decode(source, reduced.encode(last), motion.deformation, motion.occlusion)
        for hook in hooks:
            hook.remove()
    assert len(seen) == 3 * len(reduced.up_blocks)
    assert all(x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    # the tiny fixture amplifies rounding (tpsmm_support): the paper's decode under autocast differs from float32 by
    # 1.8e-3 on average (max 0.15), this one by 2.0e-3 (max 0.16)
    assert out.dtype == torch.float32 and float((out - exact).abs().mean()) < 4e-3


def test_inference_dense_motion_gives_its_hourglass_the_reduced_precision_input(model):
    """Under autocast the hourglass gets its input in bfloat16 channels-last, so its last concatenation (output
    and input) is no float32 map: the same flow and masks, bit for bit, as the paper's forward; float32 unchanged."""
    data = golden()
    source, driving = as_input(data["source"]), as_input(data["driving"])[:1]
    kp_detector = model.networks.kp_detector
    dense = model.inference_modules(torch.bfloat16)[1]
    assert isinstance(dense, DenseMotionInference)
    paper = copy.copy(dense)  # the same modules, the paper's forward
    paper.__class__ = DenseMotionNetwork
    seen = []
    hook = dense.maps.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.inference_mode():
        prepared, kp_driving = dense.prepare(source, kp_detector(source)), kp_detector(driving)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours, theirs = dense(prepared, kp_driving), paper(prepared, kp_driving)
        features = torch.rand(1, 3, 8, 8)
        assert model.inference_modules()[1]._hourglass_input(features) is features  # float32: no autocast
    hook.remove()
    assert seen[0].dtype == torch.bfloat16 and seen[0].is_contiguous(memory_format=torch.channels_last)
    assert seen[1].dtype == torch.float32  # the paper's: promoted by the concatenation
    assert torch.equal(ours.deformation, theirs.deformation)
    assert all(torch.equal(a, b) for a, b in zip(ours.occlusion, theirs.occlusion, strict=True))
