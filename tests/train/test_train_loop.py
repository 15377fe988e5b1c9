"""Training a tiny FOMM from scratch on real face crops: the loss goes down, checkpoints are in the official
format and load strictly, resuming continues exactly, fine-tuning starts from a registry checkpoint, and the
trained model is evaluated (``reconstruct``) and used (``animate-pairs``).

The VGG19 of the perceptual loss has random weights (the ImageNet file cannot be downloaded here); it is
served by a local HTTP server as the registry entry's mirror, so the registry path is the one used.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from httpserver import LocalServer
from train_media import TINY_CONFIG, make_tiny_dataset, random_vgg19

from fomm_lab.cli import main
from fomm_lab.engine.checkpoint import read_checkpoint
from fomm_lab.engine.families import load_model
from fomm_lab.engine.model import FommModel
from fomm_lab.errors import ConfigError, TrainingError
from fomm_lab.geometry import Size
from fomm_lab.hub.registry import MODELS, VGG19_WEIGHTS, Mirror
from fomm_lab.io import probe_video, write_video
from fomm_lab.train import distributed
from fomm_lab.train.checkpoint import LAST, Optimizers, save_checkpoint
from fomm_lab.train.data import VideoFrames, dataset_layout
from fomm_lab.train.evaluate import ReconstructOptions, combine, keypoint_distance, reconstruct
from fomm_lab.train.model import build_training_networks
from fomm_lab.train.params import load_training_config
from fomm_lab.train.step import TrainingStep
from fomm_lab.train.trainer import TrainOptions, epoch_batches, flushed_denormals, lr_at, train

OFFICIAL_KEYS = {"generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_kp_detector",
                 "optimizer_discriminator", "epoch"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    make_tiny_dataset(root / "data", clips=True)
    return root


@pytest.fixture(scope="module")
def vgg_entry(workspace):
    """The registry's vgg19 entry with a local mirror serving random VGG19 weights (and their hash prefix)."""
    weights = random_vgg19(workspace / "vgg19-random.pth", upto=1).read_bytes()
    with LocalServer() as server:
        url = server.add("/models/vgg19-dcbb9e9d.pth", weights)
        yield dataclasses.replace(VGG19_WEIGHTS, mirrors=(Mirror(url),),
                                  sha256_prefix=hashlib.sha256(weights).hexdigest()[:8])


def options(workspace: Path, out: str, vgg_entry, **changes) -> TrainOptions:
    base = dict(config=TINY_CONFIG, data=workspace / "data", out=workspace / out, device="cpu", num_workers=0,
                batch_size=2, perceptual_weights=vgg_entry, cache_dir=workspace / "cache", progress=False,
                visualize_every=10, checkpoint_every=10)
    return TrainOptions(**{**base, **changes})


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(workspace, vgg_entry):
    result = train(options(workspace, "run", vgg_entry, max_steps=30))
    return result


def initial_model(seed: int = 0) -> FommModel:
    """The networks a run with ``seed`` starts from (built the same way, before any step)."""
    torch.manual_seed(seed)
    config = load_training_config(TINY_CONFIG)
    networks = build_training_networks(config)
    return FommModel(networks.kp_detector.eval(), networks.generator.eval(), config.model, torch.device("cpu"))


def test_thirty_steps_lower_the_reconstruction_loss(trained, workspace):
    log = read_log(trained.out)
    assert [entry["step"] for entry in log] == list(range(1, 31)) and trained.step == 30
    assert set(log[0]["losses"]) == {"perceptual", "equivariance_value", "equivariance_jacobian"}
    assert log[0]["lr"] == {"generator": 1e-3, "kp_detector": 1e-3, "discriminator": 1e-3}
    perceptual = [entry["losses"]["perceptual"] for entry in log]
    assert np.mean(perceptual[-10:]) < 0.9 * np.mean(perceptual[:5])
    # the held-out test videos, reconstructed from their first frames (the paper's measure)
    before = reconstruct(initial_model(), workspace / "data", workspace / "before.csv",
                         ReconstructOptions(progress=False)).mean_l1
    after = reconstruct(load_model(TINY_CONFIG, trained.checkpoint, device="cpu"), workspace / "data",
                        workspace / "after.csv", ReconstructOptions(progress=False)).mean_l1
    assert after < 0.85 * before, (before, after)


