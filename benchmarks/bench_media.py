"""Media pipeline memory: peak RSS of decode -> animate-stub -> encode for a short and a long clip.

Each run is a fresh Python process that streams N frames of a generated 640x480 25 fps face clip
(with sine audio) through ``read_video`` -> a cheap per-frame numpy stand-in for the model
(centre-crop to 256x256 + blend with a fixed image) -> ``write_video`` (H.264, audio muxed from the
driving clip, trimmed to the same span). Prints one row per N: the Python process's peak RSS, the
largest ffmpeg child's peak RSS, and wall time.

Target: peak RSS growth of the Python process from 300 to 3000 frames < 100 MB (streaming: memory
must not depend on clip length).

usage: python benchmarks/bench_media.py [--frames 300 3000] [--crop]
  --crop  also run the face-crop timing section (benchmarks/bench_crop.py, faces owner)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import peak_rss_mb

FPS = 25
SIZE = (640, 480)
TARGET_GROWTH_MB = 100.0


def stream_once(clip: Path, frames: int, out: Path) -> dict:
    """Decode ``frames`` frames of ``clip``, run the stub on each, encode to ``out``; measure."""
    import numpy as np

    from fomm_lab.io import read_video, resize_to_model, write_video

    still = np.full((256, 256, 3), 128, np.uint8)

    def animate_stub(driving):
        for i, frame in enumerate(driving):
            if i == frames:
                break
            small = resize_to_model(frame, (256, 256)).astype(np.uint16)
            yield ((small + still) // 2).astype(np.uint8)

    start = time.perf_counter()
    with read_video(clip) as reader:
        write_video(out, animate_stub(reader), fps=FPS, audio_from=clip, audio_span=(0.0, frames / FPS),
                    progress=False)
    seconds = time.perf_counter() - start
    written = sum(1 for _ in read_video(out))
    return {"frames": frames, "written": written, "seconds": seconds,
            "rss_mb": peak_rss_mb(),
            "ffmpeg_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def rss_rows(frame_counts: list[int]) -> list[dict]:
    """Make one clip long enough for the largest count; measure each count in a fresh process."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from clips import make_face_clip

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        clip = make_face_clip(Path(tmp) / "driving.mp4", seconds=max(frame_counts) / FPS, fps=FPS, size=SIZE)
        for n in frame_counts:
            child = subprocess.run([sys.executable, __file__, "--child", str(clip), str(n),
                                    str(Path(tmp) / f"out{n}.mp4")],
                                   capture_output=True, text=True, check=True)
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return rows


def print_rss_table(rows: list[dict]) -> None:
    print(f"decode -> animate-stub -> encode, {SIZE[0]}x{SIZE[1]} {FPS} fps clip -> 256x256 + audio")
    print(f"{'frames':>8}{'written':>9}{'seconds':>9}{'py RSS MB':>11}{'ffmpeg RSS MB':>15}")
    for r in rows:
        print(f"{r['frames']:>8}{r['written']:>9}{r['seconds']:>9.1f}{r['rss_mb']:>11.1f}{r['ffmpeg_rss_mb']:>15.1f}")
    growth = rows[-1]["rss_mb"] - rows[0]["rss_mb"]
    verdict = "OK" if growth < TARGET_GROWTH_MB else "OVER TARGET"
    print(f"python RSS growth {rows[0]['frames']} -> {rows[-1]['frames']} frames: {growth:+.1f} MB "
          f"(target < {TARGET_GROWTH_MB:g} MB): {verdict}")


# --- face-crop timing (faces owner) ---------------------------------------------------------------
def face_crop_timing() -> None:
    """Time cropping a 10 s 640x480 clip with each detector backend (see bench_crop.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_crop import bench_crop

    bench_crop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--crop", action="store_true", help="also time face cropping per backend")
    parser.add_argument("--child", nargs=3, metavar=("CLIP", "FRAMES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        clip, frames, out = args.child
        print(json.dumps(stream_once(Path(clip), int(frames), Path(out))))
        return
    print_rss_table(rss_rows(sorted(args.frames)))
    if args.crop:
        face_crop_timing()


if __name__ == "__main__":
    main()
