"""Engine speed and memory: the paper's animation loop against the Animator's modes, side by side in one process.

Random weights of a shipped config (default vox-256: no checkpoint download needed), a smooth synthetic
256x256 driving clip, 1 thread, CPU time (``time.process_time``; wall time at --threads 2 or more, and with
synchronisation on CUDA).

Rows:
  (a) the paper demo's ``make_animation`` as written (reimplemented here on the checkpoint-form networks,
      ``load_model(fuse=False)``): source keypoints once, then per frame the keypoint detector on the driving
      frame, the keypoint normalisation (relative motion, adapted scale, relative jacobians) and the whole
      generator (its encoder re-encodes the source every frame, and it warps the source at full resolution for
      its ``deformed`` output); predictions kept in a list;
  (b) Animator float32, eager and torch.compile'd: exact (max abs diff to (a));
  (c) Animator bfloat16 (float16 on CUDA), eager and compiled, with PSNR against (a);
  (d) Animator with the OpenVINO backend (float32; bfloat16 where the CPU has it natively);
  (e) live ``step()`` latency, batch 1.
Each mode is measured on a long clip (--frames, median ms per frame; the mean with --batch-size > 1) and a
short one (--short frames, one ``animate()`` call on a photo not seen before, all its source work included,
ms per frame), and its peak RSS in a fresh process (load, warm-up or compilation, --rss-frames frames).

TPSMM (--config tpsmm-vox, tpsmm-taichi ..., or a TPSMM yaml): row (a) is its authors' demo loop
(benchmarks/tpsmm_demo_loop.py: relative mode, the dense motion and inpainting networks whole every frame, with
the inpainting network's second warp of each encoder level for its ``warped_encoder_maps``),
the same Animator rows follow (no OpenVINO rows: the backend runs FOMM only). --compare vox-256 measures FOMM's
demo loop and the same modes in the same process after it, prints its table too and then each mode's speed-up
over its own demo loop for both families (issue 26's target: TPSMM's at least FOMM's); --baseline vox-256 gives
only FOMM's float32 time per frame beside it.

Against the machine's own ceiling (issue 27): the table's head names the CPU and its flags (avx2, avx512f,
avx512_bf16, amx_tile), the reference convolution rate in each precision (one 3x3 convolution, 256 channels,
64x64, channels-last, at the benchmark's thread count: fomm_lab.engine.fast.tune.reference_rate) and the FLOPs per
frame (torch.utils.flop_counter: the paper loop's frame, keypoint detector + whole generator; the Animator's frame,
keypoint detector + dense motion + decoder in their exact inference form with every convolution direct); each row's
"of ceiling" is its FLOPs per frame / its time per frame / the reference rate of its precision (Winograd's saved
multiplications count as done, so a row can pass 100 %). The "-tuned" rows run the forms tuned for this machine
(Animator(tune=True): measured first if the tuning cache lacks them, then cached); the others the fixed rule
(tune=False).

Targets (issue 14): float32 >= 1.9x (a); bfloat16 >= 8x (a) at >= 40 dB; peak RSS <= 800 MB for bfloat16
eager and <= 1000 MB for every compiled mode. Issue 27: float32 >= 70 % of the float32 ceiling, bfloat16 >= 60 %
of the bfloat16 ceiling where the CPU has it natively; vox-mobile-256's live step (e) at --threads 2 <= 40 ms on an
AMX CPU (25 fps), <= 100 ms (10 fps) on one with AVX512-BF16 and no AMX. PaddleGAN's vox-512: at most 4.5x
vox-256's float32 time per frame (--config vox-512 --baseline vox-256 prints the ratio).
Streaming memory: --rss-growth 60 600 prints the float32 peak RSS after 60 and 600 frames (growth < 100 MB).
Like the command line, the benchmark keeps large freed blocks for reuse (fomm_lab.allocator); --malloc-defaults
measures with glibc's defaults instead.

usage: python benchmarks/bench_engine.py [--config vox-256] [--baseline CONFIG] [--compare CONFIG] [--frames 12]
           [--short 6] [--threads 1]
           [--modes float32,float32-tuned,float32-compiled,bfloat16,bfloat16-tuned,bfloat16-compiled,
           openvino,openvino-bfloat16]
           [--rss-frames 8 | --no-rss] [--rss-growth 60 600] [--device cpu|cuda] [--batch-size N]
           [--include-slow-bf16]
vox-512 is 4x the work of vox-256: e.g. --config vox-512 --baseline vox-256 --frames 4 --short 2.
By default the bfloat16 modes are timed only on CPUs with native bfloat16 (AVX512-BF16 or AMX; elsewhere they
are emulated and many times slower than float32): --include-slow-bf16 times them anyway. Their peak RSS, which
does not depend on speed, is measured everywhere (torch backend).
On a GPU: --device cuda --batch-size 32 --frames 256 (batched fps in float16; (e) is the live latency).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from memory import peak_rss_mb
from torch.utils.flop_counter import FlopCounterMode
from tpsmm_demo_loop import make_animation as tpsmm_demo_loop

from fomm_lab import Animator
from fomm_lab.allocator import keep_freed_blocks
from fomm_lab.device import cpu_has_native_bfloat16, cpu_info
from fomm_lab.engine.families import config_and_family
from fomm_lab.engine.fast.tune import apply_choices, capture_layers, clear_choices, reference_rate
from fomm_lab.engine.fast.variants import inference_networks
from fomm_lab.engine.motion import normalize_keypoints
from fomm_lab.engine.nets.generator import warp
from fomm_lab.hub.registry import resolve_model

MODES = {
    "float32": {"dtype": "float32", "tune": False},
    "float32-tuned": {"dtype": "float32", "tune": True},
    "float32-compiled": {"dtype": "float32", "compile": True, "tune": False},
    "bfloat16": {"dtype": "bfloat16", "tune": False},
    "bfloat16-tuned": {"dtype": "bfloat16", "tune": True},
    "bfloat16-compiled": {"dtype": "bfloat16", "compile": True, "tune": False},
    "float16": {"dtype": "float16"},
    "float16-compiled": {"dtype": "float16", "compile": True},
    "openvino": {"dtype": "float32", "backend": "openvino"},
    "openvino-bfloat16": {"dtype": "bfloat16", "backend": "openvino"},
}
CPU_MODES = ["float32", "float32-tuned", "float32-compiled", "bfloat16", "bfloat16-tuned", "bfloat16-compiled",
             "openvino", "openvino-bfloat16"]
CUDA_MODES = ["float32", "float32-compiled", "float16", "float16-compiled"]


def random_model(config: str, device: str, fuse: bool = True):
    """A model of any family with random weights: ``config`` a registry name (its shipped config; never its
    weights), a shipped config name or a yaml. fuse=False: FOMM's networks as the checkpoint has them."""
    reference, _ = resolve_model(config)
    cfg, family = config_and_family(reference)
    return family.load(cfg, None, device=device, fuse=fuse)


