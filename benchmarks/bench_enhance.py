"""Face enhancement's cost per face beside the animation's per frame, in float32 and bfloat16, at 1 and 2 threads.

The animation: an Animator of --config (random weights of vox-256 unless --checkpoint is given) stepping over a
smooth synthetic clip, one frame per call (the live loop's cost; the streamed pipeline's per frame is the same
work). The enhancers: GPEN-512 as PaddleGAN runs it and GFPGAN v1.4, one face per call (the pipeline's batch size
1), enhancing the float32 animation's frames. Without weights files they are the full-size networks with random
weights (their cost does not depend on the values; no download); --gpen-weights / --gfpgan-weights take real
files, and --tiny takes the narrow test fixtures (tests/fixtures/enhance-golden: a smoke run, not a measurement).

Per row: median wall time per call after one warm-up call (--frames calls), the ratio of each enhancer's time
to the animation's, and the PSNR of every reduced-precision output against float32 on the same input. Each
network's work is counted once with ``torch.utils.flop_counter`` (convolutions and matrix products, GFLOP per
call). Peak RSS: a fresh process per enhancer and precision loads it and enhances --rss-frames faces (1 thread).
At the end, a 10 s clip at 25 fps (250 frames, one face) with and without enhancement, from the per-frame
figures.

usage: python benchmarks/bench_enhance.py [--enhancers gpen,gfpgan] [--threads 1,2] [--dtypes float32,bfloat16]
           [--frames 3] [--config vox-256] [--checkpoint FILE] [--gpen-weights FILE] [--gfpgan-weights FILE]
           [--tiny] [--rss-frames 2 | --no-rss] [--clip-seconds 10] [--fps 25]
Smoke run (seconds, proves the script works; its figures mean nothing):
  python benchmarks/bench_enhance.py --tiny --config tests/fixtures/fomm-golden/tiny-vox.yaml
      --checkpoint tests/fixtures/fomm-golden/tiny-vox-cpk.pth.tar --frames 2 --rss-frames 1
bfloat16 is fast only where the CPU computes it natively (AVX512-BF16 or AMX); elsewhere it is emulated and the
bfloat16 rows say so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from memory import peak_rss_mb

from fomm_lab import Animator, load_model
from fomm_lab.device import cpu_has_native_bfloat16
from fomm_lab.engine.config import resolve_config_path

ROOT = Path(__file__).resolve().parents[1]
TINY = {"gpen": ROOT / "tests/fixtures/enhance-golden/gpen-tiny-512.pdparams",
        "gfpgan": ROOT / "tests/fixtures/enhance-golden/gfpgan-tiny-512.pth"}
NAMES = {"gpen": "GPEN-512", "gfpgan": "GFPGAN v1.4"}


def clip(frames: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """A smooth synthetic driving clip: a textured image drifting, turning and scaling, (H, W, 3) uint8 frames."""
    width, height = size
    rng = np.random.default_rng(seed)
    base = cv2.resize((rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8), (width * 2, height * 2),
                      interpolation=cv2.INTER_CUBIC)
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        m = cv2.getRotationMatrix2D((width, height), 10 * np.sin(6 * t), 1 + 0.1 * t)
        m[:, 2] += [20 * np.sin(4 * t) - width / 2, 15 * t - height / 2]
        out.append(cv2.warpAffine(base, m, (width, height), borderMode=cv2.BORDER_REFLECT))
    return out


def psnr(reference: np.ndarray, frames: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(frames, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def make_enhancer(kind: str, dtype: str, args: argparse.Namespace) -> Any:
    """The enhancer of ``kind``: from a weights file (--tiny, --gpen-weights, --gfpgan-weights) through
    ``load_enhancer``, else the full-size network with random weights."""
    from fomm_lab.device import resolve_dtype
    from fomm_lab.enhance import load_enhancer
    from fomm_lab.enhance.enhancer import GFPGANEnhancer, GPENEnhancer
    from fomm_lab.enhance.gfpgan import GFPGANConfig, GFPGANv1Clean
    from fomm_lab.enhance.gpen import GPEN, GPENConfig

    weights = weights_of(kind, args)
    if weights is not None:
        return load_enhancer(kind, weights, dtype=dtype)
    cpu, precision = torch.device("cpu"), resolve_dtype(dtype)
    torch.manual_seed(0)
    if kind == "gpen":
        return GPENEnhancer(GPEN(GPENConfig()).eval().requires_grad_(False), "random", device=cpu, dtype=precision)
    return GFPGANEnhancer(GFPGANv1Clean(GFPGANConfig()).eval().requires_grad_(False), "random", device=cpu,
                          dtype=precision)


def weights_of(kind: str, args: argparse.Namespace) -> Path | None:
    if args.tiny:
        return TINY[kind]
    given = args.gpen_weights if kind == "gpen" else args.gfpgan_weights
    return Path(given) if given else None


def weights_label(args: argparse.Namespace) -> str:
    if args.tiny:
        return "tiny test fixtures (smoke run: figures mean nothing)"
    given = [f"{k} {weights_of(k, args)}" for k in NAMES if weights_of(k, args) is not None]
    return ", ".join(given) if given else "full-size networks, random weights"


def gflop(fn: Any) -> float:
    """Convolution and matrix-product work of one call of ``fn``, GFLOP (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return counter.get_total_flops() / 1e9


def timed(calls: list[Any]) -> tuple[float, list[Any]]:
    """Median wall seconds of ``calls[1:]`` (the first is a warm-up) and every call's result."""
    results, times = [], []
    for call in calls:
        start = time.perf_counter()
        results.append(call())
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] if len(times) > 1 else times), results


