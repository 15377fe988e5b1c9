"""Winograd bands on this CPU: one convolution per row, direct against Winograd in one pass and in bands of tiles.

For each layer of the table (the wide layers of FOMM's and TPSMM's networks), 1 thread by default, batch 1, float32,
NCHW: median ms of --repeats calls of ``F.conv2d`` (direct, oneDNN), of :class:`fomm_lab.engine.fast.winograd.
WinogradPlan` with every tile in one band ("whole"), with bands of 16 to 256 tiles, and of its tile-major form with
oneDNN's products (``WinogradPlan.tile_major``, "oneDNN 16" to "oneDNN 64": its transforms' band size). The shipped
band sizes (``BAND_TILES``) are marked; the best column of each row is starred. Large freed blocks are kept for
reuse, as the command line does (``fomm_lab.allocator``). docs/performance.md "Winograd in bands of tiles" and
"Winograd's products by oneDNN" hold the figures per CPU kind.

usage: python benchmarks/bench_winograd.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

LAYERS = (  # (kernel, in channels, out channels, output side)
    (3, 256, 256, 128), (3, 512, 512, 64), (3, 512, 512, 32), (3, 256, 256, 64), (3, 128, 128, 128),
    (3, 64, 64, 256), (3, 64, 64, 128), (2, 512, 1024, 32), (2, 512, 512, 64), (2, 256, 512, 64),
    (2, 256, 256, 32), (2, 128, 256, 128),
)
BANDS = (16, 32, 64, 128, 256)
ONEDNN_BANDS = (16, 32, 64)


def median_ms(call, repeats: int) -> float:
    call()  # warm-up: allocations, oneDNN's primitive cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def layer_times(r: int, cin: int, cout: int, side: int, repeats: int) -> dict[str, float]:
    """Median ms of one r x r convolution (cin -> cout channels, side x side output, batch 1, float32): direct,
    Winograd in one band ("whole"), in bands of each size of :data:`BANDS` tiles, and tile-major with transform bands
    of each size of :data:`ONEDNN_BANDS`."""
    import torch
    import torch.nn.functional as F

    from fomm_lab.engine.fast.winograd import WinogradPlan

    padding = 1 if r == 3 else 0
    x = torch.randn(1, cin, side + r - 1 - 2 * padding, side + r - 1 - 2 * padding)
    weight = torch.randn(cout, cin, r, r) / (cin * r * r) ** 0.5
    bias = torch.randn(cout)
    plan = WinogradPlan(r)
    kernels = plan.kernels(weight)
    cells = {"direct": median_ms(lambda: F.conv2d(x, weight, bias, padding=padding), repeats),
             "whole": median_ms(lambda: plan(x, kernels, bias, padding, band_tiles=side * side), repeats)}
    for band in BANDS:
        cells[f"{band}"] = median_ms(lambda band=band: plan(x, kernels, bias, padding, band_tiles=band), repeats)
    for band in ONEDNN_BANDS:
        cells[f"oneDNN {band}"] = median_ms(lambda band=band: plan.tile_major(x, kernels, bias, padding, band), repeats)
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell (default 5)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from fomm_lab.allocator import keep_freed_blocks
    from fomm_lab.device import cpu_info
    from fomm_lab.engine.fast.winograd import BAND_TILES

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    keep_freed_blocks()  # as the command line and the lab do: large buffers reused, not mapped afresh per call
    print(f"{cpu_info().describe()}, {args.threads} thread(s), torch {torch.__version__}, median of {args.repeats}, ms")
    heads = ["direct", "whole"] + [f"{b}" for b in BANDS] + [f"oneDNN {b}" for b in ONEDNN_BANDS]
    print("| layer @ output | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    with torch.inference_mode():
        for r, cin, cout, side in LAYERS:
            cells = layer_times(r, cin, cout, side, args.repeats)
            best = min(cells, key=cells.get)
            shown = [f"{cells[h]:.1f}" + ("*" if h == best else "") + (" (shipped)" if h == str(BAND_TILES[r]) else "")
                     for h in heads]
            print(f"| {r}x{r} {cin}->{cout} @ {side}x{side} | " + " | ".join(shown) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
