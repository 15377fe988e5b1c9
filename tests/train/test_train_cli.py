"""The training commands as a user runs them: ``prepare-data`` on real face clips, clear one-line errors for
bad datasets, and ``train`` stopped with Ctrl-C (a real SIGINT to a real process) leaving a checkpoint that
resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import make_face_clip, make_test_video
from train_media import TINY_CONFIG, make_tiny_dataset, random_vgg19

from fomm_lab.cli import main
from fomm_lab.engine.checkpoint import read_checkpoint
from fomm_lab.engine.families import load_model
from fomm_lab.io import read_image
from fomm_lab.train.checkpoint import LAST
from fomm_lab.train.data import VideoFrames, dataset_layout
from fomm_lab.train.prepare import split_of

REPO = Path(__file__).resolve().parents[2]


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("fomm-lab: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.slow
def test_prepare_data_writes_the_official_layout(tmp_path, capsys):
    videos = [make_face_clip(tmp_path / f"talk-{k}.mp4", seconds=0.8, size=(320, 240), audio=False) for k in range(3)]
    blank = make_test_video(tmp_path / "no-face.mp4", frames=12, size=(160, 120))
    out = tmp_path / "dataset"
    code = main(["prepare-data", *map(str, videos), str(blank), "--out", str(out), "--size", "64",
                 "--detector", "haar", "--test-fraction", "0.4", "-q"])
    captured = capsys.readouterr()
    assert code == 1  # one video had no face: reported, the others written
    assert "3 video(s) written, 0 kept, 1 failed" in captured.out
    assert "no-face.mp4" in one_line_error(captured.err) and "no face was found" in captured.err
    layout = dataset_layout(out)
    assert sorted(p.name for p in layout.train + layout.test) == ["talk-0", "talk-1", "talk-2"]
    assert len(layout.test) == 1 and len(layout.train) == 2
    splits = split_of([*videos, blank], 0.4)
    assert {p.name for p in layout.test} == {p.stem for p in videos if splits[p] == "test"}
    for video in layout.train + layout.test:
        frames = VideoFrames(video, size=__import__("fomm_lab.geometry", fromlist=["Size"]).Size.square(64))
        assert frames.frame_count == 20  # 0.8 s at 25 fps, the whole face track
        face = read_image(video / "000000.png")
        assert face.shape == (64, 64, 3) and face.std() > 20  # a face crop, not a flat background
    # again: everything there is kept; mp4 output and the whole-frame mode for objects other than faces
    assert main(["prepare-data", *map(str, videos), "--out", str(out), "--size", "64", "--detector", "haar",
                 "--test-fraction", "0.4", "-q"]) == 0
    assert "0 video(s) written, 3 kept, 0 failed" in capsys.readouterr().out
    flat = tmp_path / "objects"
    assert main(["prepare-data", str(blank), str(videos[0]), "--out", str(flat), "--size", "48", "--no-crop",
                 "--format", "mp4", "-q"]) == 0
    written = dataset_layout(flat)
    assert sorted(p.name for p in written.train + written.test) == ["no-face.mp4", "talk-0.mp4"]
    assert all(VideoFrames(p, __import__("fomm_lab.geometry", fromlist=["Size"]).Size.square(48)).frame_count > 0
               for p in written.train + written.test)


def test_split_is_stable_and_keeps_both_sides():
    videos = [Path(f"v{k}.mp4") for k in range(10)]
    first = split_of(videos, 0.2)
    assert sum(s == "test" for s in first.values()) == 2
    assert split_of(list(reversed(videos)), 0.2) == first  # the same videos land on the same side
    assert list(split_of(videos[:2], 0.01).values()).count("test") == 1  # at least one test video
    assert set(split_of(videos[:1], 0.5).values()) == {"train"}  # one video: it is for training


@pytest.mark.parametrize("case, expected", [
    ("no-splits", "has no train/ or test/ folder"),
    ("empty", "train holds no videos"),
    ("bad-frame", "0000.png is 48x48 but the config's dataset_params.frame_shape is 64x64"),
    ("few", "the training set gives 4 samples per epoch"),
])
def test_bad_datasets_get_one_clear_line(tmp_path, capsys, case, expected):
    data = tmp_path / "data"
    if case == "no-splits":
        data.mkdir()
    elif case == "empty":
        (data / "train").mkdir(parents=True)
        (data / "test").mkdir()
    elif case == "bad-frame":
        make_tiny_dataset(data, train=2, test=1)
        make_tiny_dataset(tmp_path / "small", train=1, test=0, size=48)
        (tmp_path / "small" / "train" / "face0#0").rename(data / "train" / "small")
    else:
        make_tiny_dataset(data, train=1, test=1)
    code = main(["train", "--config", str(TINY_CONFIG), "--data", str(data), "--out", str(tmp_path / "run"),
                 "--batch-size", "8", "--vgg19", str(tmp_path / "unused.pth"), "-q"])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1 and expected in line
    assert not (tmp_path / "run" / LAST).exists()


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", train=4, test=1)
    vgg = random_vgg19(tmp_path / "vgg19.pth", upto=1)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "FOMM_LAB_HOME": str(tmp_path / "home")}
    argv = [sys.executable, "-m", "fomm_lab", "train", "--config", str(TINY_CONFIG), "--data", str(data),
            "--out", str(run), "--workers", "0", "--batch-size", "2", "--vgg19", str(vgg), "--device", "cpu",
            "--checkpoint-every", "0", "--visualize-every", "0", "-q"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    log = run / "log.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "fomm-lab: interrupted" in err and f"saved {run / LAST} (continue the run with resume)" in err
    data_ = read_checkpoint(run / LAST)
    step = data_["fomm_lab"]["step"]
    lines = len(log.read_text().splitlines())
    assert step >= 3 and step in (lines, lines + 1)
    load_model(TINY_CONFIG, run / LAST, device="cpu")  # complete and strict
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no half-written file left
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--config", str(TINY_CONFIG), "--data", str(data), "--out", str(run), "--resume",
                     "--max-steps", str(step + 2), "--workers", "0", "--batch-size", "2", "--vgg19", str(vgg),
                     "--device", "cpu", "-q"]) == 0
    finally:
        torch.set_num_threads(threads)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, step + 3))
    assert read_checkpoint(run / LAST)["fomm_lab"]["step"] == step + 2
    assert np.isfinite(json.loads(log.read_text().splitlines()[-1])["loss"])


def test_torchrun_entry_point_parses():
    proc = subprocess.run([sys.executable, "-m", "fomm_lab", "train", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0 and "torchrun --nproc_per_node N -m fomm_lab train" in proc.stdout
