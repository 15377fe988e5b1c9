"""The synthetic motion dataset (:mod:`fomm_lab.train.synthetic`): the same files from the same seed, the official
layout the trainer reads, and a stored motion that is the motion on screen; the proof's scores
(:mod:`fomm_lab.train.proof`) read that motion correctly."""

from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np
import pytest

from fomm_lab.cli import main
from fomm_lab.errors import DatasetError, FommLabError
from fomm_lab.geometry import Size
from fomm_lab.train.data import PairDataset, dataset_layout, open_videos
from fomm_lab.train.proof import carry
from fomm_lab.train.synthetic import (
    MOTION_FILE,
    YIQ,
    ClipMaker,
    SyntheticOptions,
    iter_clips,
    make_synthetic_dataset,
    random_motion,
    random_vgg19,
    read_motion,
    recolour,
    tps_displacement,
)
from fomm_lab.train.vgg import load_vgg19

SMALL = SyntheticOptions(frames=6, train_clips=1, test_clips=1, train_images=("chelsea", "coffee"),
                         test_images=("astronaut",), progress=False)


def digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_the_dataset_is_the_official_layout_and_follows_from_its_seed(tmp_path):
    result = make_synthetic_dataset(tmp_path / "a", SMALL)
    assert [p.name for p in result.train] == ["chelsea-0", "coffee-0"] and [p.name for p in result.test] == [
        "astronaut-0"]
    layout = dataset_layout(tmp_path / "a", need_test=True)
    videos = open_videos(layout.train, Size.square(64), progress=False)
    assert [v.frame_count for v in videos] == [6, 6]  # motion.json beside the frames is not a frame
    sample = PairDataset(videos, size=Size.square(64))[0]
    assert sample["source"].shape == (3, 64, 64)
    make_synthetic_dataset(tmp_path / "b", SMALL)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    make_synthetic_dataset(tmp_path / "c", dataclasses.replace(SMALL, seed=1))
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    only_test = make_synthetic_dataset(tmp_path / "d", dataclasses.replace(SMALL, splits=("test",)))
    assert not only_test.train and digest(tmp_path / "d" / "test") == digest(tmp_path / "a" / "test")
    again = make_synthetic_dataset(tmp_path / "a", SMALL)  # existing clips are kept
    assert again.train == result.train and digest(tmp_path / "a") == digest(tmp_path / "b")


def test_training_clips_are_recoloured_and_held_out_clips_keep_their_colours(tmp_path):
    rng = np.random.default_rng(0)
    grey = np.repeat(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], 3, axis=2).repeat(8, axis=0)
    duotone = recolour(grey, rng)
    assert np.ptp(duotone - duotone.mean(axis=-1, keepdims=True)) > 0.1  # a grey photo gains colour ...
    assert np.all(np.diff(duotone[0].mean(axis=-1)) > 0)  # ... and keeps its brightness order
    colour = np.random.default_rng(1).uniform(0.3, 0.7, (8, 8, 3)).astype(np.float32)
    turned = recolour(colour, rng)
    assert np.abs(turned - colour).max() > 0.05  # the chroma turned
    np.testing.assert_allclose(turned @ YIQ[0], colour @ YIQ[0], atol=1e-5)  # the luma kept (nothing clipped here)
    make_synthetic_dataset(tmp_path / "on", dataclasses.replace(SMALL, recolour=True))
    make_synthetic_dataset(tmp_path / "off", SMALL)
    assert digest(tmp_path / "on" / "test") == digest(tmp_path / "off" / "test")
    for clip in ("chelsea-0", "coffee-0"):
        on, off = (cv2.imread(str(tmp_path / kind / "train" / clip / "0000.png")) for kind in ("on", "off"))
        assert np.abs(on.astype(int) - off.astype(int)).max() > 30
        assert read_motion(tmp_path / "on" / "train" / clip).affine.tolist() == read_motion(
            tmp_path / "off" / "train" / clip).affine.tolist()  # the same motion, other colours


