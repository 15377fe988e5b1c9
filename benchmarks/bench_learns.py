"""Proof that training learns: the synthetic run of docs/training.md, reproduced and scored.

1. ``fomm-lab prepare-data --synthetic --out DIR/data --seed SEED --recolour --aspect 0.7 --rotation 15``: clips
   of scikit-image photos moving with known transforms (72 training clips of 12 photos, recoloured at random; 6
   held-out clips of 3 other photos; 32 frames of 64x64, each object in an ellipse of aspect 0.7) and
   DIR/data/vgg19-random.pth (random VGG19 features for the perceptual loss: the ImageNet file is not needed).
2. ``fomm-lab train --config synthetic-64 --data DIR/data --out DIR/run --vgg19 DIR/data/vgg19-random.pth
   --workers 0 --device cpu --seed SEED`` with ``--threads`` torch threads (default 2; ``--max-steps`` to stop
   early).
3. Scores on the held-out clips (:mod:`fomm_lab.train.proof`) of the trained model and of the same network with
   random weights: reconstruction L1 against the copy-the-source baseline, keypoints against the true motion.
   ``--figure PNG`` also draws the loss curve of the run's log.

usage: python benchmarks/bench_learns.py [--out runs/learns] [--seed 0] [--threads 2] [--max-steps N] [--figure PNG]
       python benchmarks/bench_learns.py --checkpoint tests/fixtures/trained-synthetic/checkpoint.pth.tar
             (score a trained checkpoint only: steps 1 and 3)
The shipped run (--threads 1) took about 24 minutes on one thread of an AMD EPYC core (docs/training.md); the bar
is a held-out L1 at most half the baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

CONFIG = "synthetic-64"
DATA_OPTIONS = ("--recolour", "--aspect", "0.7", "--rotation", "15")
"""The data the config is made for: training photos recoloured, every mask an ellipse of aspect 0.7, turns
within 15 degrees."""


def loss_figure(log: Path, out: Path, threads: int = 2) -> Path:
    """The run's losses per step (each weighted term and their total, smoothed over 25 steps) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps = np.array([r["step"] for r in rows])
    terms = {name: np.array([r["losses"][name] for r in rows]) for name in rows[0]["losses"]}
    terms["total"] = np.array([r["loss"] for r in rows])
    window = 25
    kernel = np.ones(window) / window
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for name, values in terms.items():
        smooth = np.convolve(values, kernel, mode="valid")
        ax.plot(steps[window - 1:], smooth, label=name, lw=2 if name == "total" else 1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step (batch of 8 pairs)")
    ax.set_ylabel("weighted loss (mean of 25 steps)")
    ax.set_title(f"synthetic-64 trained from scratch, {rows[-1]['time'] / 60:.0f} min on {threads} CPU "
                 f"thread{'s' if threads > 1 else ''}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/learns"), help="folder for data/ and run/")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the training (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop the training after N steps")
    parser.add_argument("--checkpoint", type=Path, default=None, help="score this checkpoint instead of training")
    parser.add_argument("--figure", type=Path, default=None, help="draw the run's loss curve into this PNG")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from fomm_lab import load_model
    from fomm_lab.cli import main as cli
    from fomm_lab.train.proof import prove_dataset

    data, run = args.out / "data", args.out / "run"
    if cli(["-q", "prepare-data", "--synthetic", "--out", str(data), "--seed", str(args.seed), *DATA_OPTIONS]) != 0:
        return 1
    checkpoint = args.checkpoint
    if checkpoint is None:
        command = ["train", "--config", CONFIG, "--data", str(data), "--out", str(run), "--vgg19",
                   str(data / "vgg19-random.pth"), "--workers", "0", "--device", "cpu", "--seed", str(args.seed),
                   "--checkpoint-every", "100"] + (["--max-steps", str(args.max_steps)] if args.max_steps else [])
        print("fomm-lab " + " ".join(command), flush=True)
        started = time.monotonic()
        if cli(command) != 0:
            return 1
        print(f"trained in {(time.monotonic() - started) / 60:.1f} min", flush=True)
        checkpoint = run / "last-checkpoint.pth.tar"
        if args.figure is not None:
            print(f"loss curve: {loss_figure(run / 'log.jsonl', args.figure, args.threads)}")
    trained = prove_dataset(load_model(CONFIG, checkpoint, device="cpu", progress=False), data)
    torch.manual_seed(0)
    untrained = prove_dataset(load_model(CONFIG, None, device="cpu", progress=False), data)
    for label, scores in (("trained", trained), ("random weights", untrained)):
        print(f"{label}:")
        for line in scores.lines():
            print(f"  {line}")
    passed = trained.l1_ratio <= 0.5
    print(f"bar (held-out L1 <= 0.5 x copy-the-source): {'passed' if passed else 'FAILED'} "
          f"({trained.l1:.4f} vs {0.5 * trained.baseline_l1:.4f})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