def clip(frames: int, size: tuple[int, int] = (256, 256), seed: int = 0) -> list[np.ndarray]:
    """A smooth synthetic driving clip: a textured image drifting, turning and scaling."""
    width, height = size
    rng = np.random.default_rng(seed)
    base = (rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8)
    base = cv2.resize(base, (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        m = cv2.getRotationMatrix2D((width, height), 10 * np.sin(6 * t), 1 + 0.1 * t)
        m[:, 2] += [20 * np.sin(4 * t) - width / 2, 15 * t - height / 2]
        out.append(cv2.warpAffine(base, m, (width, height), borderMode=cv2.BORDER_REFLECT))
    return out


class Clock:
    """CPU time of this process at one thread (steady under other load); wall time at more threads (CPU time would
    sum the threads) and on CUDA (after synchronising the device)."""

    def __init__(self, device: torch.device, threads: int = 1):
        self.cuda = device.type == "cuda"
        self.wall = self.cuda or threads > 1

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() if self.wall else time.process_time()


@torch.no_grad()
def make_animation(model, source: np.ndarray, driving: list[np.ndarray], clock: Clock) -> tuple[list, list[float]]:
    """The paper demo's loop, as the demo runs it: the whole clip as one (1, 3, T, H, W) tensor, the source's
    and the first driving frame's keypoints once, then per frame keypoints, normalisation and the generator.
    Returns the float predictions (H, W, 3) and each frame's time. A TPSMM model runs its authors' loop
    (:mod:`tpsmm_demo_loop`, relative mode)."""
    device = model.device
    if model.family == "tpsmm":
        return tpsmm_demo_loop(model.networks, source, driving, clock, device=device)
    source_t = torch.from_numpy(source[None].astype(np.float32) / 255).permute(0, 3, 1, 2).to(device)
    video = torch.from_numpy(np.stack(driving)[None].astype(np.float32) / 255).permute(0, 4, 1, 2, 3)
    kp_source = model.kp_detector(source_t)
    kp_initial = model.kp_detector(video[:, :, 0].to(device))
    predictions, times = [], []
    for index in range(video.shape[2]):
        start = clock()
        frame = video[:, :, index].to(device)
        kp_driving = model.kp_detector(frame)
        kp_norm = normalize_keypoints(kp_source, kp_driving, kp_initial, relative=True, adapt_scale=True)
        generated = model.generator(source_t, kp_norm, kp_source)
        out = generated["prediction"]
        deformed_source(model.generator, source_t, generated["deformation"])
        predictions.append(np.transpose(out.float().cpu().numpy(), (0, 2, 3, 1))[0])
        times.append(clock() - start)
    return predictions, times


def deformed_source(generator, source: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """The source warped at full resolution: the ``deformed`` output that the paper's generator computes with every
    prediction (for its visualisations; the demo discards it)."""
    return warp(source, deformation, align_corners=generator.align_corners, border=generator.border,
                corner_resize=generator.corner_resize)


def timed_frames(frames: Iterator[np.ndarray], clock: Clock) -> tuple[list[np.ndarray], list[float]]:
    """Pull every frame of ``frames``, timing each one."""
    out, times = [], []
    start = clock()
    for frame in frames:
        now = clock()
        times.append(now - start)
        out.append(frame)
        start = clock()
    return out, times


def psnr(reference: np.ndarray, frames: np.ndarray) -> float:
    a = np.clip(np.round(reference * 255), 0, 255)
    b = np.clip(np.round(frames * 255), 0, 255)
    mse = float(((a - b) ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-12))


@dataclass
class Row:
    name: str
    long_ms: float | None = None
    short_ms: float | None = None
    accuracy: str = "-"
    warmup_s: float | None = None
    rss_mb: float | None = None
    note: str = ""
    psnr_db: float | None = None
    extra: dict = field(default_factory=dict)
    dtype: torch.dtype = torch.float32  # the precision it ran in: its ceiling
    gflop: float | None = None  # per frame


def run_mode(name: str, model, source: np.ndarray, short_source: np.ndarray, driving: list[np.ndarray],
             short: list[np.ndarray], reference: list[np.ndarray], clock: Clock, batch_size: int) -> Row:
    options = MODES[name]
    start = time.perf_counter()
    animator = Animator(model, smoothing=0, float_output=True, batch_size=batch_size, **options)
    list(animator.animate(source, driving[:2]))  # warm-up (and compilation)
    warmup = time.perf_counter() - start
    frames, times = timed_frames(animator.animate(source, driving), clock)
    # batched, the frames of a batch arrive together: the mean over the clip, not the median frame
    long_ms = 1000 * (statistics.median(times) if batch_size == 1 else sum(times) / len(times))
    start_short = clock()
    list(animator.animate(short_source, short))
    short_ms = 1000 * (clock() - start_short) / len(short)
    stacked, ref = np.stack(frames), np.stack(reference)
    row = Row(f"Animator {name}", long_ms, short_ms, warmup_s=warmup, dtype=animator.dtype)
    if animator.dtype == torch.float32:
        row.accuracy = f"max abs diff {float(np.abs(stacked - ref).max()):.1e}"
    else:
        row.psnr_db = psnr(ref, stacked)
        row.accuracy = f"PSNR {row.psnr_db:.1f} dB"
    if options.get("dtype") != "float32" and animator.dtype == torch.float32:
        row.note = "ran float32 (no native reduced precision)"
    return row


def live_row(name: str, model, source: np.ndarray, driving: list[np.ndarray], clock: Clock) -> Row:
    animator = Animator(model, smoothing=0, **MODES[name])
    animator.set_source(source)
    animator.set_reference(driving[0])
    animator.step(driving[1])  # warm-up / compilation
    steps = []
    for frame in driving:
        start = clock()
        animator.step(frame)
        steps.append(clock() - start)
    return Row(f"(e) live step(), {name}", 1000 * statistics.median(steps),
               accuracy=f"p90 {1000 * float(np.percentile(steps, 90)):.1f} ms", dtype=animator.dtype)


def rss_child(args: argparse.Namespace) -> None:
    """One mode in this fresh process: load, warm up, animate --rss-frames frames; print the peak RSS."""
    model = random_model(args.config, args.device, fuse=args.rss_child != "paper")
    size = tuple(model.frame_size)
    source, driving = clip(1, size, seed=1)[0], clip(30, size)
    driving = [driving[i % len(driving)] for i in range(args.rss_frames)]
    if args.rss_child == "paper":
        make_animation(model, source, driving, Clock(model.device))
    else:
        animator = Animator(model, smoothing=0, batch_size=args.batch_size, **MODES[args.rss_child])
        for _ in animator.animate(source, driving):
            pass
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def measure_rss(mode: str, args: argparse.Namespace) -> float | None:
    cmd = [sys.executable, __file__, "--rss-child", mode, "--rss-frames", str(args.rss_frames), "--config",
           args.config, "--device", args.device, "--threads", str(args.threads), "--batch-size", str(args.batch_size),
           *(["--malloc-defaults"] if args.malloc_defaults else [])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  peak RSS of {mode} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def paper_gflop(model, source: np.ndarray, driving: list[np.ndarray], clock: Clock) -> float:
    """GFLOP of one frame of the paper's loop (:func:`make_animation`: two frames' count minus one frame's, so the
    once-per-clip keypoints are left out), counted by torch.utils.flop_counter."""
    counts = []
    for frames in (driving[:1], driving[:2]):
        with FlopCounterMode(display=False) as counter:
            make_animation(model, source, frames, clock)
        counts.append(counter.get_total_flops())
    return (counts[1] - counts[0]) / 1e9


def animator_gflop(model, source: np.ndarray, frame: np.ndarray) -> float:
    """GFLOP of one frame of the Animator in float32 (keypoint detector, motion transfer, dense motion and decoder:
    the source's work is done once, before), every fused convolution in its direct form (Winograd's transforms
    would count fewer multiplications than the convolutions they compute)."""
    animator = Animator(model, dtype="float32", smoothing=0, tune=False)
    nets = inference_networks(model, dtype=torch.float32, tune=False)  # the Animator's networks
    layers = capture_layers(model, nets)
    apply_choices(nets, [{"conv": layer.conv, "input": layer.input, "choice": "direct"} for layer in layers])
    try:
        animator.set_source(source)
        animator.set_reference(frame)
        with FlopCounterMode(display=False) as counter:
            animator.step(frame)
    finally:
        clear_choices(nets)
    return counter.get_total_flops() / 1e9


def ceilings(device: torch.device) -> dict[torch.dtype, float]:
    """The reference convolution's rate (GFLOP/s) in float32 and bfloat16 on the CPU at the current thread count
    (:func:`fomm_lab.engine.fast.tune.reference_rate`); none on other devices."""
    if device.type != "cpu":
        return {}
    return {dtype: reference_rate(dtype) for dtype in (torch.float32, torch.bfloat16)}


def fraction(row: Row, rates: dict[torch.dtype, float]) -> float | None:
    """The row's rate (its FLOPs per frame / its time per frame) as a fraction of its precision's ceiling."""
    ceiling = rates.get(row.dtype)
    if ceiling is None or row.gflop is None or not row.long_ms:
        return None
    return row.gflop / (row.long_ms / 1000) / ceiling


def machine_line(device: torch.device, rates: dict[torch.dtype, float]) -> str:
    """The head of every table: the CPU, its relevant flags and its reference rates."""
    if device.type != "cpu":
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
        return f"device {name} (no reference rate off the CPU); CPU {cpu_info().describe()}"
    native = "native bfloat16" if cpu_has_native_bfloat16() else "bfloat16 emulated"
    measured = ", ".join(f"{str(d).removeprefix('torch.')} {r:.1f}" for d, r in rates.items())
    return (f"CPU {cpu_info().describe()}, {native}; {dispatch()}; reference 3x3 convolution (256 channels, 64x64, "
            f"channels-last, {torch.get_num_threads()} thread(s)): {measured} GFLOP/s")


def dispatch() -> str:
    """The instruction sets the kernels were allowed: torch's own kernels (ATEN_CPU_CAPABILITY can lower it) and
    oneDNN's limit where ONEDNN_MAX_CPU_ISA sets one (family_target.py --emulate avx2 sets both, and MKL's)."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return f"torch kernels {torch.backends.cpu.get_cpu_capability()}" + (f", oneDNN at most {limit}" if limit else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vox-256", help="shipped config name or yaml (random weights)")
    parser.add_argument("--baseline", default=None, metavar="CONFIG",
                        help="also time float32 on this config and print the per-frame ratio (vox-256 for vox-512)")
    parser.add_argument("--compare", default=None, metavar="CONFIG",
                        help="also measure CONFIG (its demo loop and the same modes), print its table and each mode's "
                             "speed-up over its own demo loop beside this config's (tpsmm-vox against vox-256)")
    parser.add_argument("--rss-growth", type=int, nargs=2, default=None, metavar=("FEW", "MANY"),
                        help="float32 peak RSS streaming FEW and MANY frames (fresh processes): memory must not grow")
    parser.add_argument("--frames", type=int, default=12, help="frames of the long clip")
    parser.add_argument("--short", type=int, default=6, help="frames of the short clip")
    parser.add_argument("--modes", default=None, help="comma-separated modes (default: all for the device)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1, help="driving frames per forward pass")
    parser.add_argument("--rss-frames", type=int, default=8, help="frames animated by each peak-RSS process")
    parser.add_argument("--no-rss", action="store_true", help="skip the fresh-process peak RSS measurements")
    parser.add_argument("--include-slow-bf16", action="store_true",
                        help="measure bfloat16 modes on CPUs without native bfloat16 too")
    parser.add_argument("--malloc-defaults", action="store_true",
                        help="keep glibc's allocator defaults (the command line and the lab keep large freed blocks "
                             "for reuse: fomm_lab.allocator)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write each config's demo loop and modes (ms per frame, speed-up) to PATH")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.malloc_defaults:
        keep_freed_blocks()
    torch.set_num_threads(args.threads)
    logging.getLogger("fomm_lab").setLevel(logging.ERROR)  # "random weights" warnings
    if args.rss_child is not None:
        rss_child(args)
        return

    device = torch.device(args.device)
    clock = Clock(device, args.threads)
    modes = args.modes.split(",") if args.modes else (CUDA_MODES if device.type == "cuda" else CPU_MODES)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    skipped: dict[str, str] = {}
    if device.type == "cpu" and not cpu_has_native_bfloat16() and not args.include_slow_bf16:
        for mode in [m for m in modes if "bfloat16" in m]:
            skipped[mode] = "speed not measured: no native bfloat16 on this CPU (--include-slow-bf16 to measure)"
        modes = [m for m in modes if m not in skipped]
    if any(MODES[m].get("backend") == "openvino" for m in modes):
        from fomm_lab.engine.fast.backends import openvino_installed

        if not openvino_installed():
            for mode in [m for m in modes if MODES[m].get("backend") == "openvino"]:
                skipped[mode] = "not measured: openvino is not installed (pip install 'fomm-lab[openvino]')"
            modes = [m for m in modes if m not in skipped]

    rates = ceilings(device)
    report = measure(args.config, args, modes, dict(skipped), clock)
    print(machine_line(device, rates))
    print_report(report, args, rates, device, clock)
    if args.rss_growth:
        few, many = (_growth_rss(n, args) for n in args.rss_growth)
        if few is not None and many is not None:
            print(f"peak RSS float32 streaming {args.rss_growth[0]} / {args.rss_growth[1]} frames: {few:.0f} / "
                  f"{many:.0f} MB (growth {many - few:+.0f} MB; target < 100 MB)")
    reports = [report]
    if args.compare:
        other = measure(args.compare, args, modes, dict(skipped), clock)
        print()
        print_report(other, args, rates, device, clock)
        _compare(report, other)
        reports.append(other)
    if args.json:
        write_json(args.json, machine_line(device, rates), reports)
    rows, base_long, model = report.rows, report.rows[0].long_ms, report.model
    assert base_long is not None
    if args.baseline:
        _baseline(args, rows, clock)
    if model.family == "fomm":
        _targets(rows, base_long, args.config, rates, wall=clock.wall)
    else:
        print(f"\n(issue 14's targets are FOMM's; {model.family} rows are for comparison)")


@dataclass
class Report:
    """One config's rows: (a) its demo loop first, then the Animator's modes and live steps."""
    config: str
    model: object
    rows: list[Row]
    skipped: dict[str, str]
    paper_flops: float
    frame_flops: float


def measure(config: str, args: argparse.Namespace, modes: list[str], skipped: dict[str, str], clock: Clock) -> Report:
    """Time ``config``'s demo loop (a) and the Animator's ``modes`` (random weights, the synthetic clips)."""
    torch.manual_seed(0)  # random weights, never a registry download
    paper = random_model(config, args.device, fuse=False)  # the networks as the checkpoint has them
    torch.manual_seed(0)
    model = random_model(config, args.device)  # the same random weights, fused
    if model.family != "fomm":
        for mode in [m for m in modes if MODES[m].get("backend") == "openvino"]:
            skipped[mode] = f"not measured: the openvino backend runs FOMM models only, not {model.family}"
        modes = [m for m in modes if m not in skipped]
    size = tuple(model.frame_size)
    source, short_source = clip(1, size, seed=1)[0], clip(1, size, seed=2)[0]
    driving, short = clip(args.frames, size), clip(args.short, size, seed=3)

    paper_flops = paper_gflop(paper, source, driving, clock)
    frame_flops = animator_gflop(model, source, driving[1])
    make_animation(paper, source, driving[:2], clock)  # warm-up
    reference, paper_times = make_animation(paper, source, driving, clock)
    start = clock()
    make_animation(paper, short_source, short, clock)
    paper_short = 1000 * (clock() - start) / len(short)
    baseline_name = "(a) authors' demo loop, float32" if model.family == "tpsmm" else "(a) paper make_animation, float32"
    rows = [Row(baseline_name, 1000 * statistics.median(paper_times), paper_short, gflop=paper_flops)]
    measured = [(rows[0], "paper")]
    for mode in modes:
        rows.append(run_mode(mode, model, source, short_source, driving, short, reference, clock, args.batch_size))
        rows[-1].gflop = frame_flops
        measured.append((rows[-1], mode))
    for mode in [m for m in skipped if "bfloat16" in m and MODES[m].get("backend") is None]:
        rows.append(Row(f"Animator {mode}", note=skipped.pop(mode)))  # emulated: its memory still counts
        measured.append((rows[-1], mode))
    live_modes = [m for m in ("float32", "float32-tuned", "float32-compiled", "bfloat16", "bfloat16-tuned",
                              "bfloat16-compiled", "float16-compiled") if m in modes]
    for mode in live_modes:
        rows.append(live_row(mode, model, source, driving, clock))
        rows[-1].gflop = frame_flops
    if not args.no_rss:
        child_args = argparse.Namespace(**{**vars(args), "config": config})
        for row, mode in measured:
            row.rss_mb = measure_rss(mode, child_args)
    return Report(config, model, rows, skipped, paper_flops, frame_flops)


def print_report(report: Report, args: argparse.Namespace, rates: dict[torch.dtype, float], device: torch.device,
                 clock: Clock) -> None:
    """The table of one config's rows, each with its speed-up over that config's demo loop (a)."""
    rows, model = report.rows, report.model
    size = tuple(model.frame_size)
    base_long, base_short = rows[0].long_ms, rows[0].short_ms
    assert base_long is not None and base_short is not None
    timing = ("wall time (synchronised)" if device.type == "cuda" else
              f"wall time, {args.threads} threads" if clock.wall else "CPU time")
    print(f"FLOPs per frame: paper loop {report.paper_flops:.1f} GFLOP (keypoint detector + whole generator), Animator "
          f"{report.frame_flops:.1f} GFLOP (keypoint detector + dense motion + decoder, direct convolutions)")
    print(f"config {report.config} ({model.family}, random weights), {size[0]}x{size[1]}, device {device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, {timing}, long clip {args.frames} frames (median ms/frame), short "
          f"clip {args.short} frames (one animate() call, ms/frame), batch size {args.batch_size}")
    header = (f"{'mode':40} {'long ms':>8} {'x (a)':>6} {'of ceiling':>10} {'short ms':>9} {'x (a)':>6}  "
              f"{'accuracy':22} {'warm-up':>8} {'peak RSS':>9}")
    print(header)
    print("-" * len(header))
    for row in rows:
        long_x = f"{base_long / row.long_ms:5.2f}x" if row.long_ms else ""
        short_x = f"{base_short / row.short_ms:5.2f}x" if row.short_ms else ""
        warm = f"{row.warmup_s:7.1f}s" if row.warmup_s is not None else ""
        rss = f"{row.rss_mb:6.0f} MB" if row.rss_mb is not None else ""
        short_ms = f"{row.short_ms:9.1f}" if row.short_ms else ""
        long_ms = f"{row.long_ms:8.1f}" if row.long_ms else ""
        share = fraction(row, rates)
        ceiling = f"{100 * share:9.0f}%" if share is not None else ""
        print(f"{row.name:40} {long_ms:>8} {long_x:>6} {ceiling:>10} {short_ms:>9} {short_x:>6}  "
              f"{row.accuracy:22} {warm:>8} {rss:>9} {row.note}")
    for mode, why in report.skipped.items():
        print(f"{'Animator ' + mode:40} {why}")


def _compare(ours: Report, theirs: Report) -> None:
    """Each mode's speed-up over its own demo loop, for both configs (issue 26: TPSMM's at least FOMM's)."""
    print(f"\nspeed-up over each one's own demo loop (a), long clip: {ours.config} against {theirs.config}")
    base_ours, base_theirs = ours.rows[0].long_ms, theirs.rows[0].long_ms
    assert base_ours is not None and base_theirs is not None
    by_name = {row.name: row for row in theirs.rows[1:]}
    for row in ours.rows[1:]:
        other = by_name.get(row.name)
        if row.long_ms and other is not None and other.long_ms:
            x_ours, x_theirs = base_ours / row.long_ms, base_theirs / other.long_ms
            verdict = "at least" if x_ours >= x_theirs else f"{100 * (1 - x_ours / x_theirs):.0f} % short of"
            print(f"  {row.name:38} {x_ours:5.2f}x against {x_theirs:5.2f}x ({verdict} {theirs.config}'s)")


def write_json(path: str, machine: str, reports: list[Report]) -> None:
    """{"machine": the table's head, "configs": {config: {"family", "demo_loop_ms", "modes": {row name: {"ms",
    "speedup"}}}}} for the long clip: what family_target.py reads."""
    configs = {}
    for report in reports:
        base = report.rows[0].long_ms
        assert base is not None
        modes = {row.name: {"ms": row.long_ms, "speedup": base / row.long_ms} for row in report.rows[1:] if row.long_ms}
        configs[report.config] = {"family": report.model.family, "demo_loop_ms": base, "modes": modes}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"machine": machine, "configs": configs}, fh, indent=1)


def _growth_rss(frames: int, args: argparse.Namespace) -> float | None:
    return measure_rss("float32", argparse.Namespace(**{**vars(args), "rss_frames": frames}))


def _baseline(args: argparse.Namespace, rows: list[Row], clock: Clock) -> None:
    """float32 per frame on --baseline's config, and this config's ratio to it."""
    ours = next((r for r in rows if r.name == "Animator float32"), None)
    if ours is None or ours.long_ms is None:
        print("--baseline needs the float32 mode")
        return
    torch.manual_seed(0)
    base = random_model(args.baseline, args.device)
    size = tuple(base.frame_size)
    source, driving = clip(1, size, seed=1)[0], clip(args.frames, size)
    animator = Animator(base, dtype="float32", smoothing=0, float_output=True, batch_size=args.batch_size)
    list(animator.animate(source, driving[:2]))  # warm-up
    _, times = timed_frames(animator.animate(source, driving), clock)
    base_ms = 1000 * statistics.median(times)
    print(f"float32 per frame: {args.config} {ours.long_ms:.1f} ms, {args.baseline} {base_ms:.1f} ms: "
          f"{ours.long_ms / base_ms:.2f}x")


def _targets(rows: list[Row], base: float, config: str, rates: dict[torch.dtype, float], wall: bool = False) -> None:
    """Say which of issue 14's and issue 27's targets (and, for vox-mobile-256, PaddleGAN's) this run meets.
    ``wall``: times are wall time at several threads, whose level swings between runs (docs/performance.md), too
    noisy to compare the live step with animate(): that check then needs --threads 1."""
    by_name = {row.name: row for row in rows}
    checks: list[tuple[str, Callable[[Row], bool], list[str]]] = [
        ("float32 >= 1.9x (a)", lambda r: base / r.long_ms >= 1.9, ["Animator float32", "Animator float32-compiled"]),
        ("bfloat16 >= 8x (a) at >= 40 dB", lambda r: base / r.long_ms >= 8 and (r.psnr_db or 0) >= 40,
         ["Animator bfloat16", "Animator bfloat16-compiled", "Animator openvino-bfloat16"]),
        ("peak RSS <= 800 MB (bfloat16 eager)", lambda r: r.rss_mb <= 800, ["Animator bfloat16"]),
        ("peak RSS <= 1000 MB (compiled)", lambda r: r.rss_mb <= 1000,
         [n for n in by_name if n.startswith("Animator") and n.endswith("-compiled")]),
    ]
    if rates:
        def share(r: Row) -> float:
            return fraction(r, rates) or 0.0

        checks.append(("float32 >= 70 % of the float32 ceiling", lambda r: share(r) >= 0.7,
                       ["Animator float32", "Animator float32-tuned", "Animator float32-compiled"]))
        if cpu_has_native_bfloat16():
            checks.append(("bfloat16 >= 60 % of the bfloat16 ceiling", lambda r: share(r) >= 0.6,
                           ["Animator bfloat16", "Animator bfloat16-tuned", "Animator bfloat16-compiled"]))
        if wall:
            print("target live step never slower per frame than animate(): compare at --threads 1 (CPU time)")
        else:
            checks.append(("live step never slower per frame than animate() (5 % timing noise allowed)",
                           lambda r: r.long_ms <= 1.05 * by_name[r.name.replace("(e) live step(), ", "Animator ")].long_ms,
                           [n for n in by_name if n.startswith("(e)")
                            and n.replace("(e) live step(), ", "Animator ") in by_name]))
    if "mobile" in config:
        # Issue 27: >= 25 fps on 2 threads of an AMX CPU, >= 10 fps on one with AVX512-BF16 and no AMX.
        budget = 40 if "amx_bf16" in cpu_info().flags else 100 if cpu_has_native_bfloat16() else None
        if budget is not None:
            checks.append((f"live step <= {budget} ms (vox-mobile-256, at --threads 2)", lambda r: r.long_ms <= budget,
                           [n for n in by_name if n.startswith("(e)")]))
    print()
    for target, ok, names in checks:
        quantity = "rss_mb" if "RSS" in target else "long_ms"
        measured = [by_name[n] for n in names if n in by_name and getattr(by_name[n], quantity) is not None]
        if not measured:
            print(f"target {target}: not measured")
            continue
        verdicts = ", ".join(f"{r.name.removeprefix('Animator ')} {'met' if ok(r) else 'MISSED'}" for r in measured)
        print(f"target {target}: {verdicts}")


if __name__ == "__main__":
    main()