def test_the_stored_motion_is_the_motion_on_screen(tmp_path):
    options = dataclasses.replace(SMALL, frames=12, warp=0.0, rotation=0.0, zoom=0.0, train_images=(),
                                  test_images=("astronaut", "moon"))
    make_synthetic_dataset(tmp_path, options)
    for clip in iter_clips(tmp_path / "test"):
        motion = read_motion(clip)
        frames = [cv2.imread(str(p))[..., ::-1] for p in sorted(clip.glob("*.png"))]
        assert motion.affine.shape == (12, 2, 3) and motion.tps_offsets.shape == (12, 9, 2)
        # a patch of the object's middle, cut from frame 0 and found in every frame (to a pixel), sits where the
        # stored translation says
        centre = motion.to_pixels(np.zeros((1, 2)), 0)[0]
        x, y = (int(round(c)) for c in centre)
        template = frames[0][y - 5:y + 6, x - 5:x + 6].astype(np.float32)
        for f, frame in enumerate(frames):
            score = cv2.matchTemplate(frame.astype(np.float32), template, cv2.TM_CCOEFF_NORMED)
            found = np.array(np.unravel_index(int(score.argmax()), score.shape)[::-1]) + 5
            expected = motion.to_pixels(np.zeros((1, 2)), f)[0] - (centre - (x, y))
            assert np.abs(found - expected).max() <= 1.0, (clip.name, f, found, expected)
        # the motion is smooth and really moves: steps of a few pixels (12 frames here, 32 in the dataset), a path
        # of several
        path = np.array([motion.to_pixels(np.zeros((1, 2)), f)[0] for f in range(12)])
        assert np.abs(np.diff(path, axis=0)).max() < 8 and np.ptp(path, axis=0).max() > 2


def test_the_thin_plate_spline_interpolates_its_control_points():
    rng = np.random.default_rng(0)
    control = rng.uniform(-1, 1, size=(6, 2))
    offsets = rng.normal(0, 0.1, size=(6, 2))
    assert np.allclose(tps_displacement(control, control, offsets), offsets, atol=1e-9)
    affine = control @ np.array([[0.1, 0.02], [-0.03, 0.05]]) + 0.2  # an affine field is reproduced everywhere
    points = rng.uniform(-1, 1, size=(20, 2))
    expected = points @ np.array([[0.1, 0.02], [-0.03, 0.05]]) + 0.2
    assert np.allclose(tps_displacement(points, control, affine), expected, atol=1e-9)


def test_keypoints_are_carried_by_the_true_motion(tmp_path):
    make_synthetic_dataset(tmp_path, dataclasses.replace(SMALL, train_images=()))
    motion = read_motion(next(iter_clips(tmp_path / "test")))
    points = np.array([[0.1, -0.2], [-0.3, 0.25]])
    assert np.allclose(carry(points, motion, 0), points)
    objects = (points - motion.affine[0, :, 2]) @ np.linalg.inv(motion.affine[0, :, :2]).T
    assert np.allclose(carry(points, motion, 4), objects @ motion.affine[4, :, :2].T + motion.affine[4, :, 2])
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match=MOTION_FILE):
        read_motion(tmp_path / "plain")


def test_random_vgg19_is_a_loadable_and_fixed_file(tmp_path):
    a, b = random_vgg19(tmp_path / "a.pth", layers=2), random_vgg19(tmp_path / "b.pth", layers=2)
    torch = __import__("torch")
    first, second = (torch.load(p, weights_only=True) for p in (a, b))
    assert list(first) == [f"features.{i}.{k}" for i in (0, 2, 5) for k in ("weight", "bias")]
    assert all(torch.equal(first[k], second[k]) for k in first)
    vgg = load_vgg19(a, 2)
    assert len(vgg.forward(torch.rand(1, 3, 16, 16))) == 2


