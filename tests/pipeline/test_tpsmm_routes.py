"""Everything the lab does, with a Thin-Plate Spline Motion Model: the CLI's modes (relative, ``--absolute`` =
standard, ``--avd``), face crops and paste-back, several faces, smoothing of the control points, the reference
frame, the live loop and the reconstruction evaluation, on the tiny TPSMM fixture and real media."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import _background, face_clip_frames, face_patch, photo_and_clip
from PIL import Image

from fomm_lab import AnimateJob, Animation, Animator, CropOptions, MotionOptions, OutputOptions, RuntimeOptions
from fomm_lab.cli import main
from fomm_lab.engine.smoothing import KeypointFilter
from fomm_lab.engine.tpsmm.model import TpsmmModel, load_tpsmm
from fomm_lab.faces import HaarDetector, crop_photo, paste_back
from fomm_lab.faces.paste import Compositor
from fomm_lab.io import read_image, read_video, resize_to_model

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "tpsmm-golden"
YAML, CHECKPOINT = GOLDEN / "tiny-vox.yaml", GOLDEN / "tiny-vox.pth.tar"
SIZE = (256, 256)
PLAIN = ["--no-crop-source", "--no-crop-driving", "--smoothing", "0", "--dtype", "float32", "--device", "cpu"]
"""Options that make the command compute exactly what a bare ``Animator`` does."""


@pytest.fixture(autouse=True)
def _no_face_alignment_weights(tmp_path_factory, monkeypatch):
    """An empty torch hub (face boxes from OpenCV's Haar cascades; the user's cache stays untouched)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))


