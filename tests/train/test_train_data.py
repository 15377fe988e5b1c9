"""Training data: the official dataset layout, its errors, pair sampling, augmentations and the yaml sections."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from clips import make_test_video
from train_media import TINY_CONFIG, astronaut_video, make_tiny_dataset, write_frames

from fomm_lab.engine.config import available_configs, load_config, parse_config
from fomm_lab.errors import ConfigError, DatasetError
from fomm_lab.geometry import Size
from fomm_lab.train import augment
from fomm_lab.train.augment import Augmentation
from fomm_lab.train.data import PairDataset, VideoFrames, dataset_layout, identity, open_videos
from fomm_lab.train.params import (
    AugmentationParams,
    CropParams,
    FlipParams,
    JitterParams,
    ResizeParams,
    RotationParams,
    load_training_config,
    training_config,
)

SIZE = Size.square(64)


def numbered_frames(folder: Path, count: int, size: int = 64) -> Path:
    """Frames whose red channel is the frame number * 10 (so a sample says which frames it holds)."""
    frames = []
    for i in range(count):
        frame = np.zeros((size, size, 3), np.uint8)
        frame[..., 0] = 10 * i
        frame[..., 1] = np.arange(size, dtype=np.uint8)[None, :]  # a left-to-right ramp (shows flips)
        frames.append(frame)
    return write_frames(folder, frames)


# ----------------------------------------------------------------------------------------- layout


def test_layout_lists_train_and_test_videos(tmp_path):
    root = make_tiny_dataset(tmp_path / "data", train=3, test=1)
    make_test_video(root / "train" / "zz-clip.mp4", frames=6, size=(64, 64))
    (root / "train" / ".zz-clip.mp4.1234.part.mp4").write_bytes(b"unfinished")  # hidden: ignored
    layout = dataset_layout(root)
    assert [p.name for p in layout.train] == ["face0#0", "face0#2", "face1#1", "zz-clip.mp4"]
    assert [p.name for p in layout.test] == ["held-out0"]
    split = dataset_layout(root / "test")  # a split folder itself (fomm-lab reconstruct --data DIR/test)
    assert split.test == layout.test and split.train == []


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("file", "is a file, not a folder holding train/ and test/"),
    ("no-test", "has no test/ folder"),
    ("no-splits", "has no train/ or test/ folder"),
    ("empty-train", "train holds no videos"),
    ("stray-file", "notes.txt is neither a folder of frames nor a video file"),
    ("stray-frame", "(a frame belongs in a folder of its video's frames)"),
])
def test_bad_layouts_name_the_problem(tmp_path, case, expected):
    root = tmp_path / "data"
    if case == "file":
        root.write_text("not a folder")
    elif case != "missing":
        root.mkdir()
    if case in ("no-test", "empty-train", "stray-file", "stray-frame"):
        (root / "train").mkdir()
        if case != "no-test":
            (root / "test").mkdir()
    if case in ("stray-file", "stray-frame"):
        astronaut_video(root / "train" / "ok", frames=3)
        (root / "train" / ("notes.txt" if case == "stray-file" else "0001.png")).write_text("x")
    with pytest.raises(DatasetError) as info:
        dataset_layout(root)
    message = str(info.value)
    assert expected in message
    if case in ("missing", "no-splits", "empty-train"):
        assert "fomm-lab prepare-data" in message  # says how to make one


def test_reconstruction_needs_test_videos(tmp_path):
    root = make_tiny_dataset(tmp_path / "data", train=2, test=0)
    with pytest.raises(DatasetError, match=r"test holds no videos"):
        dataset_layout(root, need_test=True)


def test_mis_shaped_frames_are_named(tmp_path):
    folder = astronaut_video(tmp_path / "train" / "clip", frames=4, size=64)
    with pytest.raises(DatasetError) as info:
        VideoFrames(folder, Size.square(128))
    assert f"{folder / '0000.png'}" in str(info.value) and "64x64" in str(info.value) and "128x128" in str(info.value)
    # a later frame of another size: named when it is read
    cv2.imwrite(str(folder / "0002.png"), np.zeros((32, 48, 3), np.uint8))
    video = VideoFrames(folder, SIZE)
    assert video.read([0, 1])[1].shape == (64, 64, 3)
    with pytest.raises(DatasetError, match=r"0002\.png is 48x32 but the config's dataset_params\.frame_shape is 64x64"):
        video.read([2])
    # an mp4 of the wrong size, and one that is not a video at all
    small = make_test_video(tmp_path / "small.mp4", frames=5, size=(64, 48))
    with pytest.raises(DatasetError, match=r"small\.mp4 is 64x48"):
        VideoFrames(small, SIZE)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 2000)
    with pytest.raises(DatasetError, match=r"broken\.mp4 cannot be read"):
        VideoFrames(broken, SIZE)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"empty holds no frames"):
        VideoFrames(empty, SIZE)


def test_open_videos_stops_at_the_first_bad_one(tmp_path):
    good = astronaut_video(tmp_path / "a", frames=3)
    bad = astronaut_video(tmp_path / "b", frames=3, size=48)
    with pytest.raises(DatasetError, match=str(bad / "0000.png")):
        open_videos([good, bad], SIZE, progress=False)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_files_are_read_frame_exactly(tmp_path, suffix):
    from fomm_lab.io import read_video

    clip = make_test_video(tmp_path / f"clip{suffix}", frames=9, size=(64, 64))
    video = VideoFrames(clip, SIZE)
    assert video.frame_count == 9
    with read_video(clip) as reader:
        decoded = list(reader)
    picked = video.read([7, 2, 2])
    for got, index in zip(picked, [7, 2, 2]):
        np.testing.assert_array_equal(got, decoded[index])
    assert len(list(video.frames())) == 9


# ------------------------------------------------------------------------------------- sampling


def test_pairs_are_ordered_in_time_and_reproducible(tmp_path):
    video = VideoFrames(numbered_frames(tmp_path / "v", 20), SIZE)
    dataset = PairDataset([video], size=SIZE, num_repeats=50, seed=3)
    assert len(dataset) == 50
    firsts = []
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["source"].shape == (3, 64, 64) and item["source"].dtype == np.float32
        assert 0 <= item["source"].min() and item["driving"].max() <= 1
        src, drv = (round(float(item[k][0, 0, 0]) * 255 / 10) for k in ("source", "driving"))
        assert 0 <= src <= drv < 20  # two frames of the video, the source not later than the driving frame
        firsts.append((src, drv))
    assert len(set(firsts)) > 20  # many different pairs
    again = PairDataset([video], size=SIZE, num_repeats=50, seed=3)
    np.testing.assert_array_equal(again[17]["driving"], dataset[17]["driving"])
    dataset.set_epoch(1)
    assert [tuple(dataset[i]["source"][0, 0, :1]) for i in range(10)] != [
        tuple(again[i]["source"][0, 0, :1]) for i in range(10)]  # another epoch, other samples
    with pytest.raises(IndexError):
        dataset[50]


def test_id_sampling_groups_videos_by_identity(tmp_path):
    names = ["id1#a#001", "id1#b#002", "id1#c#003", "id2#a#001", "solo"]
    videos = [VideoFrames(numbered_frames(tmp_path / name, 4), SIZE) for name in names]
    assert [identity(n) for n in names] == ["id1", "id1", "id1", "id2", "solo"]
    assert identity("clip.mp4") == "clip" and identity("id7#x.mp4") == "id7"
    by_id = PairDataset(videos, size=SIZE, id_sampling=True, num_repeats=30)
    assert by_id.identities == ["id1", "id2", "solo"] and len(by_id) == 90
    seen = {by_id[i]["name"] for i in range(0, 90, 3)}  # item 0 of each repeat: identity id1
    assert seen == {"id1#a#001", "id1#b#002", "id1#c#003"}  # each of its videos gets picked
    assert len(PairDataset(videos, size=SIZE, num_repeats=2)) == 10


def test_augmentation_must_end_at_the_frame_shape(tmp_path):
    video = VideoFrames(numbered_frames(tmp_path / "v", 3), SIZE)
    with pytest.raises(DatasetError, match="crop_param.size"):
        PairDataset([video], size=SIZE, augmentation=Augmentation(AugmentationParams(crop=CropParams(size=(32, 32)))))
    with pytest.raises(DatasetError, match="resize_param without crop_param"):
        PairDataset([video], size=SIZE, augmentation=Augmentation(AugmentationParams(resize=ResizeParams())))


# ---------------------------------------------------------------------------------- augmentations


def clip_of(n: int = 3, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((size, size, 3), dtype=np.float32) for _ in range(n)]


def test_flips_are_exact():
    clip = clip_of()
    flipped = seen_time = seen_mirror = 0
    for seed in range(40):
        out = augment.flip(clip, FlipParams(horizontal_flip=True, time_flip=True), np.random.default_rng(seed))
        reversed_ = all(np.array_equal(a, b) or np.array_equal(a, b[:, ::-1]) for a, b in zip(out, clip[::-1]))
        mirrored = np.array_equal(out[0], clip[0][:, ::-1]) or np.array_equal(out[0], clip[-1][:, ::-1])
        seen_time += reversed_ and not np.array_equal(out[0], clip[0]) and not np.array_equal(out[0], clip[0][:, ::-1])
        seen_mirror += mirrored
        flipped += 1
    assert 8 < seen_time < 32 and 8 < seen_mirror < 32  # each about half the time, independently
    same = augment.flip(clip, FlipParams(), np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(same, clip))


def test_colour_jitter_definitions():
    frame = clip_of(1)[0]
    np.testing.assert_allclose(augment.adjust_brightness(frame, 0.5), frame * 0.5)
    grey = frame @ np.float32([0.299, 0.587, 0.114])
    np.testing.assert_allclose(augment.adjust_saturation(frame, 0.0), np.repeat(grey[..., None], 3, 2), atol=1e-6)
    np.testing.assert_allclose(augment.adjust_contrast(frame, 0.0), np.full_like(frame, grey.mean()), atol=1e-6)
    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0] = 1
    np.testing.assert_allclose(augment.adjust_hue(red, 1 / 3)[0, 0], [0, 1, 0], atol=1e-5)  # a third of a turn
    np.testing.assert_allclose(augment.adjust_hue(frame, 0.0), frame, atol=1e-5)
    # one set of factors for the whole clip, reproducible from the generator
    params = JitterParams(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
    a = augment.jitter([frame, frame], params, np.random.default_rng(5))
    b = augment.jitter([frame], params, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], a[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], frame) and a[0].min() >= 0 and a[0].max() <= 1


def test_geometric_augmentations():
    clip = clip_of(2, size=40)
    same = augment.rotate(clip, RotationParams(degrees=(0.0, 0.0)), np.random.default_rng(0))
    np.testing.assert_allclose(same[0], clip[0], atol=1e-5)
    turned = augment.rotate(clip, RotationParams(degrees=(90.0, 90.0)), np.random.default_rng(0))
    np.testing.assert_allclose(turned[0][5:-5, 5:-5], np.rot90(clip[0])[5:-5, 5:-5], atol=1e-5)
    cropped = augment.crop(clip, CropParams(size=(24, 30)), np.random.default_rng(1))
    assert cropped[0].shape == (24, 30, 3)
    window = [(y, x) for y in range(17) for x in range(11) if np.array_equal(clip[0][y:y + 24, x:x + 30], cropped[0])]
    assert len(window) == 1 and np.array_equal(clip[1][window[0][0]:window[0][0] + 24,
                                                       window[0][1]:window[0][1] + 30], cropped[1])
    padded = augment.crop(clip, CropParams(size=(48, 48)), np.random.default_rng(1))
    assert padded[0].shape == (48, 48, 3)
    resized = augment.resize(clip, ResizeParams(ratio=(0.5, 0.5)), np.random.default_rng(1))
    assert resized[0].shape == (20, 20, 3)
    full = Augmentation(AugmentationParams(resize=ResizeParams(ratio=(0.9, 1.1)), crop=CropParams(size=(40, 40))))
    assert all(f.shape == (40, 40, 3) for f in full(clip, np.random.default_rng(2)))


# ------------------------------------------------------------------------------------------ yaml


def test_every_shipped_config_reads_for_training():
    for name in available_configs():
        if load_config(name).paddle:  # PaddleGAN's inference configs (vox-512, vox-mobile-256): not for training
            with pytest.raises(ConfigError, match="PaddleGAN's layout"):
                load_training_config(name)
            continue
        config = load_training_config(name)
        assert config.train.num_epochs > 0 and config.train.batch_size > 0
        assert config.frame_size == (Size(64, 64) if name == "synthetic-64" else Size(256, 256))
    vox = load_training_config("vox-256")
    assert vox.train.loss_weights.perceptual == (10, 10, 10, 10, 10) and vox.train.scales == (1, 0.5, 0.25, 0.125)
    assert vox.train.epoch_milestones == (60, 90) and vox.train.num_repeats == 75
    assert vox.discriminator.sn and not vox.discriminator.use_kp
    adv = load_training_config("vox-adv-256")
    assert adv.train.loss_weights.generator_gan == 1 and adv.discriminator.use_kp
    mgif = load_training_config("mgif-256").dataset.augmentation
    assert mgif.crop == CropParams(size=(256, 256)) and mgif.resize == ResizeParams(ratio=(0.9, 1.1))


def edited(tmp_path, change) -> Path:
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    change(raw)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_perceptual_zero_disables_the_perceptual_loss(tmp_path):
    path = edited(tmp_path, lambda raw: raw["train_params"]["loss_weights"].update(perceptual=0))
    weights = load_training_config(path).train.loss_weights
    assert weights.perceptual == () and not weights.uses_perceptual


def test_the_pixel_loss_weight_is_read_and_off_by_default(tmp_path):
    assert load_training_config(TINY_CONFIG).train.loss_weights.pixel == 0  # the paper's losses only
    path = edited(tmp_path, lambda raw: raw["train_params"]["loss_weights"].update(pixel=5))
    assert load_training_config(path).train.loss_weights.pixel == 5
    path = edited(tmp_path, lambda raw: raw["train_params"]["loss_weights"].update(pixel=[1, 2]))
    with pytest.raises(ConfigError, match=r"loss_weights.pixel must be a number"):
        load_training_config(path)


def test_the_keypoint_prior_is_read_off_by_default_and_checked(tmp_path):
    weights = load_training_config(TINY_CONFIG).train.loss_weights
    assert weights.keypoint_prior == 0 and weights.keypoint_distance == 0.1  # the paper's losses only
    path = edited(tmp_path, lambda raw: raw["train_params"]["loss_weights"].update(keypoint_prior=10,
                                                                                   keypoint_distance=0.2))
    weights = load_training_config(path).train.loss_weights
    assert (weights.keypoint_prior, weights.keypoint_distance) == (10, 0.2)
    path = edited(tmp_path, lambda raw: raw["train_params"]["loss_weights"].update(keypoint_distance=0))
    with pytest.raises(ConfigError, match=r"loss_weights.keypoint_distance must be more than 0"):
        load_training_config(path)


def test_the_equivariance_rotation_is_read_from_transform_params(tmp_path):
    assert load_training_config(TINY_CONFIG).train.transform_params.rotation == 0  # the paper's transform
    path = edited(tmp_path, lambda raw: raw["train_params"]["transform_params"].update(rotation=35))
    assert load_training_config(path).train.transform_params.rotation == 35
    path = edited(tmp_path, lambda raw: raw["train_params"]["transform_params"].update(rotation="wide"))
    with pytest.raises(ConfigError, match=r"transform_params.rotation must be a number"):
        load_training_config(path)


@pytest.mark.parametrize("change, expected", [
    (lambda raw: raw["train_params"].update(batch_sise=3), r"train_params has unknown parameter\(s\) batch_sise"),
    (lambda raw: raw["train_params"].pop("lr_generator"), r"train_params is missing lr_generator"),
    (lambda raw: raw["train_params"].update(num_epochs="ten"), r"train_params.num_epochs must be a whole number"),
    (lambda raw: raw["train_params"].update(scales=[1, 2]), r"train_params.scales\[1\] must be in \(0, 1\]"),
    (lambda raw: raw["train_params"]["loss_weights"].update(perceptual=[1] * 6), r"has 6 weights but VGG19 gives 5"),
    (lambda raw: (raw["train_params"]["loss_weights"].update(generator_gan=1, feature_matching=[1, 1])),
     r"feature_matching has 2 weights but the discriminator has 4 blocks"),
    (lambda raw: raw["dataset_params"]["augmentation_params"].update(blur_param={}), r"unknown part\(s\) blur_param"),
    (lambda raw: raw["dataset_params"]["augmentation_params"]["jitter_param"].update(hue=0.7),
     r"jitter_param.hue must be in \[0, 0.5\]"),
    (lambda raw: raw["dataset_params"].update(frame_shape=[64, 64]),
     r"frame_shape must be \[height, width, channels\]"),
    (lambda raw: raw.pop("train_params"), r"has no train_params"),
])
def test_bad_training_sections_name_file_and_key(tmp_path, change, expected):
    path = edited(tmp_path, change)
    with pytest.raises(ConfigError, match=expected) as info:
        load_training_config(path)
    assert str(path) in str(info.value)


def test_paddle_configs_are_refused_for_training():
    config = parse_config({"model": {"common_params": {"num_kp": 10}, "generator": {
        "kp_detector_cfg": {"block_expansion": 32, "max_features": 1024, "num_blocks": 5, "temperature": 0.1},
        "generator_cfg": {"block_expansion": 64, "max_features": 512, "num_down_blocks": 2,
                          "num_bottleneck_blocks": 6,
                          "dense_motion_params": {"block_expansion": 64, "max_features": 1024, "num_blocks": 5}}}}},
        "paddle-vox")
    with pytest.raises(ConfigError, match="PaddleGAN's layout"):
        training_config(config)
