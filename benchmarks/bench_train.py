"""Training speed and memory: optimisation steps per second of the paper's training step.

Times :class:`fomm_lab.train.step.TrainingStep` (keypoints, generator, perceptual loss on the 4-scale
pyramid with all 5 VGG19 layers, equivariance losses, backward, Adam steps; plus the discriminator for -adv
configs) on batches of real face crops (``skimage.data.astronaut()``, moving and zooming), with random
weights: no download is needed (VGG19 gets torchvision's initialisation instead of ImageNet weights, which
costs the same). Data loading is not timed. Prints a table: config, device, threads, batch, warm-up steps,
timed steps, seconds per step (median and mean), steps/s, peak memory (RSS of this process; on CUDA also
the peak allocated by torch).

usage: python benchmarks/bench_train.py [--config vox-256] [--batch-size 1] [--steps 8] [--warmup 2]
                                        [--device cpu] [--threads N]
Default: vox-256 at batch 1 on the CPU, a few minutes on a 2-core machine. On a GPU: --device cuda
--batch-size 8 (not measured here).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from memory import peak_rss_mb
from torch import nn

from fomm_lab.train import distributed
from fomm_lab.train.checkpoint import Optimizers
from fomm_lab.train.model import build_training_networks
from fomm_lab.train.params import load_training_config
from fomm_lab.train.step import TrainingStep
from fomm_lab.train.vgg import VGG19Features

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def face_batches(count: int, batch: int, size: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (source, driving) batches of astronaut face crops, (batch, 3, size, size) in [0, 1]."""
    from train_media import astronaut_frames

    frames = astronaut_frames(frames=24, size=size)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pairs = [np.sort(rng.choice(len(frames), 2)) for _ in range(batch)]
        stack = [torch.from_numpy(np.stack([frames[p[k]] for p in pairs])).permute(0, 3, 1, 2).float() / 255
                 for k in (0, 1)]
        out.append((stack[0], stack[1]))
    return out


def random_vgg(layers: int) -> VGG19Features:
    vgg = VGG19Features(layers)
    for module in vgg.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return vgg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="vox-256", help="shipped config name or yaml (default vox-256)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8, help="timed steps (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here: GPU rows not measured", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    config = load_training_config(args.config)
    networks = build_training_networks(config, device=device)
    networks.train(True)
    p = config.train
    optimizers = Optimizers(
        generator=torch.optim.Adam(networks.generator.parameters(), lr=p.lr_generator, betas=(0.5, 0.999)),
        kp_detector=torch.optim.Adam(networks.kp_detector.parameters(), lr=p.lr_kp_detector, betas=(0.5, 0.999)),
        discriminator=torch.optim.Adam(networks.discriminator.parameters(), lr=p.lr_discriminator, betas=(0.5, 0.999)))
    weights = p.loss_weights.perceptual
    vgg = random_vgg(max(i for i, w in enumerate(weights) if w) + 1).to(device) if p.loss_weights.uses_perceptual \
        else None
    step = TrainingStep(config, networks, optimizers, vgg, distributed.Process(device=device))
    batches = face_batches(args.warmup + args.steps, args.batch_size, config.frame_size.width)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for index, (source, driving) in enumerate(batches):
        source, driving = source.to(device), driving.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        values, _ = step(source, driving, index)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
        if not math.isfinite(values["loss"]):
            print(f"step {index}: the loss is {values['loss']}", file=sys.stderr)
            return 1
    median, mean = statistics.median(times), statistics.fmean(times)
    gpu = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if device.type == "cuda" else "-"
    rows = [("config", "device", "threads", "batch", "warmup", "steps", "s/step (median)", "s/step (mean)", "steps/s",
             "peak RSS MB", "peak CUDA MB"),
            (config.model.name, str(device), str(torch.get_num_threads()), str(args.batch_size), str(args.warmup),
             str(args.steps), f"{median:.2f}", f"{mean:.2f}", f"{1 / median:.3f}", f"{peak_rss_mb():.0f}", gpu)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    print("losses of the last step: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