def test_prepare_data_synthetic_from_the_command_line(tmp_path, capsys):
    assert main(["prepare-data", "--out", str(tmp_path / "none"), "-q"]) != 0
    assert "--synthetic" in capsys.readouterr().err
    assert main(["prepare-data", "--synthetic", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "x"), "-q"]) != 0
    assert "give no VIDEO" in capsys.readouterr().err
    with pytest.raises(FommLabError):  # the same check from Python
        make_synthetic_dataset(tmp_path / "tiny", dataclasses.replace(SMALL, size=8))


def test_prepare_data_synthetic_writes_the_whole_dataset(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["prepare-data", "--synthetic", "--out", str(out), "--size", "32", "-q"]) == 0
    assert "72 training and 6 held-out clips" in capsys.readouterr().out
    layout = dataset_layout(out, need_test=True)
    assert len(layout.train) == 72 and len(layout.test) == 6
    assert (out / "vgg19-random.pth").is_file()
    frame = cv2.imread(str(layout.test[0] / "0000.png"))
    assert frame.shape == (32, 32, 3)
    recoloured = tmp_path / "recoloured"
    assert main(["prepare-data", "--synthetic", "--recolour", "--out", str(recoloured), "--size", "32", "-q"]) == 0
    for split, clip, same in (("train", "camera-0", False), ("test", "astronaut-0", True)):
        frames = [(root / split / clip / "0000.png").read_bytes() for root in (out, recoloured)]
        assert (frames[0] == frames[1]) == same  # training photos coloured, held-out ones as they are
        assert (out / split / clip / MOTION_FILE).read_text() == (recoloured / split / clip / MOTION_FILE).read_text()


def test_a_fixed_aspect_gives_every_mask_that_shape(tmp_path):
    options = dataclasses.replace(SMALL, aspect=(0.5, 0.5), rotation=0.0, warp=0.0)
    maker = ClipMaker(options)
    rng = np.random.default_rng(0)
    motion = random_motion(rng, options, "astronaut")
    texture, background, aspect = maker.appearance("astronaut", rng)
    assert aspect == 0.5
    white = np.ones_like(texture)
    mask = maker.render(motion, (white, np.zeros_like(background), aspect))[0].astype(np.float32)[..., 0] > 127
    ys, xs = np.nonzero(mask)
    assert np.ptp(ys) / np.ptp(xs) == pytest.approx(0.5, abs=0.08)  # unturned: the long axis is x
    drawn = [ClipMaker(SMALL).appearance("astronaut", np.random.default_rng(seed))[2] for seed in range(20)]
    assert 0.7 <= min(drawn) < max(drawn) <= 1.0  # the default: drawn per clip
    with pytest.raises(DatasetError, match="aspect"):
        make_synthetic_dataset(tmp_path / "bad", dataclasses.replace(SMALL, aspect=(0.9, 0.5)))


def test_prepare_data_synthetic_aspect_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["prepare-data", "--synthetic", "--aspect", "0.5", "--out", str(out), "--size", "32", "-q"]) == 0
    reference = make_synthetic_dataset(tmp_path / "ref", SyntheticOptions(size=32, aspect=(0.5, 0.5), recolour=False,
                                                                          splits=("test",), progress=False))
    for clip in reference.test:
        assert digest(clip) == digest(out / "test" / clip.name)  # the CLI is the option
    assert main(["prepare-data", "--synthetic", "--aspect", "1.5", "--out", str(tmp_path / "x"), "-q"]) != 0
    assert "aspect" in capsys.readouterr().err and not (tmp_path / "x" / "test").exists()


def test_prepare_data_synthetic_rotation_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["prepare-data", "--synthetic", "--rotation", "10", "--out", str(out), "--size", "32", "-q"]) == 0
    turns = [np.degrees(np.abs(np.arctan2(m.affine[:, 1, 0], m.affine[:, 0, 0]))).max()
             for m in map(read_motion, iter_clips(out / "train"))]
    assert max(turns) <= 10 + 1e-6 and max(turns) > 5  # every turn within the bound, and some near it
    assert main(["prepare-data", "--synthetic", "--rotation", "120", "--out", str(tmp_path / "x"), "-q"]) != 0
    assert "rotation" in capsys.readouterr().err and not (tmp_path / "x" / "test").exists()
