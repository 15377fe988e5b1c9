"""TPSMM's full-size topology (the authors' checkpoint contract), its config layout, and the family interface
(modes, variants, the public load_model / Animator contract)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from tpsmm_support import ANIMATOR_FLAGS, CHECKPOINT, GOLDEN, YAML, golden, max_diff

from fomm_lab.engine.keypoints import Keypoints
from fomm_lab.engine.tpsmm.config import OFFICIAL, is_tpsmm_config, load_tpsmm_config, official_config
from fomm_lab.engine.tpsmm.model import TpsmmModel, Widths, build_tpsmm_networks, load_tpsmm
from fomm_lab.errors import ConfigError, FommLabError
from fomm_lab.geometry import Size


def contract() -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """vox-256-state-dict.tsv: {network.name: shape}, {network: element count}."""
    shapes, counts = {}, {}
    for line in (GOLDEN / "vox-256-state-dict.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("["):
            network, rest = line[1:].split("] ")
            counts[network] = int(rest.split(", ")[1].split()[0])
            continue
        name, shape, dtype = line.split("\t")
        assert dtype in ("float32", "int64")
        shapes[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return shapes, counts


def built(name: str) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    nets = build_tpsmm_networks(official_config(name), device="meta")
    shapes, counts = {}, {}
    for network, module in nets.named().items():
        state = module.state_dict()
        shapes.update({f"{network}.{key}": tuple(value.shape) for key, value in state.items()})
        counts[network] = sum(math.prod(value.shape) for value in state.values())
    return shapes, counts


@pytest.mark.parametrize("name", ["vox-256", "taichi-256", "ted-384"])
def test_full_size_networks_equal_the_checkpoint_contract(name):
    expected_shapes, expected_counts = contract()
    shapes, counts = built(name)
    assert list(shapes) == list(expected_shapes)  # same names, in the same order
    assert shapes == expected_shapes
    assert counts == expected_counts


def test_mgif_has_no_background_predictor():
    expected_shapes, expected_counts = contract()
    shapes, counts = built("mgif-256")
    assert shapes == {k: v for k, v in expected_shapes.items() if not k.startswith("bg_predictor.")}
    assert "bg_predictor" not in counts and counts == {k: v for k, v in expected_counts.items() if k != "bg_predictor"}


def test_widths_read_from_the_weights():
    state = torch.load(CHECKPOINT, weights_only=True)
    assert Widths.of(state) == Widths(resnet=4, bg_resnet=4, avd_hidden=(16, 32, 64))
    assert Widths.of({}) == Widths(64, 64, (256, 512, 1024))


def test_config_layout():
    raw = yaml.safe_load(YAML.read_text())
    assert is_tpsmm_config(raw)
    fomm_raw = yaml.safe_load((GOLDEN.parent / "fomm-golden" / "tiny-vox.yaml").read_text())
    assert not is_tpsmm_config(fomm_raw) and not is_tpsmm_config(None) and not is_tpsmm_config({"model_params": 1})
    config = load_tpsmm_config(YAML)
    assert (config.common.num_tps, config.num_keypoints, config.frame_size) == (3, 15, Size(256, 256))
    assert config.dense_motion.scale_factor == 0.25 and config.avd.pose_bottle_size == 12 and config.is_face_model
    assert official_config("ted-384").frame_size == Size(384, 384)
    assert official_config("mgif-256").common.bg is False and set(OFFICIAL) >= {"vox-256", "taichi-256"}


def test_config_frame_size_from_dataset(tmp_path):
    raw = yaml.safe_load(YAML.read_text())
    raw["dataset_params"]["root_dir"] = "../TED384-v2"
    (tmp_path / "talks.yaml").write_text(yaml.safe_dump(raw))
    assert load_tpsmm_config(tmp_path / "talks.yaml").frame_size == Size(384, 384)
    raw["dataset_params"]["frame_shape"] = [320, 320, 3]
    (tmp_path / "fixed.yaml").write_text(yaml.safe_dump(raw))
    assert load_tpsmm_config(tmp_path / "fixed.yaml").frame_size == Size(320, 320)


def test_config_errors_name_the_key(tmp_path):
    raw = yaml.safe_load(YAML.read_text())
    raw["model_params"]["dense_motion_params"]["num_block"] = 5
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="dense_motion_params has unknown parameter.*num_block"):
        load_tpsmm_config(tmp_path / "bad.yaml")


@pytest.fixture(scope="module")
def model() -> TpsmmModel:
    return load_tpsmm(YAML, CHECKPOINT, device="cpu")


def test_modes(model):
    assert model.family == "tpsmm" and [m.label for m in model.modes] == ["relative", "standard", "avd"]
    assert model.mode(relative=True, adapt_scale=True).label == "relative"
    assert model.mode(relative=False, adapt_scale=False).label == "standard"
    assert model.mode(relative=False, adapt_scale=True).label == "standard"
    assert model.mode(relative=False, adapt_scale=True, avd=True).label == "avd"
    with pytest.raises(ValueError, match="offer: relative, standard, avd"):
        model.mode(relative=True, adapt_scale=False)
    assert model.networks.bg_predictor is None  # inference does not load it


def test_inference_variants_are_cached(model):
    assert model.inference_networks() is model.inference_networks()
    assert model.inference_networks(dtype=torch.bfloat16) is not model.inference_networks()


def test_without_avd_network_the_avd_mode_is_refused(tmp_path):
    state = torch.load(CHECKPOINT, weights_only=True)
    stage1 = {k: v for k, v in state.items() if k not in ("avd_network", "optimizer_avd")}
    torch.save(stage1, tmp_path / "stage1.pth.tar")
    model = load_tpsmm(YAML, tmp_path / "stage1.pth.tar", device="cpu")
    assert not model.has_avd and model.mode(relative=True, adapt_scale=True).label == "relative"
    with pytest.raises(FommLabError, match="stage1.pth.tar has no avd_network.*train_avd"):
        model.mode(relative=False, adapt_scale=False, avd=True)


def test_public_contract_load_model_and_animator():
    """fomm_lab.load_model(yaml, checkpoint) gives the TPSMM model; Animator flags pick the demo's modes."""
    from fomm_lab import Animator, load_model

    model = load_model(str(YAML), str(CHECKPOINT), device="cpu")
    assert isinstance(model, TpsmmModel) and model.checkpoint == CHECKPOINT
    data = golden()
    for mode, flags in ANIMATOR_FLAGS.items():
        animator = Animator(model, dtype="float32", smoothing=0, **flags)
        assert (animator.relative, animator.avd) == (mode == "relative", mode == "avd")
    frames = list(Animator(model, dtype="float32", smoothing=0, relative=True).animate(data["source"], data["driving"][:1]))
    assert len(frames) == 1 and frames[0].dtype == np.uint8 and frames[0].shape == (256, 256, 3)