def test_checkpoint_is_in_the_official_format(trained):
    data = read_checkpoint(trained.checkpoint)  # torch.load(weights_only=True)
    assert set(data) == OFFICIAL_KEYS | {"fomm_lab"}
    steps_per_epoch = data["fomm_lab"]["step"] // max(data["epoch"], 1)
    assert data["fomm_lab"]["step"] == 30 and data["epoch"] == trained.epoch >= 1 and steps_per_epoch >= 1
    assert data["fomm_lab"]["batch_size"] == 2 and data["fomm_lab"]["world_size"] == 1
    assert all(len(data[k]["state"]) > 0 for k in ("optimizer_generator", "optimizer_kp_detector"))
    assert data["optimizer_generator"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert any(k.endswith("weight_orig") for k in data["discriminator"])  # sn: true
    model = load_model(TINY_CONFIG, trained.checkpoint, device="cpu")  # strict: every key, every shape
    assert model.frame_size == (64, 64)
    names = sorted(p.name for p in (trained.out / "train-vis").iterdir())
    assert {"step-00000010.png", "step-00000020.png", "step-00000030.png"} <= set(names)
    assert (trained.out / "config.yaml").read_bytes() == TINY_CONFIG.read_bytes()
    assert not [p for p in trained.out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_saved_model_reloads_identically(trained, tmp_path):
    # fuse=False: the checkpoint's networks as saved (state dicts with the checkpoint's names, unrounded outputs)
    first = load_model(TINY_CONFIG, trained.checkpoint, device="cpu", fuse=False)
    second = load_model(TINY_CONFIG, trained.checkpoint, device="cpu", fuse=False)
    frames = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def outputs(model):
        with torch.no_grad():
            kp = model.kp_detector(frames)
            return model.generator(frames[:1], kp_driving=kp, kp_source=model.kp_detector(frames[:1]))["prediction"]

    torch.testing.assert_close(outputs(first), outputs(second), rtol=0, atol=0)
    # saved again from the loaded networks: the same weights and outputs
    config = load_training_config(TINY_CONFIG)
    networks = build_training_networks(config)
    networks.kp_detector.load_state_dict(first.kp_detector.state_dict())
    networks.generator.load_state_dict(first.generator.state_dict())
    optimizers = Optimizers(*(torch.optim.Adam(getattr(networks, n).parameters())
                              for n in ("generator", "kp_detector", "discriminator")))
    from fomm_lab.train.checkpoint import RunState

    again = save_checkpoint(tmp_path / "again.pth.tar", networks, optimizers, RunState(epoch=3, step=30))
    torch.testing.assert_close(outputs(load_model(TINY_CONFIG, again, device="cpu", fuse=False)), outputs(first),
                               rtol=0, atol=0)


def test_resume_continues_exactly_where_the_run_stopped(workspace, vgg_entry):
    straight = train(options(workspace, "straight", vgg_entry, batch_size=4, max_steps=5, checkpoint_every=0))
    first = train(options(workspace, "resumed", vgg_entry, batch_size=4, max_steps=2, checkpoint_every=0))
    assert first.step == 2 and read_checkpoint(first.checkpoint)["fomm_lab"]["epoch_step"] == 2  # mid-epoch
    resumed = train(options(workspace, "resumed", vgg_entry, batch_size=4, max_steps=5, resume=True,
                            checkpoint_every=0))
    assert resumed.step == 5 and resumed.epoch == straight.epoch >= 1  # it went past an epoch's end
    assert [e["step"] for e in read_log(resumed.out)] == [1, 2, 3, 4, 5]
    a, b = read_checkpoint(straight.checkpoint), read_checkpoint(resumed.checkpoint)
    assert a["epoch"] == b["epoch"] and a["fomm_lab"] == b["fomm_lab"]
    for net in ("generator", "kp_detector"):
        for key, value in a[net].items():
            torch.testing.assert_close(b[net][key], value, rtol=1e-5, atol=1e-6, msg=f"{net}.{key}")
    for x, y in zip(read_log(straight.out), read_log(resumed.out)):
        assert x["losses"] == pytest.approx(y["losses"], rel=1e-4)


def test_an_existing_run_is_not_overwritten(trained, workspace, vgg_entry, capsys):
    with pytest.raises(TrainingError, match="already holds a training run"):
        train(options(workspace, "run", vgg_entry, max_steps=31))
    code = main(["train", "--config", str(TINY_CONFIG), "--data", str(workspace / "data"), "--out", str(trained.out),
                 "--max-steps", "31", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "continue it (--resume) or choose another run folder (--out RUN)" in err
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(options(workspace, "never-ran", vgg_entry, resume=True))


def test_fine_tuning_starts_from_a_registry_checkpoint(trained, workspace, vgg_entry, monkeypatch):
    served = trained.checkpoint.read_bytes()
    with LocalServer() as server:
        url = server.add("/checkpoints/vox-cpk.pth.tar", served)
        monkeypatch.setitem(MODELS, "vox", dataclasses.replace(MODELS["vox"], mirrors=(Mirror(url),), md5=None))
        result = train(options(workspace, "fine-tuned", vgg_entry, checkpoint="vox", max_steps=0))
        assert len(server.hits("/checkpoints/vox-cpk.pth.tar")) == 1
    cached = workspace / "cache" / MODELS["vox"].filename
    assert cached.read_bytes() == served  # fetched through the registry into the cache
    start, source = read_checkpoint(result.checkpoint), read_checkpoint(trained.checkpoint)
    assert start["fomm_lab"]["step"] == 0 and start["epoch"] == 0  # a new run ...
    for net in ("generator", "kp_detector", "discriminator"):
        for key, value in source[net].items():
            torch.testing.assert_close(start[net][key], value, rtol=0, atol=0)  # ... from those weights
    assert all(len(start[k]["state"]) == 0 for k in ("optimizer_generator", "optimizer_kp_detector"))


def denormal_survives() -> bool:
    """Whether a product of two normal floats that lands below 1.2e-38 stays nonzero (not flushed)."""
    return bool((torch.tensor([1e-20]) * torch.tensor([1e-20])).item() != 0)


def test_denormals_are_flushed_while_training_and_only_then(workspace, vgg_entry, monkeypatch, tmp_path):
    assert denormal_survives()
    with flushed_denormals():
        assert not denormal_survives()
    assert denormal_survives()
    seen = []
    step = TrainingStep.__call__

    def watched(self, *args, **kwargs):
        seen.append(denormal_survives())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(TrainingStep, "__call__", watched)
    train(options(workspace, str(tmp_path / "run"), vgg_entry, max_steps=2))
    assert seen == [False, False] and denormal_survives()


def test_adversarial_config_trains_the_discriminator(workspace, vgg_entry, tmp_path):
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["train_params"]["loss_weights"]["generator_gan"] = 1
    raw["model_params"]["discriminator_params"]["use_kp"] = True
    adv = tmp_path / "tiny-adv.yaml"
    adv.write_text(yaml.safe_dump(raw))
    result = train(options(workspace, "adv", vgg_entry, config=adv, max_steps=2))
    log = read_log(result.out)
    assert set(log[-1]["losses"]) == {"perceptual", "equivariance_value", "equivariance_jacobian", "gen_gan",
                                      "feature_matching", "disc_gan"}
    data = read_checkpoint(result.checkpoint)
    torch.manual_seed(0)
    fresh = build_training_networks(load_training_config(adv)).discriminator.state_dict()
    assert any(not torch.equal(fresh[k], data["discriminator"][k]) for k in fresh if k.endswith("weight_orig"))
    assert len(data["optimizer_discriminator"]["state"]) > 0
    assert data["discriminator"]["discs.1.down_blocks.0.conv.weight_orig"].shape[1] == 3 + 10  # image + heatmaps


def test_a_pixel_only_config_trains_the_generator_on_the_pixel_loss(workspace, vgg_entry, tmp_path):
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["train_params"]["loss_weights"].update(perceptual=0, equivariance_value=0, equivariance_jacobian=0, pixel=10)
    pixel = tmp_path / "tiny-pixel.yaml"
    pixel.write_text(yaml.safe_dump(raw))
    result = train(options(workspace, "pixel", vgg_entry, config=pixel, max_steps=2))
    log = read_log(result.out)
    assert set(log[-1]["losses"]) == {"pixel"} and log[-1]["losses"]["pixel"] > 0
    fresh = initial_model().generator.state_dict()
    trained = read_checkpoint(result.checkpoint)["generator"]
    assert any(not torch.equal(fresh[k], trained[k]) for k in fresh if k.endswith("weight"))


def test_the_keypoint_prior_is_a_logged_loss_and_needs_two_keypoints(workspace, vgg_entry, tmp_path):
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["train_params"]["loss_weights"].update(keypoint_prior=10, keypoint_distance=3)  # wider than the frame
    prior = tmp_path / "tiny-prior.yaml"
    prior.write_text(yaml.safe_dump(raw))
    result = train(options(workspace, "prior", vgg_entry, config=prior, max_steps=1))
    assert read_log(result.out)[-1]["losses"]["keypoint_prior"] > 0
    raw["model_params"]["common_params"]["num_kp"] = 1
    prior.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="keypoint_prior is 10 but the model has 1 keypoint"):
        train(options(workspace, "prior-one", vgg_entry, config=prior, max_steps=1))
    assert not (workspace / "prior-one").exists()


def test_a_diverged_step_stops_before_any_weight_changes(tmp_path):
    config = load_training_config(TINY_CONFIG)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, loss_weights=dataclasses.replace(
        config.train.loss_weights, perceptual=())))
    networks = build_training_networks(config)
    networks.train(True)
    optimizers = Optimizers(*(torch.optim.Adam(getattr(networks, n).parameters())
                              for n in ("generator", "kp_detector", "discriminator")))
    before = {k: v.clone() for k, v in networks.generator.state_dict().items()}
    step = TrainingStep(config, networks, optimizers, None, distributed.Process(), last_checkpoint=tmp_path / LAST)
    source = torch.rand(2, 3, 64, 64)
    driving = source.clone()
    driving[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingError, match=r"the loss became nan at step 8 .*resume from the last checkpoint"):
        step(source, driving, 7)
    after = networks.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith(("running_mean", "running_var",
                                                                                     "num_batches_tracked")))


