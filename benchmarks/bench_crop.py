"""Time to crop a 10 s 640x480 clip (25 fps, moving face, sine audio) with each face detector backend.

Run: ``python benchmarks/bench_crop.py`` (or call :func:`bench_crop`). Prints one table row per backend:
planning (decode + detect + track) and writing (ffmpeg crop/scale/encode) seconds. face-alignment is
timed only when its weights are already in torch hub's cache; it is never downloaded here.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def bench_crop(seconds: float = 10.0, size: tuple[int, int] = (640, 480), stride: int = 5) -> list[dict]:
    """Crop a generated ``seconds`` clip of ``size`` with every available backend; print and return rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from clips import make_face_clip

    from fomm_lab.faces import FaceAlignmentDetector, HaarDetector, plan_video_crop
    from fomm_lab.faces.detect import face_alignment_weights_cached

    backends = {"haar": HaarDetector, "haar+profile": lambda: HaarDetector(profile=True)}
    if face_alignment_weights_cached():
        backends["face_alignment"] = FaceAlignmentDetector
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_face_clip(Path(tmp) / "clip.mp4", seconds=seconds, size=size)
        for name, make in backends.items():
            detector = make()
            start = time.perf_counter()
            plan = plan_video_crop(clip, detector=detector, stride=stride, progress=False, size=256)
            planned = time.perf_counter()
            plan.write(Path(tmp) / f"{name}.mp4")
            written = time.perf_counter()
            rows.append({"backend": name, "plan_s": planned - start, "write_s": written - planned,
                         "total_s": written - start, "tracks": len(plan.tracks)})
    w, h = size
    print(f"time to crop a {seconds:g} s {w}x{h} clip (25 fps, detection every {stride} frames)")
    print(f"{'backend':<16}{'plan s':>9}{'write s':>9}{'total s':>9}{'tracks':>8}")
    for r in rows:
        print(f"{r['backend']:<16}{r['plan_s']:>9.2f}{r['write_s']:>9.2f}{r['total_s']:>9.2f}{r['tracks']:>8}")
    if "face_alignment" not in backends:
        print(f"{'face_alignment':<16}{'unavailable: weights not in torch hub cache':>43}")
    return rows


if __name__ == "__main__":
    bench_crop()