@pytest.fixture(scope="module")
def model() -> TpsmmModel:
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    return load_tpsmm(YAML, CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    return photo_and_clip(tmp_path_factory.mktemp("tpsmm-media"), seconds=0.4)


def animate(media, output: Path, *extra: str) -> int:
    return main(["animate", "--source", str(media["photo"]), "--driving", str(media["driving"]), "--output",
                 str(output), "--config", str(YAML), "--checkpoint", str(CHECKPOINT), "-q", *PLAIN, *extra])


def png_frames(folder: Path) -> np.ndarray:
    return np.stack([read_image(p, max_size=None) for p in sorted(folder.glob("*.png"))]).astype(np.int16)


def driving_of(path: Path) -> list[np.ndarray]:
    with read_video(path) as reader:
        return [resize_to_model(f, SIZE, mode="crop") for f in reader]


def library_frames(model, source, driving_path, best_frame=None, **options) -> np.ndarray:
    frames = Animator(model, dtype="float32", smoothing=options.pop("smoothing", 0), **options).animate(
        source, driving_of(driving_path), best_frame=best_frame)
    return np.stack(list(frames)).astype(np.int16)


@pytest.fixture(scope="module")
def default_frames(model, media) -> np.ndarray:
    return library_frames(model, resize_to_model(read_image(media["photo"]), SIZE), media["driving"])


# ------------------------------------------------------------------------------------------ the CLI


@pytest.mark.parametrize(("flags", "options"), [
    ([], {"relative": True}),
    (["--absolute"], {"relative": False}),  # TPSMM's standard mode
    (["--avd"], {"avd": True}),
    (["--best-frame", "2"], {"relative": True, "best_frame": 2}),
    (["--smoothing", "0.8"], {"relative": True, "smoothing": 0.8}),
])
def test_cli_modes_match_the_library(flags, options, media, model, default_frames, tmp_path):
    assert animate(media, tmp_path / "frames", *flags) == 0
    got = png_frames(tmp_path / "frames")
    source = resize_to_model(read_image(media["photo"]), SIZE)
    expected = library_frames(model, source, media["driving"], **options)
    assert got.shape == (4, 256, 256, 3)
    assert np.abs(got - expected).max() <= 1
    if flags:  # every option changes the frames
        assert np.abs(expected - default_frames).mean() > 0.05


def test_the_three_modes_differ_through_the_session(media, model, tmp_path):
    job = AnimateJob(source=media["photo"], driving=media["driving"], model=YAML, checkpoint=CHECKPOINT,
                     motion=MotionOptions(smoothing=0), crop=CropOptions(source=False, driving=False),
                     runtime=RuntimeOptions(device="cpu", dtype="float32"),
                     output=OutputOptions(video=tmp_path / "relative"))
    with Animation(job, model=model, progress=False) as session:
        for name, motion in (("relative", {}), ("standard", {"relative": False}), ("avd", {"avd": True})):
            result = session.animate(output=OutputOptions(video=tmp_path / name), **motion)
            assert result.frames == 4
    relative, standard, avd = (png_frames(tmp_path / n) for n in ("relative", "standard", "avd"))
    assert min(np.abs(a - b).mean() for a, b in ((relative, standard), (relative, avd), (standard, avd))) > 0.5


# ----------------------------------------------------------------------------- faces and paste-back


def test_face_crop_pasted_back_into_the_full_photo(media, model, tmp_path):
    assert animate(media, tmp_path / "frames", "--crop-source", "--paste-back") == 0
    got = png_frames(tmp_path / "frames")
    photo = read_image(media["photo"])
    crop = crop_photo(photo, detector=HaarDetector(), size=256)
    faces = library_frames(model, crop.image, media["driving"])
    expected = np.stack([paste_back(photo, f, crop.box.as_tuple()) for f in faces.astype(np.uint8)])
    assert got.shape == (4, *photo.shape)
    assert np.abs(got - expected).max() <= 1
    x0, y0, x1, y1 = crop.box.as_ints()
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (got[:, outside] == photo[outside]).all()
    assert np.abs(got[:, y0:y1, x0:x1] - photo[y0:y1, x0:x1]).mean() > 2


@pytest.mark.slow
def test_every_face_of_a_group_photo(media, model, tmp_path):
    canvas = _background(720, 360).copy()
    for x, y, side, mirrored in ((40, 60, 240, False), (420, 80, 220, True)):
        patch = np.asarray(Image.fromarray(face_patch()).resize((side, side), Image.LANCZOS))
        canvas[y:y + side, x:x + side] = patch[:, ::-1] if mirrored else patch
    photo_path = tmp_path / "group.png"
    Image.fromarray(canvas).save(photo_path)
    job = AnimateJob(source=photo_path, driving=media["driving"], model=YAML, checkpoint=CHECKPOINT,
                     motion=MotionOptions(smoothing=0),
                     crop=CropOptions(source=True, faces="all", detector="haar", driving=False),
                     runtime=RuntimeOptions(device="cpu", dtype="float32"),
                     output=OutputOptions(video=tmp_path / "frames"))
    result = Animation(job, model=model, progress=False).run()
    got = png_frames(tmp_path / "frames")
    crops = result.prepared.source.crops
    assert len(crops) == 2 and got.shape == (4, 360, 720, 3)
    faces = [library_frames(model, image, media["driving"]).astype(np.uint8) for image in result.prepared.source.images]
    compositor = Compositor(canvas, [c.box for c in crops], [c.face for c in crops])
    expected = np.stack([compositor.paste([faces[0][i], faces[1][i]]) for i in range(4)]).astype(np.int16)
    assert np.abs(got - expected).max() <= 1
    for crop in crops:  # each face moves
        x0, y0, x1, y1 = crop.face.as_ints()
        assert np.abs(got[-1, y0:y1, x0:x1] - got[0, y0:y1, x0:x1]).mean() > 0.5


# --------------------------------------------------------------------------- smoothing, live loop


@pytest.mark.slow
def test_smoothing_filters_the_control_points(model):
    """The Animator's smoothing is the One-Euro filter on TPSMM's 5K control points (no jacobians), then the
    relative transfer and the networks: a replay step by step gives the same frames."""
    source = face_patch(256)
    driving = [resize_to_model(f, SIZE, mode="crop") for f in face_clip_frames(seconds=0.6, fps=10, size=(320, 240))]
    got = list(Animator(model, dtype="float32", smoothing=0.8, float_output=True).animate(source, driving))
    nets = model.inference_networks()
    smoother = KeypointFilter(0.8)

    def tensor(frames):
        return torch.from_numpy(np.stack(frames).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()

    with torch.inference_mode():
        kp_source = nets.kp_detector(tensor([source]))
        state = nets.prepare(tensor([source]), kp_source)
        reference = nets.kp_detector(tensor(driving[:1]))
        scale = model.movement_scale(kp_source, reference, adapt_scale=True)
        for frame, out in zip(driving, got):
            detected = nets.kp_detector(tensor([frame]))
            smoothed = smoother(detected)
            assert smoothed.jacobian is None and smoothed.value.shape == (1, 15, 2)
            kp = model.transfer(kp_source, smoothed, reference, relative=True, scale=scale)
            expected = nets.generate(state, kp)[0].permute(1, 2, 0).numpy()
            assert np.abs(out - expected).max() < 1e-5
    plain = list(Animator(model, dtype="float32", smoothing=0, float_output=True).animate(source, driving))
    assert np.abs(plain[-1] - got[-1]).mean() > 1e-4  # the filter changed the motion


@pytest.mark.slow
@pytest.mark.parametrize("flags", [{"relative": True}, {"relative": False}, {"avd": True}])
def test_live_session_steps_like_the_clip(model, astronaut, flags):
    from fomm_lab.live import LiveSession

    session = LiveSession(Animator(model, dtype="float32", smoothing=0, **flags), astronaut)
    camera = list(face_clip_frames(seconds=0.5, fps=10, size=(320, 240)))
    crops, outs = zip(*(session.process(frame) for frame in camera))
    assert outs[-1].shape == (256, 256, 3) and outs[-1].dtype == np.uint8 and session.tracker.box is not None
    clip = Animator(model, dtype="float32", smoothing=0, **flags).animate(session.source, list(crops))
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(outs, clip)) <= 1
    best = session.best_reference()  # face-alignment's weights are absent: the model's control points
    assert best.method == "model keypoints" and 0 <= best.index < best.frames == len(camera)


# ------------------------------------------------------------------------------------ reconstruction


def test_reconstruct_reports_l1_with_the_background_motion(model, tmp_path, capsys):
    """``fomm-lab reconstruct`` with a TPSMM checkpoint: L1 as the authors' reconstruction.py computes it (frame 0
    is the source; driving keypoints as detected; the background predictor's affine for each frame)."""
    with np.load(GOLDEN / "tiny-vox-golden.npz") as data:
        frames = [data["source"], *data["driving"]]  # the fixture's face crop, then its moved copies
    video = tmp_path / "data" / "test" / "clip"
    video.mkdir(parents=True)
    (tmp_path / "data" / "train").mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(video / f"{i:03d}.png")
    code = main(["reconstruct", "--config", str(YAML), "--checkpoint", str(CHECKPOINT), "--data",
                 str(tmp_path / "data" / "test"), "--out", str(tmp_path / "eval"), "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "eval" / "reconstruction.csv").open()))
    assert rows[0]["video"] == "clip" and int(rows[0]["frames"]) == len(frames)

    full = load_tpsmm(YAML, CHECKPOINT, device="cpu", bg_predictor=True).networks
    assert full.bg_predictor is not None
    x = torch.from_numpy(np.stack(frames).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        source = x[:1]
        kp_source, kp_driving = full.kp_detector(source), full.kp_detector(x)
        motion_in = full.dense_motion_network.prepare(source, kp_source)

        def l1(bg_param):
            motion = full.dense_motion_network(motion_in, kp_driving, bg_param=bg_param)
            prediction = full.inpainting_network(source, motion.deformation, motion.occlusion)
            return (prediction - x).abs().mean(dim=(1, 2, 3))

        with_bg = l1(full.bg_predictor(source.expand(len(x), -1, -1, -1), x))
        without_bg = l1(None)
    assert float(rows[0]["l1"]) == pytest.approx(float(with_bg.mean()), abs=2e-5)
    assert abs(float(with_bg.mean()) - float(without_bg.mean())) > 1e-4  # the background motion is used