def test_schedule_and_sharding():
    assert lr_at(2e-4, (60, 90), 0) == 2e-4 and lr_at(2e-4, (60, 90), 59) == 2e-4
    assert lr_at(2e-4, (60, 90), 60) == pytest.approx(2e-5) and lr_at(2e-4, (60, 90), 95) == pytest.approx(2e-6)
    ranks = [distributed.Process(rank=r, world_size=2) for r in range(2)]
    shards = [epoch_batches(10, epoch=3, seed=1, global_batch=4, process=p) for p in ranks]
    assert len(shards[0]) == len(shards[1]) == 4 and not set(shards[0]) & set(shards[1])  # 2 batches, disjoint
    alone = epoch_batches(10, epoch=3, seed=1, global_batch=4, process=distributed.Process())
    assert alone[:2] + alone[4:6] == shards[0] and alone[2:4] + alone[6:8] == shards[1]
    assert epoch_batches(10, epoch=3, seed=1, global_batch=4, process=distributed.Process(), skip=1) == alone[4:]
    assert epoch_batches(10, epoch=4, seed=1, global_batch=4, process=distributed.Process()) != alone


# ------------------------------------------------------------------------------------ evaluation


def test_reconstruct_writes_per_video_and_mean_l1(trained, workspace, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["reconstruct", "--config", str(TINY_CONFIG), "--checkpoint", str(trained.checkpoint),
                 "--data", str(workspace / "data" / "test"), "--out", str(out), "--side-by-side", "-q"])
    assert code == 0, capsys.readouterr().err
    assert "mean L1" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "reconstruction.csv").open()))
    videos = dataset_layout(workspace / "data").test
    assert [r["video"] for r in rows] == [v.name for v in videos] + ["mean (frames)", "mean (videos)"]
    per_video = rows[:-2]
    frames = [int(r["frames"]) for r in per_video]
    l1 = [float(r["l1"]) for r in per_video]
    assert all(0 < x < 1 for x in l1)
    assert float(rows[-2]["l1"]) == pytest.approx(np.average(l1, weights=frames), abs=1e-5)
    assert float(rows[-1]["l1"]) == pytest.approx(np.mean(l1), abs=1e-5)
    for video, count in zip(videos, frames):
        side = out / f"{video.name if video.is_dir() else video.stem}.mp4"
        info = probe_video(side)
        assert info.width == 128 and info.frame_count == count  # ground truth | reconstruction


