"""Engine: state-dict contract of the shipped configs, checkpoint loading, streaming, best frame."""

from __future__ import annotations

import ast
import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fomm_lab import Animator, CheckpointError, ConfigError, FommLabError, NoFaceError, find_best_frame, load_model
from fomm_lab.engine.checkpoint import read_checkpoint
from fomm_lab.engine.config import available_configs, load_config
from fomm_lab.engine.fast.conv import FusedConv
from fomm_lab.engine.model import build_networks

OFFICIAL = ["bair-256", "fashion-256", "mgif-256", "nemo-256", "taichi-256", "taichi-adv-256", "vox-256", "vox-adv-256"]


def _contract(golden_dir: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    rows = {}
    for line in (golden_dir / "vox-256-state-dict.tsv").read_text().splitlines():
        if line.startswith(("#", "[")) or not line.strip():
            continue
        name, shape, dtype = line.split("\t")
        rows[name] = (tuple(ast.literal_eval(shape)), dtype)
    return rows


def test_all_official_configs_are_shipped():
    # + PaddleGAN's (test_paddle) and the small model trained here on synthetic motion (tests/train/test_meaning.py)
    assert available_configs() == sorted(OFFICIAL + ["vox-512", "vox-mobile-256", "synthetic-64"])


@pytest.mark.parametrize("name", OFFICIAL)
def test_state_dict_contract_at_full_size(golden_dir, name):
    """Every parameter and buffer name, shape and dtype equals the official vox-256 checkpoint's."""
    contract = _contract(golden_dir)
    assert len(contract) == 75 + 196
    kp_detector, generator = build_networks(load_config(name), device="meta")
    ours = {}
    for prefix, module in (("kp_detector", kp_detector), ("generator", generator)):
        for key, tensor in module.state_dict().items():
            ours[f"{prefix}.{key}"] = (tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""))
    if name == "mgif-256":  # single_jacobian_map: 4 output channels in the jacobian head
        contract["kp_detector.jacobian.weight"] = ((4, 35, 7, 7), "float32")
        contract["kp_detector.jacobian.bias"] = ((4,), "float32")
    assert ours == contract


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"checkpoint name \(vox, vox-adv.*shipped config \(bair-256"):
        load_config("vox-1024")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_params:\n  common_params: {num_kp: 10}\n")
    with pytest.raises(ConfigError, match="kp_detector_params"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_params: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


# -- checkpoint files ------------------------------------------------------------------------


def test_official_checkpoint_extra_entries_ignored(tiny_vox):
    data = read_checkpoint(tiny_vox[1])
    assert {"generator", "kp_detector", "discriminator", "epoch"} <= set(data)
    model = load_model(*tiny_vox, device="cpu")
    assert not model.generator.training and model.device.type == "cpu"


def test_module_prefix_and_zip_format(tmp_path, tiny_vox, tiny_model):
    """A DataParallel-saved (``module.``), zip-format checkpoint loads to identical weights."""
    data = read_checkpoint(tiny_vox[1])
    path = tmp_path / "dp.pth.tar"
    torch.save({k: {f"module.{n}": t for n, t in data[k].items()} for k in ("generator", "kp_detector")}, path)
    assert zipfile.is_zipfile(path)
    model = load_model(tiny_vox[0], path, device="cpu")
    for name, tensor in tiny_model.generator.state_dict().items():
        assert torch.equal(tensor, model.generator.state_dict()[name])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>", "HTML page"),
        (b"hello, not a checkpoint at all" * 10, "truncated or corrupt|not a readable"),
    ],
)
def test_bad_checkpoint_files(tmp_path, content, message):
    path = tmp_path / "vox-cpk.pth.tar"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_truncated_checkpoint(tmp_path, tiny_vox, fmt):
    source = tiny_vox[1]
    if fmt == "zip":
        source = tmp_path / "zip.pth.tar"
        torch.save(read_checkpoint(tiny_vox[1]), source)
    path = tmp_path / "truncated.pth.tar"
    blob = source.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tiny_vox[0], path, device="cpu")


def test_unpacked_checkpoint_folder(tmp_path, tiny_vox):
    """Users 'unzip' zip-format .pth.tar files: the folder and its data.pkl get a clear error."""
    archive = tmp_path / "vox-cpk.pth.tar"
    torch.save(read_checkpoint(tiny_vox[1]), archive)
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    with pytest.raises(CheckpointError, match="must not be extracted"):
        read_checkpoint(folder)
    pkl = next(folder.rglob("data.pkl"))
    with pytest.raises(CheckpointError, match="must not be extracted"):
        read_checkpoint(pkl)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_code_running_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth.tar"
    with path.open("wb") as fh:
        pickle.dump({"generator": _Evil(str(marker)), "kp_detector": {}}, fh)
    torch.save({"generator": _Evil(str(marker)), "kp_detector": {}}, tmp_path / "evil-zip.pth.tar")
    for candidate in (path, tmp_path / "evil-zip.pth.tar"):
        with pytest.raises(CheckpointError, match="run code"):
            read_checkpoint(candidate)
    assert not marker.exists()