@pytest.mark.slow
def test_batches_equal_single_frames(model):
    from fomm_lab import Animator

    data = golden()
    single = list(Animator(model, dtype="float32", smoothing=0, relative=True, float_output=True).animate(data["source"], data["driving"]))
    batched = list(Animator(model, dtype="float32", smoothing=0, relative=True, float_output=True, batch_size=3).animate(data["source"],
                                                                                          data["driving"]))
    for a, b in zip(single, batched):
        assert max_diff(a, b) < 5e-3  # batched convolutions round differently; the fixture amplifies that ~1000x


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision(model, dtype):
    """Convolutions under autocast, geometry in float32: close to float32 on average, never garbage."""
    from fomm_lab import Animator

    data = golden()
    exact = list(Animator(model, dtype="float32", smoothing=0, relative=True).animate(data["source"], data["driving"][:2]))
    reduced = list(Animator(model, smoothing=0, relative=True, dtype=dtype).animate(data["source"], data["driving"][:2]))
    for a, b in zip(exact, reduced):
        difference = np.abs(a.astype(float) - b.astype(float))
        assert difference.mean() < 4, difference.mean()


@pytest.mark.slow
def test_random_weights_at_384(caplog):
    model = load_tpsmm(official_config("ted-384"), device="cpu")
    assert "random weights" in caplog.text
    nets = model.inference_networks()
    frame = torch.rand(1, 3, 384, 384)
    with torch.inference_mode():
        kp = nets.kp_detector(frame)
        assert kp.value.shape == (1, 50, 2)
        motion = nets.dense_motion(nets.prepare(frame, kp).motion, kp.value)
    assert motion.deformation.shape == (1, 96, 96, 2)
    assert [tuple(m.shape[2:]) for m in motion.occlusion] == [(48, 48), (96, 96), (192, 192), (384, 384)]
    assert isinstance(kp, Keypoints)