def test_reconstruct_akd_needs_face_alignment_weights(trained, workspace, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no face-alignment weights there
    code = main(["reconstruct", "--config", str(TINY_CONFIG), "--checkpoint", str(trained.checkpoint),
                 "--data", str(workspace / "data"), "--out", str(tmp_path / "eval"), "--akd", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "face-alignment's weights are not in" in err and "--download-face-weights" in err
    assert not (tmp_path / "eval" / "reconstruction.csv").exists()


def test_keypoint_distance_arithmetic():
    real = [np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[1.0, 1.0], [1.0, 1.0]]), None, np.zeros((2, 2))]
    fake = [np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 2.0], [4.0, 5.0]]), np.zeros((2, 2)), None]
    kd = keypoint_distance(real, fake)
    assert kd.akd == pytest.approx((2.5 + 3.0) / 2)  # frame means: (0 + 5) / 2 and (1 + 5) / 2
    assert kd.frames == 2 and kd.real == 3 and kd.missing == pytest.approx(1 / 3)  # no face generated in 1 of 3
    other = keypoint_distance([np.ones((2, 2))], [np.ones((2, 2)) + [3.0, 4.0]])
    both = combine([kd, other])
    assert both.akd == pytest.approx((2.5 + 3.0 + 5.0) / 3) and both.missing == pytest.approx(1 / 4)
    empty = keypoint_distance([None], [None])
    assert np.isnan(empty.akd) and np.isnan(empty.missing)
    with pytest.raises(ValueError):
        keypoint_distance([np.zeros((2, 2))], [np.zeros((3, 2))])