def test_missing_entries(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="(?s)no .generator. or .kp_detector. entry.*state_dict"):
        read_checkpoint(path)


def test_config_mismatch_names_keys(golden_dir):
    with pytest.raises(CheckpointError) as err:
        load_model(golden_dir / "tiny-vox.yaml", golden_dir / "tiny-mgif-cpk.pth.tar", device="cpu")
    text = str(err.value)
    assert "kp_detector" in text and "jacobian.weight (4, 7, 7, 7) vs (40, 7, 7, 7)" in text
    assert "no shipped config fits" in text


@pytest.mark.slow
def test_config_mismatch_suggests_fitting_shipped_config(tmp_path):
    """A full-size vox checkpoint loaded with the mgif config: the error names the configs that fit."""
    kp_detector, generator = build_networks(load_config("vox-256"))
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save({"generator": generator.state_dict(), "kp_detector": kp_detector.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"(?s)config mgif-256: use a config that fits it \(load_model\('vox-256'\).*fit this file: .*vox-256"):
        load_model("mgif-256", path, device="cpu")
    assert load_model("vox-256", path, device="cpu").name == "vox-256"


# -- streaming -------------------------------------------------------------------------------


class _CountingFrames:
    """An iterator of driving frames that records how many were pulled."""

    def __init__(self, frames: np.ndarray, repeat: int):
        self.frames, self.repeat, self.pulled = frames, repeat, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.pulled >= self.repeat:
            raise StopIteration
        frame = self.frames[self.pulled % len(self.frames)]
        self.pulled += 1
        return frame


@pytest.mark.parametrize("batch_size", [1, 4])
def test_animate_streams_lazily(golden_dir, tiny_model, batch_size):
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    frames = _CountingFrames(gold["driving"], repeat=40)
    stream = Animator(tiny_model, dtype="float32", smoothing=0, batch_size=batch_size).animate(gold["source"], frames)
    assert frames.pulled == 0  # nothing happens before the first frame is asked for
    for produced, _ in enumerate(stream, start=1):
        assert frames.pulled <= produced + batch_size  # never more than one batch ahead
    assert produced == 40 and frames.pulled == 40


def test_best_frame_reference_and_errors(golden_dir, tiny_model):
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    source, driving = gold["source"], gold["driving"]
    animator = Animator(tiny_model, dtype="float32", smoothing=0)
    with_best = np.stack(list(animator.animate(source, iter(driving), best_frame=2)))
    animator.set_source(source)
    animator.set_reference(driving[2])
    by_stages = np.stack([animator.step(f) for f in driving])
    assert np.array_equal(with_best, by_stages)
    assert not np.array_equal(with_best, np.stack(list(animator.animate(source, iter(driving)))))
    with pytest.raises(FommLabError, match="past the end of the driving clip \\(3 frames\\)"):
        list(animator.animate(source, iter(driving), best_frame=9))
    with pytest.raises(ValueError, match="RGB frame"):
        list(animator.animate(source, iter([np.zeros((256, 256), np.uint8)])))


def test_any_frame_size_is_resized(golden_dir, tiny_model):
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    big = [cv2.resize(f, (400, 300)) for f in gold["driving"]]
    out = list(Animator(tiny_model, dtype="float32", smoothing=0).animate(cv2.resize(gold["source"], (512, 512)), big))
    assert [f.shape for f in out] == [(256, 256, 3)] * len(gold["driving"])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_close_to_float32(golden_dir, tiny_model, dtype):
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    exact = np.stack(list(Animator(tiny_model, dtype="float32", smoothing=0).animate(gold["source"], gold["driving"]))).astype(np.float64)
    fast = np.stack(list(Animator(tiny_model, smoothing=0, dtype=dtype).animate(gold["source"], gold["driving"]))).astype(np.float64)
    psnr = 10 * np.log10(255**2 / max(((exact - fast) ** 2).mean(), 1e-12))
    assert psnr > 30, psnr


# -- find best frame -------------------------------------------------------------------------

_COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def _face(points: np.ndarray, size: int = 256) -> np.ndarray:
    """A drawn 'face': six coloured dots (eyes, nose, mouth corners, chin) on grey."""
    img = np.full((size, size, 3), 90, np.uint8)
    for (x, y), color in zip(points, _COLORS):
        cv2.circle(img, (int(round(x)), int(round(y))), 5, color, -1)
    return img


def _dot_landmarks(img: np.ndarray):
    """Real detector for the drawn faces: centroid of each colour's pixels; None if one is missing."""
    points = []
    for color in _COLORS:
        mask = np.all(img == np.array(color, np.uint8), axis=-1)
        if mask.sum() < 10:
            return None
        ys, xs = np.nonzero(mask)
        points.append((xs.mean(), ys.mean()))
    return np.array(points)


def test_find_best_frame_picks_matching_pose():
    neutral = np.array([[100, 100], [156, 100], [128, 130], [108, 160], [148, 160], [128, 190]], float)
    open_mouth = neutral.copy()
    open_mouth[5, 1] += 30
    open_mouth[3:5, 1] += 8

    def similar(points, scale, dx, dy):
        return (points - 128) * scale + 128 + [dx, dy]

    driving = [_face(similar(neutral, 1.0, 0, 0)), _face(similar(neutral, 0.8, 10, -5)), np.full((256, 256, 3), 90, np.uint8),
               _face(similar(open_mouth, 0.7, -20, 10)), _face(similar(neutral, 1.2, 5, 5))]
    source = _face(similar(open_mouth, 1.1, 3, -8))
    assert find_best_frame(source, iter(driving), _dot_landmarks) == 3
    with pytest.raises(NoFaceError, match="source image"):
        find_best_frame(driving[2], iter(driving), _dot_landmarks)
    with pytest.raises(NoFaceError, match="any of the 2 driving frames"):
        find_best_frame(source, iter([driving[2]] * 2), _dot_landmarks)


def test_text_file_is_not_called_code(tmp_path):
    path = tmp_path / "README.pth.tar"
    path.write_text("# notes\nthis is a readme, not weights\n" * 20)
    with pytest.raises(CheckpointError, match="is not a torch checkpoint") as err:
        read_checkpoint(path)
    assert "run code" not in str(err.value)


# -- exact inference rewrites ----------------------------------------------------------------


def test_subpixel_upblock_equals_upsample_then_conv():
    from fomm_lab.engine.fast.fuse import SubpixelUpBlock
    from fomm_lab.engine.nets.blocks import UpBlock2d

    torch.manual_seed(0)
    block = UpBlock2d(16, 8).eval()
    block.norm.running_mean.normal_()
    block.norm.running_var.uniform_(0.5, 2.0)
    block.norm.weight.data.normal_()
    block.norm.bias.data.normal_()
    x = torch.randn(2, 16, 9, 13)
    with torch.inference_mode():
        assert torch.allclose(SubpixelUpBlock(block)(x), block(x), atol=1e-5, rtol=0)  # float32 rounding only


def test_fused_networks_match_checkpoint_networks(golden_dir, tiny_model):
    """Animator's fused networks give the official golden outputs to 1e-4 as well."""
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    nets = tiny_model.inference_networks()
    assert tiny_model.inference_networks() is nets  # built once per model
    assert tiny_model.fused and nets.kp_detector is tiny_model.kp_detector  # the model's networks are the fused ones
    kp_fused, gen_fused = nets.kp_detector, tiny_model.generator
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
    source, driving = to(gold["source"][None]), to(gold["driving"])
    with torch.inference_mode():
        kp_s, kp_d = kp_fused(source), kp_fused(driving)
        from fomm_lab.engine.motion import normalize_keypoints

        out = gen_fused(source, normalize_keypoints(kp_s, kp_d, kp_d[0]), kp_s)
    np.testing.assert_allclose(kp_d.value.numpy(), gold["kp_driving_value"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["prediction"].permute(0, 2, 3, 1).numpy(), gold["prediction_rel1_adapt1"], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_compiled_animator_matches_eager(golden_dir, tiny_model, tiny_vox, monkeypatch):
    """torch.compile gives the same frames as the eager networks; in float32 on the CPU the compiled graphs
    compute the Winograd kernel transforms themselves (the model keeps none), and a new photo compiles nothing
    again."""
    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    eager = np.stack(list(Animator(tiny_model, dtype="float32", smoothing=0, float_output=True).animate(gold["source"], gold["driving"])))
    from torch._inductor.compile_fx import compile_fx

    graphs = []  # what dynamo hands inductor
    compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile(
        fn, backend=lambda gm, inputs: graphs.append(gm) or compile_fx(gm, inputs), **kw))
    fresh = load_model(*tiny_vox, device="cpu")
    animator = Animator(fresh, dtype="float32", smoothing=0, float_output=True, compile=True)
    compiled = np.stack(list(animator.animate(gold["source"], gold["driving"])))
    assert np.abs(compiled - eager).max() < 1e-4  # inductor reorders float32 sums: rounding only, as GOLDEN
    assert any(node.target is torch.bmm for gm in graphs for node in gm.graph.nodes)  # Winograd, in the graphs ...
    convs = [m for net in (fresh.kp_detector, fresh.generator) for m in net.modules() if isinstance(m, FusedConv)]
    assert any(m.winograd is not None for m in convs) and all(m.winograd_kernels is None for m in convs)  # ... and keep no transform
    with torch._dynamo.config.patch(error_on_recompile=True):
        list(animator.animate(gold["driving"][-1], gold["driving"][:3]))
