"""Time a group photo: a 10 s driving clip on a 3-face 1920x1080 photo, stage by stage.

Stages: face detection on the photo, driving crop (plan + write), animation of each face
(vox-256 networks with random weights: the speed is that of the real checkpoint), compositing every
animated face back into the full photo, and H.264 encoding of the full-resolution result.

    python benchmarks/bench_group.py [--seconds 10] [--dtype auto] [--threads N]

Prints a table (milliseconds per frame and total seconds per stage).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def group_photo() -> np.ndarray:
    """1920x1080 with three real faces (the astronaut photo at three sizes, one mirrored)."""
    from clips import _background, face_patch
    from PIL import Image

    canvas = _background(1920, 1080).copy()
    for x, y, side, mirrored in [(120, 300, 420, False), (800, 380, 320, False), (1380, 240, 380, True)]:
        patch = np.asarray(Image.fromarray(face_patch()).resize((side, side), Image.LANCZOS))
        canvas[y:y + side, x:x + side] = patch[:, ::-1] if mirrored else patch
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch
    from clips import make_face_clip

    from fomm_lab.device import dtype_name, resolve_dtype
    from fomm_lab.engine.animator import Animator
    from fomm_lab.engine.config import load_config
    from fomm_lab.engine.model import FommModel, build_networks
    from fomm_lab.faces.crop import crop_faces
    from fomm_lab.faces.detect import HaarDetector
    from fomm_lab.faces.paste import Compositor
    from fomm_lab.faces.track import plan_video_crop
    from fomm_lab.io import VideoWriter, read_video

    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_face_clip(work / "drive.mp4", seconds=args.seconds, fps=args.fps, size=(640, 480), audio=True)
        photo = group_photo()
        config = load_config("vox-256")
        kp, gen = build_networks(config)
        model = FommModel(kp.eval().requires_grad_(False), gen.eval().requires_grad_(False), config,
                          torch.device("cpu"), name="vox-256 (random weights)")

        start = time.perf_counter()
        crops = crop_faces(photo, 256, faces="all", detector=HaarDetector())
        rows.append(("detect faces in the 1920x1080 photo", time.perf_counter() - start, 1))
        assert len(crops) == 3, f"expected 3 faces, found {len(crops)}"

        start = time.perf_counter()
        plan = plan_video_crop(clip, 256, detector=HaarDetector(), progress=False)
        cropped = plan.write(work / "crop.mp4")
        frames = plan.track().frames
        rows.append(("driving crop (plan + write)", time.perf_counter() - start, frames))

        driving = list(read_video(cropped))
        animated = []
        dtype = resolve_dtype(args.dtype, torch.device("cpu"))
        for i, crop in enumerate(crops):
            animator = Animator(model, smoothing=0, dtype=dtype)
            start = time.perf_counter()
            animated.append(list(animator.animate(crop.image, iter(driving))))
            rows.append((f"animate face {i + 1} ({dtype_name(dtype)})", time.perf_counter() - start, len(driving)))

        compositor = Compositor(photo, [c.box for c in crops], [c.face for c in crops])
        start = time.perf_counter()
        composed = [compositor.paste(list(faces)) for faces in zip(*animated)]
        rows.append(("composite 3 faces into the photo", time.perf_counter() - start, len(composed)))

        start = time.perf_counter()
        with VideoWriter(work / "group.mp4", args.fps, audio_from=cropped) as writer:
            for frame in composed:
                writer.write(frame)
        rows.append(("encode 1920x1080 H.264 (+ sound, checked)", time.perf_counter() - start, len(composed)))

    total = sum(seconds for _, seconds, _ in rows)
    print(f"\nGroup photo: 3 faces, {args.seconds:g} s clip at {args.fps:g} fps, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| stage | frames | total s | ms/frame |\n|---|---:|---:|---:|")
    for name, seconds, count in rows:
        print(f"| {name} | {count} | {seconds:.1f} | {1000 * seconds / count:.0f} |")
    print(f"| **all stages** | | **{total:.1f}** | |")


if __name__ == "__main__":
    main()
