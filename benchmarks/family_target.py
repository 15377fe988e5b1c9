"""Issue 26's speed target on this machine: TPSMM's speed-up over its authors' demo loop against FOMM's over the
paper's, mode by mode, as medians over fresh processes.

Steps (the whole check in one command, about 15 minutes at 3 runs with the bfloat16 modes):
  1. ``fomm-lab tune`` for both configs at the benchmark's thread count (the ``-tuned`` modes run its choices);
  2. --runs fresh processes of ``bench_engine.py --config tpsmm-vox --compare vox-256 --no-rss --json ...``
     (each prints its own tables; a single process moves 5-10 % between runs on these machines);
  3. per mode, the median speed-up of each family over its own demo loop and the verdict (TPSMM's at least
     FOMM's), the machine named above the table.

Modes: float32 and float32-tuned; bfloat16 and bfloat16-tuned too where the CPU computes bfloat16 natively.

--emulate avx2 measures as an AVX2-only CPU would run: torch's kernels (ATEN_CPU_CAPABILITY), oneDNN's
(ONEDNN_MAX_CPU_ISA) and MKL's (MKL_ENABLE_INSTRUCTIONS) are held to AVX2, float32 modes only, with the tuning
caches in a temporary FOMM_LAB_HOME (never mixed with this machine's own). It keeps this CPU's caches, memory and
clock: evidence for the AVX2 kind's instruction paths, not a measurement of such a machine.

usage: python benchmarks/family_target.py [--runs 3] [--frames 6] [--short 2] [--threads 1] [--emulate avx2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fomm_lab.device import cpu_has_native_bfloat16

HERE = Path(__file__).resolve().parent
OURS, THEIRS = "tpsmm-vox", "vox-256"
EMULATION = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}


def run(command: list[str], env: dict[str, str]) -> None:
    """Run ``command``, its output passed through; stop with its exit status if it fails."""
    print("$ " + " ".join(command), flush=True)
    done = subprocess.run(command, env=env)
    if done.returncode:
        sys.exit(f"family_target: {command[1]} failed (exit status {done.returncode}); its output is above")


def medians(results: list[dict]) -> list[tuple[str, float, float, int]]:
    """(mode, TPSMM's median speed-up, FOMM's median speed-up, runs) for each mode both families ran."""
    table = []
    for mode in results[0]["configs"][OURS]["modes"]:
        ours = [r["configs"][OURS]["modes"][mode]["speedup"] for r in results if mode in r["configs"][OURS]["modes"]]
        theirs = [r["configs"][THEIRS]["modes"][mode]["speedup"] for r in results
                  if mode in r["configs"][THEIRS]["modes"]]
        if ours and theirs:
            table.append((mode, statistics.median(ours), statistics.median(theirs), min(len(ours), len(theirs))))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh benchmark processes (the medians are over them)")
    parser.add_argument("--frames", type=int, default=6, help="frames of the long clip")
    parser.add_argument("--short", type=int, default=2, help="frames of the short clip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--emulate", choices=sorted(EMULATION), default=None,
                        help="hold torch's, oneDNN's and MKL's kernels to this instruction set (float32 modes only)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="family-target-") as scratch:
        env = dict(os.environ)
        bfloat16 = cpu_has_native_bfloat16() and args.emulate is None
        if args.emulate:
            env.update(EMULATION[args.emulate], FOMM_LAB_HOME=str(Path(scratch) / "home"))
        dtype = "auto" if bfloat16 else "float32"
        modes = "float32,float32-tuned" + (",bfloat16,bfloat16-tuned" if bfloat16 else "")
        for config in (OURS, THEIRS):
            run([sys.executable, "-m", "fomm_lab", "tune", "--config", config, "--threads", str(args.threads),
                 "--dtype", dtype, "--quiet"], env)
        results = []
        for index in range(args.runs):
            out = Path(scratch) / f"run{index}.json"
            print(f"\nrun {index + 1} of {args.runs}", flush=True)
            run([sys.executable, str(HERE / "bench_engine.py"), "--config", OURS, "--compare", THEIRS, "--modes", modes,
                 "--frames", str(args.frames), "--short", str(args.short), "--threads", str(args.threads),
                 "--no-rss", "--json", str(out)], env)
            results.append(json.loads(out.read_text(encoding="utf-8")))

    print(f"\n{results[0]['machine']}" + (f" (emulating {args.emulate})" if args.emulate else ""))
    print(f"issue 26: speed-up over each family's own demo loop, long clip of {args.frames} frames, median of "
          f"{args.runs} fresh processes")
    header = f"{'mode':32} {OURS:>10} {THEIRS:>10}  verdict"
    print(header)
    print("-" * len(header))
    for mode, ours, theirs, runs in medians(results):
        verdict = "met" if ours >= theirs else f"missed by {100 * (1 - ours / theirs):.1f} %"
        print(f"{mode:32} {ours:9.2f}x {theirs:9.2f}x  {verdict}" + (f" ({runs} runs)" if runs != args.runs else ""))


if __name__ == "__main__":
    main()
