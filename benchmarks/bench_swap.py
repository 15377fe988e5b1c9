"""Time the face swap stage by stage, per target frame, in float32 and bfloat16.

Stages (fomm_lab.swap.Swapper and fomm_lab.faces.paste.Compositor):
  segmentation    the segment model on one 256x256 target crop (shifts, affines, soft parts)
  reconstruction  encoding the crop, warping the source features and decoding the blend
  parser          the BiSeNet face parser on the crop upscaled to 512x512 (supervised masks)
  swap (unsup.)   one whole unsupervised step: segmentation + mask + reconstruction
  swap (sup.)     one whole supervised step: segmentation + parser + reconstruction
  paste-back      compositing the swapped crop into a full-resolution frame (colour match, feathered mask)

The networks have random weights at the shipped config's widths (the speed is that of the published checkpoints).

    python benchmarks/bench_swap.py [--config vox-256-sem-10segments] [--frames 10] [--threads 1]
                                    [--dtypes float32,bfloat16] [--target-size 1280x720]
    python benchmarks/bench_swap.py --config tests/fixtures/swap-golden/tiny-vox-10segments.yaml \\
                                    --tiny-parser --frames 1 --warmup 0      # a smoke run

Prints milliseconds per frame for each stage and precision (median of --frames timed runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np


def timed(call: Callable[[], object], frames: int, warmup: int) -> float:
    """Median milliseconds of ``call`` over ``frames`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cpu_description() -> str:
    """The CPU's model name and whether it has native bfloat16 (AVX512-BF16, AMX), from /proc/cpuinfo."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return "CPU unknown"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    native = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return f"{name} ({', '.join(native) or 'no native bfloat16'})"


def build(config_ref: str, tiny_parser: bool, dtype: str):
    """A Swapper of random weights at the config's widths, with a face parser (full size or 1/16 wide)."""
    import torch

    from fomm_lab.device import resolve_dtype
    from fomm_lab.swap import Swapper
    from fomm_lab.swap.config import load_segment_config
    from fomm_lab.swap.loader import build_generator, build_segmentation_module
    from fomm_lab.swap.nets.bisenet import PARSER_CLASSES, BiSeNet, BiSeNetWidths
    from fomm_lab.swap.registry import resolve_segment_model

    torch.manual_seed(0)
    path, _ = resolve_segment_model(config_ref)
    config = load_segment_config(path)
    widths = BiSeNetWidths((4, 8, 16, 32), 8, 16, 16, 4) if tiny_parser else BiSeNetWidths()
    parser = BiSeNet(len(PARSER_CLASSES), widths).eval()
    return Swapper(config, build_segmentation_module(config).eval(), build_generator(config).eval(), parser=parser,
                   dtype=resolve_dtype(dtype))


def stage_times(swapper, rng: np.random.Generator, frames: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per target frame of each network stage of ``swapper`` (random source and target)."""
    import torch

    side = swapper.frame_size
    source = swapper.to_tensor([rng.integers(0, 256, (side, side, 3), dtype=np.uint8)])
    target = swapper.to_tensor([rng.integers(0, 256, (side, side, 3), dtype=np.uint8)])
    unsupervised = swapper.options((1, 2), supervised=False)
    supervised = swapper.options(tuple(range(1, 14)), supervised=True)
    state = swapper.prepare(source, unsupervised)
    state_sup = swapper.prepare(source, supervised)
    result = swapper.step(state, target, unsupervised)
    generator = swapper.generator

    def segmentation() -> object:
        with torch.inference_mode(), swapper._autocast():
            return swapper.segmenter(target)

    def reconstruction() -> object:
        with torch.inference_mode(), swapper._autocast():
            return generator.blend(state.features, generator.encode(target), result.deformation, result.visibility,
                                   result.mask)

    def parse() -> object:
        with torch.inference_mode():
            return swapper.parser_logits(target)

    return {
        "segmentation": timed(segmentation, frames, warmup),
        "reconstruction": timed(reconstruction, frames, warmup),
        "parser": timed(parse, frames, warmup),
        "swap (unsup.)": timed(lambda: swapper.step(state, target, unsupervised), frames, warmup),
        "swap (sup.)": timed(lambda: swapper.step(state_sup, target, supervised), frames, warmup),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="vox-256-sem-10segments",
                        help="segment model: registry name, shipped config or yaml (default vox-256-sem-10segments)")
    parser.add_argument("--frames", type=int, default=10, help="timed runs per stage (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's default)")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="precisions (default float32,bfloat16)")
    parser.add_argument("--target-size", default="1280x720", help="full target frame WxH for paste-back")
    parser.add_argument("--tiny-parser", action="store_true", help="a 1/16-wide face parser (smoke runs only)")
    args = parser.parse_args()

    import torch

    from fomm_lab.faces.paste import Compositor
    from fomm_lab.geometry import Box

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.target_size.lower().split("x"))
    rng = np.random.default_rng(0)
    rows: list[tuple[str, dict[str, float]]] = []
    side = 256
    for dtype in args.dtypes.split(","):
        swapper = build(args.config, args.tiny_parser, dtype)
        side = swapper.frame_size
        rows.append((dtype, stage_times(swapper, rng, args.frames, args.warmup)))
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    crop = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    box_side = height // 2
    box = Box(width / 2 - box_side / 2, height / 4, width / 2 + box_side / 2, height / 4 + box_side)
    paste = timed(lambda: Compositor(frame, [box]).paste([crop]), args.frames, args.warmup)

    print(f"face swap, {args.config}, {torch.get_num_threads()} thread(s), {cpu_description()}")
    stages = list(rows[0][1])
    print(f"{'stage':<16}" + "".join(f"{dtype:>12}" for dtype, _ in rows) + "  (ms per frame)")
    for stage in stages:
        print(f"{stage:<16}" + "".join(f"{times[stage]:>12.1f}" for _, times in rows))
    print(f"{'paste-back':<16}{paste:>12.1f}  (numpy/OpenCV, {width}x{height} frame, {box_side}-pixel face square)")


if __name__ == "__main__":
    main()
