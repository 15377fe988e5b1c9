"""Distributed training on the CPU: ``torchrun --nproc_per_node 2`` with the gloo backend.

Both processes run ``fomm-lab train`` (through the command line's own entry point) on a tiny adversarial model
(so both distributed modules, generator and discriminator, run); they must end with equal weights -- each
hashes its own parameters -- equal to the checkpoint, which only process 0 writes, like the log.
Synchronised batch norm over the two halves of a batch must equal batch norm over the whole batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ddp_worker import digest
from train_media import TINY_CONFIG, make_tiny_dataset, random_vgg19

from fomm_lab.engine.checkpoint import read_checkpoint
from fomm_lab.train.checkpoint import LAST
from fomm_lab.train.model import build_training_networks
from fomm_lab.train.params import load_training_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_gloo_processes_train_one_model(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", train=4, test=1)
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["train_params"]["loss_weights"]["generator_gan"] = 1
    raw["model_params"]["discriminator_params"]["use_kp"] = True
    config = tmp_path / "tiny-adv.yaml"
    config.write_text(yaml.safe_dump(raw))
    vgg = random_vgg19(tmp_path / "vgg19.pth", upto=1)
    report, run = tmp_path / "report", tmp_path / "run"
    report.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1",
           "FOMM_LAB_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "ddp_worker.py"), str(report),
           "--config", str(config), "--data", str(data), "--out", str(run), "--device", "cpu",
           "--batch-size", "4", "--max-steps", "3", "--workers", "0", "--vgg19", str(vgg),
           "--visualize-every", "2", "--checkpoint-every", "2", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rank in (0, 1):
        diffs = json.loads((report / f"syncbn-{rank}.json").read_text())
        assert max(diffs.values()) < 1e-4, diffs
    weights = [(report / f"weights-{rank}.txt").read_text() for rank in (0, 1)]
    assert weights[0] == weights[1]  # the two processes hold the same weights ...
    saved = read_checkpoint(run / LAST)
    networks = build_training_networks(load_training_config(config))
    for name, module in networks.named().items():
        module.load_state_dict(saved[name])
    assert digest(networks.named().items()) == weights[0]  # ... which are the checkpoint's
    assert saved["fomm_lab"]["world_size"] == 2 and saved["fomm_lab"]["step"] == 3
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3]  # one writer
    assert {"gen_gan", "feature_matching", "disc_gan"} <= set(log[-1]["losses"])
    assert proc.stdout.count("wrote ") == 1
    pictures = sorted(p.name for p in (run / "train-vis").iterdir())
    assert pictures[0] == "step-00000002.png"
