"""The networks reproduce the official implementation's outputs on its golden fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fomm_lab import Animator, load_model
from fomm_lab.engine.motion import normalize_keypoints

TAGS = ["rel1_adapt1", "rel1_adapt0", "rel0_adapt1", "rel0_adapt0"]
TOL = 1e-4  # the fixtures' bound (tests/fixtures/README.md): float32 rounding of another summation order, ~1e-6


def _nchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module", params=["vox", "mgif"])
def case(request, golden_dir):
    name = request.param
    model = load_model(golden_dir / f"tiny-{name}.yaml", golden_dir / f"tiny-{name}-cpk.pth.tar", device="cpu")
    return model, dict(np.load(golden_dir / f"tiny-{name}-golden.npz"))


def test_keypoints_match(case):
    model, gold = case
    with torch.inference_mode():
        kp_s = model.kp_detector(_nchw(gold["source"][None]))
        kp_d = model.kp_detector(_nchw(gold["driving"]))
    np.testing.assert_allclose(kp_s.value.numpy(), gold["kp_source_value"], atol=TOL, rtol=0)
    np.testing.assert_allclose(kp_s.jacobian.numpy(), gold["kp_source_jacobian"], atol=TOL, rtol=0)
    np.testing.assert_allclose(kp_d.value.numpy(), gold["kp_driving_value"], atol=TOL, rtol=0)
    np.testing.assert_allclose(kp_d.jacobian.numpy(), gold["kp_driving_jacobian"], atol=TOL, rtol=0)


@pytest.mark.parametrize("tag", TAGS)
def test_motion_and_prediction_match(case, tag):
    model, gold = case
    relative, adapt = tag == "rel1_adapt1" or tag == "rel1_adapt0", tag.endswith("adapt1")
    source, driving = _nchw(gold["source"][None]), _nchw(gold["driving"])
    with torch.inference_mode():
        kp_s, kp_d = model.kp_detector(source), model.kp_detector(driving)
        kp_norm = normalize_keypoints(kp_s, kp_d, kp_d[0], relative=relative, adapt_scale=adapt)
        out = model.generator(source, kp_norm, kp_s)
    np.testing.assert_allclose(kp_norm.value.numpy(), gold[f"kp_norm_value_{tag}"], atol=TOL, rtol=0)
    np.testing.assert_allclose(out["deformation"].numpy(), gold[f"deformation_{tag}"], atol=TOL, rtol=0)
    np.testing.assert_allclose(out["occlusion_map"].numpy(), gold[f"occlusion_{tag}"], atol=TOL, rtol=0)
    prediction = out["prediction"].permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(prediction, gold[f"prediction_{tag}"], atol=TOL, rtol=0)


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_animator_matches_golden(case, tag, batch_size):
    """The streaming Animator (source cached, batched driving) gives the official frames."""
    model, gold = case
    animator = Animator(model, dtype="float32", smoothing=0, relative=tag.startswith("rel1"), adapt_scale=tag.endswith("adapt1"), batch_size=batch_size)
    frames = list(animator.animate(gold["source"], iter(gold["driving"])))
    assert len(frames) == len(gold["driving"]) and all(f.dtype == np.uint8 and f.shape == (256, 256, 3) for f in frames)
    expected = np.round(np.clip(gold[f"prediction_{tag}"], 0, 1) * 255)
    assert np.abs(np.stack(frames).astype(np.float64) - expected).max() <= 1


def test_live_stages_match_golden(case):
    model, gold = case
    animator = Animator(model, dtype="float32", smoothing=0)
    animator.set_source(gold["source"])
    animator.set_reference(gold["driving"][0])
    expected = np.round(np.clip(gold["prediction_rel1_adapt1"], 0, 1) * 255)
    for frame, want in zip(gold["driving"], expected):
        assert np.abs(animator.step(frame).astype(np.float64) - want).max() <= 1
