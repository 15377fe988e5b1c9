"""Engine speed and memory with random weights of a shipped config (no checkpoint download needed):
vox-256 by default, or --config vox-512 / vox-mobile-256 (PaddleGAN's) / any shipped config, at its frame size.

Prints a table:
  (a) the paper demo's loop: every frame re-encodes the source, batch 1, whole clip kept in memory;
  (b) Animator, float32, eager and torch.compile'd (exact: max abs diff to (a) reported);
  (c) Animator in bfloat16 (dense motion and generator; channels-last), eager and compiled,
      with PSNR against (a);
  peak RSS of a streaming run (eager, --fast-dtype) over 60 and 600 driving frames (fresh process each).

Targets on the 2-core CPU: (b) >= 1.5x (a) at max abs diff < 1e-4; (c) >= 3x (a) at PSNR >= 40 dB;
RSS growth from 60 to 600 frames < 100 MB.

Targets for PaddleGAN's models on the 2-core CPU: vox-mobile-256's live step (d) <= 40 ms in some mode at
PSNR >= 40 dB; vox-512 at most 4.5x vox-256's time per frame (--baseline vox-256 prints the ratio of (b)).

usage: python benchmarks/bench_engine.py [--config vox-256] [--baseline CONFIG] [--frames 12] [--rss 60 600]
                                      [--device cpu] [--threads N] [--fast-dtype bfloat16|float16] [--batch-size N]
vox-512 is 4x the work of vox-256: e.g. --config vox-512 --baseline vox-256 --frames 4 --rss 8 40.
On a GPU: --device cuda --fast-dtype float16 --batch-size 32 --frames 256 (batched fps; (d) is the
live single-frame latency).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
from memory import peak_rss_mb

from fomm_lab import Animator, load_model
from fomm_lab.engine.config import resolve_config_path
from fomm_lab.engine.motion import normalize_keypoints


def clip(frames: int, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """A smooth synthetic driving clip: a textured image drifting and scaling."""
    rng = np.random.default_rng(seed)
    base = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8)
    import cv2

    base = cv2.resize(base, (size * 2, size * 2), interpolation=cv2.INTER_CUBIC)
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        m = cv2.getRotationMatrix2D((size, size), 10 * np.sin(6 * t), 1 + 0.1 * t)
        m[:, 2] += [20 * np.sin(4 * t) - size / 2, 15 * t - size / 2]
        out.append(cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT))
    return out


@torch.inference_mode()
def paper_loop(model, source: np.ndarray, driving: list[np.ndarray]) -> list[np.ndarray]:
    """The official demo's per-frame loop (relative + adapt scale), predictions kept in a list."""
    to = lambda f: torch.from_numpy(f[None].astype(np.float32) / 255).permute(0, 3, 1, 2).to(model.device)
    source_t = to(source)
    video = [to(f) for f in driving]  # the demo holds the whole driving clip
    kp_initial = model.kp_detector(video[0])
    predictions = []
    for frame in video:
        kp_source = model.kp_detector(source_t)
        kp_driving = model.kp_detector(frame)
        kp_norm = normalize_keypoints(kp_source, kp_driving, kp_initial, relative=True, adapt_scale=True)
        out = model.generator(source_t, kp_norm, kp_source)["prediction"]
        predictions.append(np.transpose(out.cpu().numpy()[0], (1, 2, 0)))
    return predictions


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def rss_child(frames: int, dtype: str, device: str, config: str) -> None:
    model = load_model(resolve_config_path(config), device=device)
    side = model.frame_size.width
    source, driving = clip(1, side)[0], clip(30, side)
    stream = (driving[i % len(driving)] for i in range(frames))
    for _ in Animator(model, dtype=dtype).animate(source, stream):
        pass
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vox-256", help="shipped config to time (random weights)")
    parser.add_argument("--baseline", default=None, metavar="CONFIG",
                        help="also time (b) on this config and print the per-frame ratio (e.g. vox-256 for vox-512)")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rss", type=int, nargs="*", default=[60, 600])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fast-dtype", default="bfloat16", help="bfloat16 (CPU) or float16 (GPU)")
    parser.add_argument("--batch-size", type=int, default=1, help="driving frames per forward pass in (b) and (c)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child is not None:
        rss_child(args.rss_child, args.fast_dtype, args.device, args.config)
        return

    torch.manual_seed(0)
    model = load_model(resolve_config_path(args.config), device=args.device)  # the yaml: random weights, no download
    side = model.frame_size.width
    source, driving = clip(1, side, seed=1)[0], clip(args.frames, side)
    n = len(driving)
    list(Animator(model).animate(source, driving[:2]))  # warm-up
    paper_loop(model, source, driving[:2])

    naive, t_a = timed(paper_loop, model, source, driving)
    reference = np.stack([np.clip(np.round(a * 255), 0, 255) for a in naive])

    def run(label: str, **options):
        animator = Animator(model, float_output=True, batch_size=args.batch_size, **options)
        _, warm = timed(lambda: list(animator.animate(source, driving[:2])))  # compiles when asked
        frames, seconds = timed(lambda: list(animator.animate(source, driving)))
        if options.get("dtype", "float32") == "float32":
            accuracy = f"max abs diff {max(float(np.abs(a - b).max()) for a, b in zip(naive, frames)):.2e}"
        else:
            mse = float(((reference - np.round(np.stack(frames) * 255)) ** 2).mean())
            accuracy = f"PSNR {10 * np.log10(255**2 / max(mse, 1e-12)):.1f} dB"
        return label, seconds, accuracy, warm

    rows = [
        ("(a) paper demo loop, float32", t_a, "-", 0.0),
        run("(b) Animator float32", dtype="float32"),
        run("(b) Animator float32, compiled", dtype="float32", compile=True),
        run(f"(c) Animator {args.fast_dtype}", dtype=args.fast_dtype),
        run(f"(c) Animator {args.fast_dtype}, compiled", dtype=args.fast_dtype, compile=True),
    ]
    live = Animator(model, dtype=args.fast_dtype, compile=True)
    live.set_source(source)
    live.set_reference(driving[0])
    live.step(driving[1])  # compiles
    steps = []
    for frame in driving:
        start = time.perf_counter()
        live.step(frame)
        steps.append(time.perf_counter() - start)
    rows.append((f"(d) live step(), {args.fast_dtype}, compiled, batch 1", sum(steps), f"median {1000 * np.median(steps):.1f} ms", 0.0))

    print(f"{args.config}: device {model.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{n} frames {model.frame_size}, batch size {args.batch_size} for (b) and (c)")
    print(f"{'mode':44} {'ms/frame':>9} {'fps':>7} {'speed-up':>9}  {'accuracy':24} warm-up (2 frames)")
    for name, seconds, accuracy, warm in rows:
        print(f"{name:44} {1000 * seconds / n:9.1f} {n / seconds:7.2f} {t_a / seconds:8.2f}x  {accuracy:24} {warm:6.1f} s")

    peaks = {}
    for frames in args.rss:
        cmd = [sys.executable, __file__, "--rss-child", str(frames), "--device", args.device, "--fast-dtype", args.fast_dtype,
               "--config", args.config]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        peaks[frames] = json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]
        print(f"peak RSS streaming {frames:5d} frames ({args.fast_dtype}): {peaks[frames]:8.1f} MB")
    if len(peaks) >= 2:
        lo, hi = min(peaks), max(peaks)
        print(f"RSS growth {lo} -> {hi} frames: {peaks[hi] - peaks[lo]:+.1f} MB")
    if args.baseline:
        base = load_model(resolve_config_path(args.baseline), device=args.device)
        base_side = base.frame_size.width
        base_source, base_driving = clip(1, base_side, seed=1)[0], clip(args.frames, base_side)
        animator = Animator(base, float_output=True, batch_size=args.batch_size)
        list(animator.animate(base_source, base_driving[:2]))  # warm-up
        _, base_seconds = timed(lambda: list(animator.animate(base_source, base_driving)))
        ours = rows[1][1]
        print(f"(b) per frame: {args.config} {1000 * ours / n:.1f} ms, {args.baseline} {1000 * base_seconds / n:.1f} ms: "
              f"{ours / base_seconds:.2f}x")


if __name__ == "__main__":
    main()
