"""Training a Thin-Plate Spline Motion Model (``fomm_lab.train.tpsmm``): the authors' training sections read, the
paper's losses (warp and background losses, dropout of TPS transformations), steps that change the networks and
overfit a fixed batch, ``fomm-lab train`` writing checkpoints in the authors' layout that ``load_model`` animates,
``fomm-lab reconstruct`` evaluating them, resuming exactly, and the AVD second stage.

The tiny config is the golden fixture's yaml (tests/fixtures/tpsmm-golden/tiny-vox.yaml) at 64x64 with a
3-block dense-motion hourglass and a short schedule, written in tmp; the networks start from a checkpoint of
narrow random networks (ResNet-18 width 4, as the golden checkpoint), since a TPSMM built from scratch has the
authors' full ResNet-18s (11 M parameters each). The VGG19 has random weights (tests/train_media.random_vgg19).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from train_media import astronaut_frames, make_tiny_dataset, random_vgg19

from fomm_lab import Animator
from fomm_lab.cli import main
from fomm_lab.engine.families import load_model
from fomm_lab.engine.nets.tpsmm import dropout_softmax
from fomm_lab.engine.tpsmm.checkpoint import read_tpsmm_checkpoint as read_checkpoint
from fomm_lab.engine.tpsmm.model import TpsmmModel, Widths, build_tpsmm_networks
from fomm_lab.errors import CheckpointError, ConfigError, TrainingError
from fomm_lab.train import distributed
from fomm_lab.train.checkpoint import LAST
from fomm_lab.train.losses import background_loss, warp_loss
from fomm_lab.train.params import load_any_training_config
from fomm_lab.train.tpsmm import AvdTraining, TpsmmTraining, feature_warp_maps
from fomm_lab.train.vgg import VGG19Features

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "tpsmm-golden"
GOLDEN_YAML, GOLDEN_CHECKPOINT = GOLDEN / "tiny-vox.yaml", GOLDEN / "tiny-vox.pth.tar"
TRAINED_FOMM = Path(__file__).resolve().parents[1] / "fixtures" / "trained-synthetic" / "checkpoint.pth.tar"
NARROW = Widths(resnet=4, bg_resnet=4, avd_hidden=(16, 32, 64))
FIRST_STAGE_KEYS = {"kp_detector", "dense_motion_network", "inpainting_network", "bg_predictor", "optimizer",
                    "optimizer_bg_predictor", "epoch", "fomm_lab"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_raw(**train_changes) -> dict:
    raw = yaml.safe_load(GOLDEN_YAML.read_text())
    raw["dataset_params"]["frame_shape"] = [64, 64, 3]
    raw["model_params"]["dense_motion_params"]["num_blocks"] = 3  # 64 x 0.25 = 16 pixels halve 3 times
    raw["visualizer_params"]["kp_size"] = 1
    params = raw["train_params"]
    params.update(num_epochs=4, num_repeats=4, batch_size=2, epoch_milestones=[3], lr_generator=1e-3,
                  scales=[1, 0.5], checkpoint_freq=1, dropout_epoch=2, dropout_startp=0.2, dropout_maxp=0.4,
                  dropout_inc_epoch=1, bg_start=1)
    params["loss_weights"]["perceptual"] = [10]
    params.update(train_changes)
    raw["train_avd_params"].update(num_epochs=2, num_repeats=4, batch_size=2, epoch_milestones=[1], lr=1e-3,
                                   checkpoint_freq=1)
    return raw


def write_yaml(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tpsmm-train")
    config = write_yaml(root / "tiny-tpsmm.yaml", tiny_raw())
    torch.manual_seed(0)
    nets = build_tpsmm_networks(load_any_training_config(config).model, NARROW, avd=False, bg_predictor=True)
    seed = root / "narrow-random.pth.tar"
    torch.save({name: module.state_dict() for name, module in nets.named().items()}, seed)
    return {"root": root, "config": config, "seed": seed, "data": make_tiny_dataset(root / "data"),
            "vgg": random_vgg19(root / "vgg19-random.pth", upto=1)}


def cli_train(ws: dict[str, Path], out: str, *extra: str) -> int:
    return main(["train", "--config", str(ws["config"]), "--data", str(ws["data"]), "--out", str(ws["root"] / out),
                 "--vgg19", str(ws["vgg"]), "--workers", "0", "--device", "cpu", "--visualize-every", "3",
                 "--checkpoint-every", "0", "-q", *extra])


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def first_stage(workspace) -> Path:
    """A run of 6 steps: 4 per epoch, so epoch 0 (dropout p 0.2, no background) and 2 steps of epoch 1
    (dropout 0.4, background predictor and bg loss on)."""
    assert cli_train(workspace, "run", "--checkpoint", str(workspace["seed"]), "--max-steps", "6") == 0
    return workspace["root"] / "run"


def narrow_training(config: Path) -> tuple[TpsmmTraining, object, object]:
    family = TpsmmTraining(load_any_training_config(config), NARROW)
    torch.manual_seed(0)
    nets = family.build(None, None, False)
    family.train_mode(nets)
    return family, nets, family.optimizers(nets)


def astronaut_batch(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    frames = torch.from_numpy(np.stack(astronaut_frames(8, size))).permute(0, 3, 1, 2).float() / 255
    return frames[[0, 1]], frames[[4, 6]]


# ------------------------------------------------------------------------------------- config, losses


def test_the_authors_training_sections_are_read():
    config = load_any_training_config(GOLDEN_YAML)
    p = config.train
    assert (p.num_epochs, p.num_repeats, p.batch_size, p.lr_generator, p.bg_start) == (100, 75, 28, 2e-4, 10)
    assert p.loss_weights.perceptual == (10,) * 5 and p.loss_weights.warp_loss == 10 and p.loss_weights.bg == 10
    assert p.transform_params is not None and p.transform_params.points_tps == 5
    # the dropout probability: 0.1 raised by 0.3 every 10 epochs, at most 0.3, none from epoch 35
    assert [p.dropout_p(e) for e in (0, 3, 5, 6, 7, 34, 35)] == pytest.approx([0.1, 0.19, 0.25, 0.28, 0.3, 0.3, 0])
    assert config.avd is not None and (config.avd.lr, config.avd.random_scale, config.avd.batch_size) == (1e-3, 0.25,
                                                                                                          256)
    assert config.frame_size == (256, 256)  # frame_shape null: the size of the authors' vox demo


@pytest.mark.parametrize("change, expected", [
    (lambda raw: raw["train_params"].update(dropout_maxp=1.5), r"train_params.dropout_maxp is a probability"),
    (lambda raw: raw["train_params"]["loss_weights"].update(warp=1), r"loss_weights has unknown parameter\(s\) warp"),
    (lambda raw: raw["train_params"].pop("lr_generator"), r"train_params is missing lr_generator"),
    (lambda raw: raw["train_avd_params"].update(random_scale=2), r"train_avd_params.random_scale must be in"),
    (lambda raw: raw.pop("train_params"), r"has no train_params: TPSMM training"),
])
def test_bad_tpsmm_training_sections_name_file_and_key(tmp_path, change, expected):
    raw = tiny_raw()
    change(raw)
    path = write_yaml(tmp_path / "edited.yaml", raw)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_any_training_config(path)
    assert str(path) in str(caught.value)


def test_background_loss_is_zero_for_inverse_affines_only():
    theta = torch.tensor([[[1.1, 0.1, 0.05], [-0.05, 0.9, 0.02], [0, 0, 1]]])
    assert background_loss(theta, torch.linalg.inv(theta), 10).item() == pytest.approx(0, abs=1e-6)
    assert background_loss(theta, theta, 10).item() > 0.1
    batch = torch.cat([theta, torch.eye(3).unsqueeze(0)])  # the mean runs over the batch and the 9 entries
    assert background_loss(batch, batch, 1).item() == pytest.approx(background_loss(theta, theta, 1).item() / 2)


def test_warp_loss_trains_the_motion_not_the_encoder(workspace):
    family, nets, _ = narrow_training(workspace["config"])
    source, _ = astronaut_batch()
    inpainting = nets.inpainting_network
    encoded = inpainting.encode(source)
    grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="xy"), -1)
    masks = [torch.rand(2, 1, s, s) for s in (8, 16, 32, 64)]
    identity = grid.expand(2, 16, 16, 2).clone().requires_grad_(True)
    # the driving frame is the source and the flow the identity: the warped features are the driving ones
    targets, warped = feature_warp_maps(inpainting, encoded, source, identity, masks)
    assert [t.shape[-1] for t in targets] == [64, 32, 16, 8] and warp_loss(targets, warped, 10).item() < 1e-4
    shifted = (grid + torch.tensor([0.25, 0.0])).expand(2, 16, 16, 2).clone().requires_grad_(True)
    targets, warped = feature_warp_maps(inpainting, encoded, source, shifted, masks)
    loss = warp_loss(targets, warped, 10)
    assert loss.item() > 0.05
    loss.backward()
    assert shifted.grad is not None and shifted.grad.abs().sum() > 0  # the flow learns from it ...
    assert all(p.grad is None for p in inpainting.parameters())  # ... the encoder does not


def test_dropout_drops_whole_transformations_reproducibly():
    logits = torch.randn(64, 4, 8, 8)
    kept = dropout_softmax(logits, 0.5, torch.Generator().manual_seed(3))
    again = dropout_softmax(logits, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(kept, again)
    dropped = kept.flatten(2).amax(-1) == 0  # (N, K + 1): a transformation weighs 0 everywhere or nowhere
    assert not dropped[:, 0].any() and 0.35 < dropped[:, 1:].float().mean() < 0.65  # never the background
    torch.testing.assert_close(kept.sum(1), torch.ones(64, 8, 8), atol=1e-3, rtol=0)  # renormalised (+1e-6)


# ---------------------------------------------------------------------------------------------- steps


def test_a_step_changes_every_network_and_the_background_joins_at_bg_start(workspace):
    family, nets, optimizers = narrow_training(workspace["config"])
    step = family.step(nets, optimizers, VGG19Features(1), distributed.Process(), seed=0, last_checkpoint=None)
    source, driving = astronaut_batch()
    named = nets.named()

    def snapshot():
        return {name: [p.detach().clone() for p in module.parameters()] for name, module in named.items()}

    def changed(before):
        return {name for name, module in named.items()
                if any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters()))}

    before = snapshot()
    values, generated = step(source, driving, 0, 0)  # epoch 0 < bg_start 1: no background motion yet
    assert set(values) == {"perceptual", "equivariance_value", "warp_loss", "loss"}
    assert all(np.isfinite(v) for v in values.values())
    assert changed(before) == {"kp_detector", "dense_motion_network", "inpainting_network"}
    before = snapshot()
    values, generated = step(source, driving, 1, 1)
    assert set(values) == {"perceptual", "equivariance_value", "warp_loss", "bg", "loss"}
    assert all(np.isfinite(v) for v in values.values()) and values["bg"] >= 0
    assert changed(before) == set(named)  # the background predictor learns from epoch bg_start on
    assert generated.prediction.shape == (2, 3, 64, 64) and generated.kp_source.value.shape == (2, 15, 2)
    picture = family.picture({"source": source, "driving": driving}, generated)
    assert picture.shape == (2 * 64, 6 * 64, 3)  # source, transformed, driving, deformed, prediction, occlusion


def test_training_overfits_a_fixed_batch(workspace):
    family, nets, optimizers = narrow_training(workspace["config"])
    step = family.step(nets, optimizers, VGG19Features(1), distributed.Process(), seed=0, last_checkpoint=None)
    source, driving = astronaut_batch()
    log = [step(source, driving, i, 2)[0] for i in range(30)]  # epoch 2: no dropout, background on
    perceptual = [v["perceptual"] for v in log]
    total = [v["loss"] for v in log]
    assert np.mean(perceptual[-5:]) < 0.8 * np.mean(perceptual[:3]), perceptual
    assert np.mean(total[-5:]) < 0.8 * np.mean(total[:3]), total


def test_a_diverged_step_stops_before_any_weight_changes(workspace):
    family, nets, optimizers = narrow_training(workspace["config"])
    step = family.step(nets, optimizers, VGG19Features(1), distributed.Process(), seed=0, last_checkpoint=None)
    source, driving = astronaut_batch()
    driving[0, 0, 0, 0] = float("nan")
    before = [p.detach().clone() for p in nets.inpainting_network.parameters()]
    with pytest.raises(TrainingError, match="the loss became nan at step 3"):
        step(source, driving, 2, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, nets.inpainting_network.parameters()))


# ------------------------------------------------------------------------------------ fomm-lab train


def test_train_writes_the_authors_layout_that_load_model_animates(first_stage, workspace):
    data = read_checkpoint(first_stage / LAST)
    assert set(data) == FIRST_STAGE_KEYS
    assert data["fomm_lab"]["step"] == 6 and data["epoch"] == 1 and data["fomm_lab"]["epoch_step"] == 2
    assert data["optimizer"]["param_groups"][0]["weight_decay"] == 1e-4
    assert len(data["optimizer_bg_predictor"]["state"]) > 0  # stepped in epoch 1
    log = read_log(first_stage)
    assert [e["step"] for e in log] == list(range(1, 7))
    assert "bg" not in log[3]["losses"] and "bg" in log[4]["losses"]  # epoch 1 is bg_start
    assert log[0]["lr"] == {"generator": 1e-3, "bg_predictor": 1e-3}
    assert all(np.isfinite(e["loss"]) for e in log)
    assert (first_stage / "00000000-checkpoint.pth.tar").is_file()  # checkpoint_freq 1
    assert {"step-00000003.png", "step-00000006.png"} <= {p.name for p in (first_stage / "train-vis").iterdir()}
    seed = read_checkpoint(workspace["seed"])
    assert not torch.equal(seed["inpainting_network"]["final.weight"], data["inpainting_network"]["final.weight"])
    model = load_model(workspace["config"], first_stage / LAST, device="cpu")
    assert isinstance(model, TpsmmModel) and not model.has_avd  # the first stage has no AVD network
    source = astronaut_frames(1, 64)[0]
    frames = list(Animator(model, dtype="float32", smoothing=0).animate(source, astronaut_frames(4, 64, phase=1.0)))
    assert len(frames) == 4 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.1  # it moves with the driving frames


def test_reconstruct_reports_the_l1_of_a_trained_tpsmm(first_stage, workspace, tmp_path, capsys):
    code = main(["reconstruct", "--config", str(workspace["config"]), "--checkpoint", str(first_stage / LAST),
                 "--data", str(workspace["data"]), "--out", str(tmp_path), "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    assert "mean L1" in capsys.readouterr().out
    rows = list(csv.reader((tmp_path / "reconstruction.csv").open()))
    assert [r[0] for r in rows[1:]] == ["held-out0", "held-out1", "mean (frames)", "mean (videos)"]
    assert all(0 < float(r[2]) < 0.5 for r in rows[1:])


def test_resume_continues_exactly_where_the_run_stopped(first_stage, workspace):
    assert cli_train(workspace, "resumed", "--checkpoint", str(workspace["seed"]), "--max-steps", "3") == 0
    assert cli_train(workspace, "resumed", "--resume", "--max-steps", "6") == 0
    resumed = workspace["root"] / "resumed"
    assert [e["step"] for e in read_log(resumed)] == list(range(1, 7))
    a, b = read_checkpoint(first_stage / LAST), read_checkpoint(resumed / LAST)
    assert a["fomm_lab"] == b["fomm_lab"]
    for net in ("kp_detector", "dense_motion_network", "inpainting_network", "bg_predictor"):
        for key, value in a[net].items():
            torch.testing.assert_close(b[net][key], value, rtol=1e-5, atol=1e-6, msg=f"{net}.{key}")
    for x, y in zip(read_log(first_stage), read_log(resumed)):
        assert x["losses"] == pytest.approx(y["losses"], rel=1e-4)


def test_avd_stage_trains_the_avd_network_on_frozen_networks(first_stage, workspace):
    assert cli_train(workspace, "avd", "--avd", "--checkpoint", str(first_stage / LAST), "--max-steps", "5") == 0
    run = workspace["root"] / "avd"
    data, start = read_checkpoint(run / LAST), read_checkpoint(first_stage / LAST)
    assert set(data) == {"kp_detector", "dense_motion_network", "inpainting_network", "bg_predictor", "avd_network",
                         "optimizer_avd", "epoch", "fomm_lab"}
    for net in ("kp_detector", "dense_motion_network", "inpainting_network", "bg_predictor"):
        for key, value in start[net].items():  # frozen: weights and batch-norm statistics
            assert torch.equal(data[net][key], value), f"{net}.{key}"
    log = read_log(run)
    assert [e["step"] for e in log] == list(range(1, 6)) and log[0]["lr"] == {"avd_network": 1e-3}
    assert np.mean([e["loss"] for e in log[-2:]]) < log[0]["loss"]
    model = load_model(workspace["config"], run / LAST, device="cpu")
    assert model.has_avd
    source = astronaut_frames(1, 64)[0]
    frames = list(Animator(model, relative=False, avd=True, dtype="float32", smoothing=0).animate(
        source, astronaut_frames(3, 64, phase=1.0)))
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)
    # resuming the AVD run continues its own optimiser
    assert cli_train(workspace, "avd", "--avd", "--resume", "--max-steps", "6") == 0
    assert read_checkpoint(run / LAST)["fomm_lab"]["step"] == 6


def test_wrong_starting_points_get_one_clear_line(first_stage, workspace, capsys):
    assert cli_train(workspace, "avd-nothing", "--avd") == 1
    assert "the AVD stage trains the AVD network on a trained TPSMM" in capsys.readouterr().err
    assert cli_train(workspace, "fomm-start", "--checkpoint", str(TRAINED_FOMM)) == 1
    assert "is a First Order Motion Model checkpoint" in capsys.readouterr().err
    assert cli_train(workspace, "run", "--avd", "--resume") == 1  # a first-stage run is not an AVD one
    assert "has no avd_network: it is not one of an AVD run" in capsys.readouterr().err
    code = main(["train", "--config", "vox-256", "--data", str(workspace["data"]), "--out",
                 str(workspace["root"] / "fomm-avd"), "--avd", "-q"])
    assert code == 1 and "--avd trains the AVD network of a Thin-Plate Spline Motion Model" in capsys.readouterr().err


def test_the_golden_checkpoint_starts_both_stages():
    config = load_any_training_config(GOLDEN_YAML)
    data = read_checkpoint(GOLDEN_CHECKPOINT)
    first = TpsmmTraining(config).build(data, GOLDEN_CHECKPOINT, False)
    assert first.avd_network is None and first.bg_predictor is not None  # the stage-1 networks, widths of the file
    assert first.kp_detector.fg_encoder.conv1.weight.shape[0] == 4
    torch.testing.assert_close(first.bg_predictor.state_dict()["bg_encoder.fc.bias"], data["bg_predictor"][
        "bg_encoder.fc.bias"], rtol=0, atol=0)
    second = AvdTraining(config).build(data, GOLDEN_CHECKPOINT, True)  # its avd_network and optimizer_avd resume
    assert second.avd_network is not None and second.avd_network.id_encoder[0].weight.shape[0] == 16
    assert [n for n, p in second.avd_network.named_parameters() if p.requires_grad] and not any(
        p.requires_grad for p in second.kp_detector.parameters())
    with pytest.raises(CheckpointError, match="First Order Motion Model checkpoint"):
        TpsmmTraining(config).read_checkpoint(TRAINED_FOMM)