def test_animate_pairs_runs_each_pair_and_reports_failures(trained, workspace, tmp_path, capsys):
    layout = dataset_layout(workspace / "data")
    folder = layout.test[0]
    photo = sorted(layout.train[0].iterdir())[0]
    shutil.copytree(workspace / "data", tmp_path / "data")
    clip = write_video(tmp_path / "data" / "drive.mp4", VideoFrames(layout.test[-1], Size.square(64)).frames(), 25,
                       progress=False)
    pairs = tmp_path / "data" / "pairs.csv"
    data = workspace / "data"  # copied: the CSV's paths are relative to its own folder
    pairs.write_text("distance,source,driving,frame\n"
                     f"0,{folder.relative_to(data)},{layout.train[1].relative_to(data)},0\n"
                     f"0,{photo.relative_to(data)},{clip.name},0\n"
                     f"0,{photo.relative_to(data)},test/missing.mp4,0\n")
    out = tmp_path / "animations"
    argv = ["animate-pairs", "--pairs", str(pairs), "--out", str(out), "--config", str(TINY_CONFIG),
            "--checkpoint", str(trained.checkpoint), "--device", "cpu", "--dtype", "float32", "-q"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "2 written, 0 already there, 1 failed" in captured.out
    assert "line 4" in captured.err and "missing.mp4" in captured.err
    first = out / f"{folder.name}-{layout.train[1].name}.mp4"
    second = out / f"{photo.stem}-{clip.stem}.mp4"
    assert probe_video(first).frame_count == len(list(layout.train[1].iterdir()))
    assert probe_video(second).size == (64, 64)
    assert main(argv) == 1  # again: the two done pairs are skipped, the bad one fails again
    assert "0 written, 2 already there, 1 failed" in capsys.readouterr().out