@dataclass
class Row:
    threads: int
    dtype: str
    animation_s: float
    animation_psnr: float | None
    enhance_s: dict[str, float] = field(default_factory=dict)
    enhance_psnr: dict[str, float | None] = field(default_factory=dict)


def animate(model: Any, driving: list[np.ndarray], dtype: str) -> tuple[float, np.ndarray]:
    """(median seconds per live step, the animated frames (N, H, W, 3) uint8)."""
    animator = Animator(model, dtype=dtype, smoothing=0)
    animator.set_source(driving[0])
    animator.set_reference(driving[0])
    seconds, frames = timed([lambda f=frame: animator.step(f) for frame in driving])
    return seconds, np.stack(frames)


def enhance(enhancer: Any, faces: np.ndarray) -> tuple[float, np.ndarray]:
    """(median seconds per face, the enhanced faces (N, 512, 512, 3) uint8), one face per call."""
    seconds, out = timed([lambda f=face: enhancer.enhance_faces(f[None]) for face in faces])
    return seconds, np.concatenate(out)


def rss_child(args: argparse.Namespace) -> None:
    """One enhancer in this fresh process: load it, enhance --rss-frames faces; print the peak RSS."""
    torch.set_num_threads(1)
    kind, dtype = args.rss_child.split(":")
    enhancer = make_enhancer(kind, dtype, args)
    faces = np.stack(clip(args.rss_frames, (256, 256)))
    for face in faces:
        enhancer.enhance_faces(face[None])
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def measure_rss(kind: str, dtype: str, args: argparse.Namespace) -> float | None:
    cmd = [sys.executable, __file__, "--rss-child", f"{kind}:{dtype}", "--rss-frames", str(args.rss_frames)]
    if args.tiny:
        cmd.append("--tiny")
    for flag, value in (("--gpen-weights", args.gpen_weights), ("--gfpgan-weights", args.gfpgan_weights)):
        if value:
            cmd += [flag, str(value)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  peak RSS of {kind} {dtype} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def report(rows: list[Row], kinds: list[str], flops: dict[str, float], rss: dict[str, float | None],
           args: argparse.Namespace) -> None:
    native = cpu_has_native_bfloat16()
    print(f"\nanimation: {args.config} ({'checkpoint ' + str(args.checkpoint) if args.checkpoint else 'random weights'}),"
          f" enhancers: {weights_label(args)}; torch {torch.__version__}, native bfloat16: {'yes' if native else 'no'};"
          f" wall time, median of {max(args.frames - 1, 1)} calls after a warm-up\n")
    head = ["threads", "dtype", "animation per frame"]
    for kind in kinds:
        head += [f"{NAMES[kind]} per face", "x animation", "PSNR vs float32"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for row in rows:
        cells = [str(row.threads), row.dtype + ("" if row.dtype == "float32" or native else " (emulated)"),
                 f"{row.animation_s * 1000:.0f} ms" + (f" ({row.animation_psnr:.1f} dB)" if row.animation_psnr else "")]
        for kind in kinds:
            seconds, quality = row.enhance_s[kind], row.enhance_psnr[kind]
            cells += [f"{seconds:.2f} s", f"{seconds / row.animation_s:.1f}x",
                      "" if quality is None else f"{quality:.1f} dB"]
        print("| " + " | ".join(cells) + " |")
    print("\nwork per call (convolutions and matrix products): "
          + ", ".join(f"{name} {value:.1f} GFLOP" for name, value in flops.items()))
    if rss:
        print("peak RSS (fresh process, 1 thread, load + enhance): "
              + ", ".join(f"{key} {'failed' if v is None else f'{v:.0f} MB'}" for key, v in rss.items()))
    frames = round(args.clip_seconds * args.fps)
    print(f"\na {args.clip_seconds:g} s clip at {args.fps:g} fps ({frames} frames, one face), from the figures above:")
    for row in rows:
        plain = frames * row.animation_s
        parts = [f"{NAMES[k]} {_minutes(plain + frames * row.enhance_s[k])}" for k in kinds]
        print(f"  {row.threads} thread(s), {row.dtype}: animation alone {_minutes(plain)}; with " + ", with ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enhancers", default="gpen,gfpgan")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="float32 first: the PSNR reference")
    parser.add_argument("--frames", type=int, default=3, help="calls timed per row (the first is a warm-up)")
    parser.add_argument("--config", default="vox-256", help="the animation's config (random weights)")
    parser.add_argument("--checkpoint", default=None, help="the animation's weights instead of random ones")
    parser.add_argument("--gpen-weights", default=None, help="GPEN-512.pdparams instead of random weights")
    parser.add_argument("--gfpgan-weights", default=None, help="GFPGANv1.4.pth instead of random weights")
    parser.add_argument("--tiny", action="store_true", help="the tiny test fixtures' enhancers (a smoke run)")
    parser.add_argument("--rss-frames", type=int, default=2, help="faces enhanced by each peak-RSS process")
    parser.add_argument("--no-rss", action="store_true", help="skip the fresh-process peak RSS measurements")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child is not None:
        rss_child(args)
        return
    kinds = [k.strip() for k in args.enhancers.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(NAMES))
    if unknown:
        parser.error(f"unknown enhancer(s) {', '.join(unknown)}: use {', '.join(NAMES)}")
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    if dtypes[0] != "float32":
        parser.error("--dtypes must start with float32 (the PSNR reference)")
    threads = [int(t) for t in args.threads.split(",")]

    config = args.config if Path(args.config).suffix in (".yaml", ".yml") else resolve_config_path(args.config)
    model = load_model(config, args.checkpoint, device="cpu")
    size = model.frame_size
    driving = clip(max(args.frames, 1), (size.width, size.height))

    torch.set_num_threads(1)
    probe = Animator(model, dtype="float32", smoothing=0)
    probe.set_source(driving[0])
    probe.set_reference(driving[0])
    probe.step(driving[0])
    flops = {f"animation ({args.config}, per frame)": gflop(lambda: probe.step(driving[0]))}
    enhancers = {kind: make_enhancer(kind, "float32", args) for kind in kinds}
    for kind, enhancer in enhancers.items():
        flops[f"{NAMES[kind]} (per face)"] = gflop(lambda e=enhancer: e.enhance_faces(driving[0][None]))

    rows: list[Row] = []
    for count in threads:
        torch.set_num_threads(count)
        plain_ref: np.ndarray | None = None
        enhanced_ref: dict[str, np.ndarray] = {}
        for dtype in dtypes:
            print(f"timing {count} thread(s), {dtype} ...", file=sys.stderr, flush=True)
            seconds, frames = animate(model, driving, dtype)
            row = Row(count, dtype, seconds, None if plain_ref is None else psnr(plain_ref, frames))
            plain_ref = frames if plain_ref is None else plain_ref
            for kind in kinds:
                enhancer = enhancers[kind] if dtype == "float32" else make_enhancer(kind, dtype, args)
                row.enhance_s[kind], out = enhance(enhancer, plain_ref)  # the same faces in every precision
                row.enhance_psnr[kind] = psnr(enhanced_ref[kind], out) if kind in enhanced_ref else None
                enhanced_ref.setdefault(kind, out)
            rows.append(row)
    rss: dict[str, float | None] = {}
    if not args.no_rss:
        for kind in kinds:
            for dtype in dtypes:
                print(f"peak RSS of {kind} {dtype} ...", file=sys.stderr, flush=True)
                rss[f"{NAMES[kind]} {dtype}"] = measure_rss(kind, dtype, args)
    report(rows, kinds, flops, rss, args)


if __name__ == "__main__":
    main()
