"""TPSMM's ONNX export (fomm_lab/engine/fast/onnx.py) run by ONNX Runtime: each graph against the torch networks,
whole animations in the authors' three demo modes against the torch Animator and the authors' frames, the
manifest, a first-stage checkpoint (no avd mode) and ``fomm-lab export``.

Tolerances. ONNX Runtime runs the traced float32 graphs with its own kernels (torch's 3x3 convolutions on the CPU
are Winograd's), and the exported dense motion graph solves the 8x8 TPS systems by Gauss-Jordan elimination where
torch inverts them: rounding only, which the fixture amplifies as the golden README measures (about 1000x from the
keypoints to the 256x256 frames). GRAPH_TOL bounds each graph's outputs given the same inputs; ANIMATION_TOL bounds
whole animations (the graphs' keypoints carried through the transfer and the warp) against the torch Animator; the
authors' frames are held to the golden tests' PREDICTION_TOL.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from test_tpsmm_golden import PREDICTION_TOL
from tpsmm_support import ANIMATOR_FLAGS, CHECKPOINT, GOLDEN, MODES, YAML, as_input, golden, max_diff

from fomm_lab import FommLabError
from fomm_lab.engine.animator import Animator
from fomm_lab.engine.keypoints import Keypoints
from fomm_lab.engine.tpsmm.model import TpsmmModel, load_tpsmm

GRAPH_TOL = {"kp_value": 1e-5, "features": 1e-4, "deformation": 1e-4, "occlusion": 1e-3, "avd": 1e-5,
             "prediction": 2e-3}
"""One graph, the same inputs (measured on AMD EPYC, AVX512-BF16: keypoints 2.6e-6, features 8e-6, deformation
5e-6, occlusion masks 7.7e-5, AVD 9e-8, prediction 2.6e-4); about 4x or more for other CPUs."""
ANIMATION_TOL = 2 * PREDICTION_TOL
ANIMATION_MEAN_TOL = 1e-4
"""A whole animation through ONNX Runtime against the torch Animator's float32 frames: largest and mean absolute
difference. Both are within PREDICTION_TOL of the authors' frames, hence the largest bound (measured on AMD EPYC,
AVX512-BF16: 3.8e-3 standard, 2.1e-3 relative, 1.2e-3 avd, while torch's own frames are up to 3.7e-3 from the
authors'); the mean (measured 1.7e-5 to 2.7e-5) catches any systematic difference. The Gauss-Jordan solve alone
moves torch's frames by 5.3e-4 at most (mean 3e-6); the rest is ONNX Runtime's rounding of the keypoints."""


@pytest.fixture(scope="module")
def model() -> TpsmmModel:
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    return load_tpsmm(YAML, CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    from fomm_lab.engine.fast.onnx import export_onnx

    return export_onnx(model, tmp_path_factory.mktemp("tpsmm-onnx") / "graphs")


@pytest.fixture(scope="module")
def sessions(exported):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return {name: ort.InferenceSession(str(exported.path(name)), options, providers=["CPUExecutionProvider"])
            for name in exported.graphs}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return golden()


def _run(session, **feeds: torch.Tensor | np.ndarray) -> list[np.ndarray]:
    return session.run(None, {k: v.numpy() if torch.is_tensor(v) else v for k, v in feeds.items()})


def onnx_animate(model: TpsmmModel, sessions, source: np.ndarray, driving: np.ndarray, mode: str) -> np.ndarray:
    """The Animator's loop (reference = first driving frame, no smoothing) with every network run by ONNX Runtime;
    what is between the graphs (the relative transfer, the source's motion inputs) by the model, as a runtime
    without the AVD graph would do. uint8 frames -> (N, H, W, 3) float32 in [0, 1]."""
    from fomm_lab.engine.fast.onnx import flatten, onnx_name

    source_t, driving_t = as_input(source), as_input(driving)
    (kp_source,) = _run(sessions["kp_detector"], image=source_t)
    (kp_driving,) = _run(sessions["kp_detector"], image=driving_t)
    if mode == "avd":
        (kp_value,) = _run(sessions["avd_network"], kp_source=kp_source, kp_driving=kp_driving)
    else:
        src, drv = Keypoints(torch.from_numpy(kp_source)), Keypoints(torch.from_numpy(kp_driving))
        reference = Keypoints(drv.value[:1])
        scale = model.movement_scale(src, reference, adapt_scale=True)
        kp_value = model.transfer(src, drv, reference, relative=mode == "relative", scale=scale).value.numpy()
    _, dense, _ = model.inference_modules()
    with torch.inference_mode():
        motion_inputs = dense.prepare(source_t, torch.from_numpy(kp_source))
    features = _run(sessions["source_encoder"], source=source_t)
    feeds = {onnx_name(path): t.numpy() for path, t in flatten(motion_inputs)}
    deformation, *occlusion = sessions["dense_motion"].run(None, {**feeds, "kp_value": kp_value})
    decode = {"source": source_t.numpy(), "deformation": deformation}
    decode |= {f"features_{i}": f for i, f in enumerate(features)} | {f"occlusion_{i}": o for i, o in enumerate(occlusion)}
    (prediction,) = sessions["decode"].run(None, decode)
    return prediction.transpose(0, 2, 3, 1)


def test_manifest(exported, model):
    from fomm_lab.engine.fast.onnx import read_manifest

    assert read_manifest(exported.folder) == exported
    manifest = json.loads((exported.folder / "manifest.json").read_text())
    assert manifest["family"] == "tpsmm" and manifest["num_kp"] == 15 and manifest["jacobian"] is False
    assert manifest["modes"] == ["relative", "standard", "avd"] and manifest["config"] == model.config.name
    assert manifest["motion_fields"] == ["image", "heatmaps", "keypoints", "grid"]
    graphs = manifest["graphs"]
    assert sorted(graphs) == ["avd_network", "decode", "dense_motion", "kp_detector", "source_encoder"]
    assert graphs["source_encoder"]["outputs"] == ["features_0", "features_1", "features_2", "features_3"]
    assert graphs["dense_motion"]["inputs"] == ["source_image", "source_heatmaps", "source_keypoints", "source_grid",
                                                "kp_value"]
    assert graphs["dense_motion"]["outputs"] == ["deformation"] + [f"occlusion_{i}" for i in range(4)]
    assert graphs["decode"]["inputs"][:2] == ["source", "features_0"]


def test_graphs_match_the_torch_networks(model, sessions, data):
    """Each graph at batch 4 (traced at 2) against the fused float32 torch networks on the golden frames."""
    source, driving = as_input(data["source"]), as_input(data["driving"])
    kp_detector, dense, inpainting = model.inference_modules()
    from fomm_lab.engine.fast.onnx import flatten, onnx_name

    with torch.inference_mode():
        kp_source, kp_driving = kp_detector(source), kp_detector(driving)
        motion_inputs = dense.prepare(source, kp_source)
        features = inpainting.encode(source)
        motion = dense(motion_inputs, kp_driving)
        prediction = inpainting.decode(source, features, motion.deformation, motion.occlusion)
        avd = model.networks.avd_network(kp_source, kp_driving)
    (kp_value,) = _run(sessions["kp_detector"], image=driving)
    assert kp_value.shape == (4, 15, 2) and max_diff(kp_value, kp_driving.numpy()) < GRAPH_TOL["kp_value"]
    onnx_features = _run(sessions["source_encoder"], source=source)
    assert len(onnx_features) == 4
    for ours, theirs in zip(features, onnx_features):
        assert ours.shape == theirs.shape and max_diff(ours, theirs) < GRAPH_TOL["features"]
    feeds = {onnx_name(path): t.numpy() for path, t in flatten(motion_inputs)} | {"kp_value": kp_driving.numpy()}
    deformation, *occlusion = sessions["dense_motion"].run(None, feeds)
    assert max_diff(motion.deformation, deformation) < GRAPH_TOL["deformation"]
    assert [o.shape[2] for o in occlusion] == [32, 64, 128, 256]
    for ours, theirs in zip(motion.occlusion, occlusion):
        assert max_diff(ours, theirs) < GRAPH_TOL["occlusion"]
    feeds = {"source": source, "deformation": motion.deformation} | {f"features_{i}": f for i, f in enumerate(features)}
    feeds |= {f"occlusion_{i}": o for i, o in enumerate(motion.occlusion)}
    (onnx_prediction,) = _run(sessions["decode"], **feeds)
    assert onnx_prediction.shape == (4, 3, 256, 256) and max_diff(prediction, onnx_prediction) < GRAPH_TOL["prediction"]
    (onnx_avd,) = _run(sessions["avd_network"], kp_source=kp_source, kp_driving=kp_driving)
    assert max_diff(avd, onnx_avd) < GRAPH_TOL["avd"]
    (one,) = _run(sessions["kp_detector"], image=driving[1:2])  # batch 1 too
    assert max_diff(one, kp_value[1:2]) < GRAPH_TOL["kp_value"]


@pytest.mark.parametrize("mode", MODES)
def test_onnx_animation_equals_the_torch_animator(model, sessions, data, mode):
    frames = onnx_animate(model, sessions, data["source"], data["driving"], mode)
    animator = Animator(model, dtype="float32", smoothing=0, float_output=True, **ANIMATOR_FLAGS[mode])
    torch_frames = np.stack(list(animator.animate(data["source"], data["driving"])))
    assert frames.shape == torch_frames.shape == (4, 256, 256, 3)
    assert max_diff(frames, torch_frames) < ANIMATION_TOL
    assert float(np.abs(frames - torch_frames).mean()) < ANIMATION_MEAN_TOL
    for j, i in enumerate(data["full_res_frames"]):
        assert max_diff(frames[i], data[f"prediction_{mode}"][j]) < PREDICTION_TOL  # the authors' frames


def test_a_missing_graph_file_is_named(exported, tmp_path):
    from fomm_lab.engine.fast.onnx import read_manifest

    copy = shutil.copytree(exported.folder, tmp_path / "copy")
    (copy / "avd_network.onnx").unlink()
    with pytest.raises(FommLabError, match="lacks avd_network; export again"):
        read_manifest(copy)


def test_cli_export_of_a_first_stage_checkpoint_has_no_avd_mode(tmp_path, capsys):
    """``fomm-lab export`` of a TPSMM checkpoint without ``avd_network`` (the authors' train.py): the four graphs,
    and a manifest whose modes leave out avd."""
    from fomm_lab.cli import main
    from fomm_lab.engine.fast.onnx import read_manifest

    state = torch.load(CHECKPOINT, weights_only=True)
    torch.save({k: v for k, v in state.items() if k not in ("avd_network", "optimizer_avd")}, tmp_path / "stage1.pth")
    out = tmp_path / "tpsmm-onnx"
    assert main(["export", "--config", str(YAML), "--checkpoint", str(tmp_path / "stage1.pth"), "--out", str(out),
                 "-q"]) == 0
    said = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["decode.onnx", "dense_motion.onnx", "kp_detector.onnx",
                                                     "manifest.json", "source_encoder.onnx"]
    assert "tpsmm" in said and "15 thin-plate-spline control points; modes relative, standard" in said
    exported = read_manifest(out)
    assert exported.family == "tpsmm" and exported.modes == ("relative", "standard") and "avd_network" not in \
        exported.graphs


def test_openvino_refuses_the_export_of_another_family(exported):
    """The OpenVINO backend runs FOMM models: a TPSMM export given as a FOMM model's graphs is named as such."""
    from fomm_lab.engine.fast.openvino import _check_fits
    from fomm_lab.engine.model import load_fomm

    fomm = load_fomm(GOLDEN.parent / "fomm-golden" / "tiny-vox.yaml", GOLDEN.parent / "fomm-golden" /
                     "tiny-vox-cpk.pth.tar", device="cpu")
    with pytest.raises(FommLabError, match="not of this model \\(a tpsmm model vs a fomm model; 15 keypoints vs 10\\)"):
        _check_fits(exported, fomm)
