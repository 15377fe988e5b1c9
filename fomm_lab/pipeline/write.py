"""Writing a job's outputs: the video (or PNG frames), the side-by-side and the GIF, in one streamed pass,
each file published only once complete."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import Size
from .job import OutputOptions
from .prepare import DrivingPlan, Prepared, driving_frames


@dataclass
class AnimateResult:
    """What :func:`animate` wrote: ``outputs`` by kind (video, side_by_side, gif), the frame count and rate."""

    outputs: dict[str, Path]
    frames: int
    fps: float
    prepared: Prepared
    dtype: str = "float32"


@dataclass
class Written:
    outputs: dict[str, Path]
    frames: int


def side_by_side_height(prepared: Prepared, size: Size, paste: bool) -> int:
    """Common height of the side-by-side columns: the model's size, or for a paste-back the photo's
    height up to twice the model's (so the full photo is not squeezed into a face-sized column)."""
    if not paste:
        return size.height
    return int(min(prepared.source.photo.shape[0], 2 * size.height)) // 2 * 2


def write_outputs(results: Iterator[np.ndarray], output: OutputOptions, driving: DrivingPlan, prepared: Prepared,
                   size: Size, audio: Path | None, paste: bool) -> Written:
    """Stream the frames into the video (or PNG folder) and the side-by-side at once, then make the GIF.
    Each file is published only once complete; a failure leaves none of them half-written."""
    from ..io.export import SideBySideWriter, make_gif, save_png_frames
    from ..io.video import VideoWriter

    fps = driving.fps
    outputs: dict[str, Path] = {}
    count = 0
    with tempfile.TemporaryDirectory(prefix="fomm-lab-") as tmpdir:
        video = output.video if output.video is not None else (Path(tmpdir) / "result.mp4" if output.gif else None)
        frames_folder = video is not None and video.suffix == ""
        with contextlib.ExitStack() as stack:
            sinks: list[Callable[[np.ndarray], None]] = []
            if video is not None and not frames_folder:
                sinks.append(stack.enter_context(VideoWriter(video, fps, audio_from=audio)).write)
            if output.side_by_side is not None:
                column = prepared.source.photo if paste else prepared.source.images[0]
                sbs = stack.enter_context(SideBySideWriter(
                    output.side_by_side, ["source", "driving", "result"], fps,
                    height=side_by_side_height(prepared, size, paste), audio_from=audio))
                drive = driving_frames(driving, size)
                sinks.append(lambda frame: sbs.write([column, next(drive), frame]))

            def tee() -> Iterator[np.ndarray]:
                nonlocal count
                for frame in results:
                    for sink in sinks:
                        sink(frame)
                    count += 1
                    yield frame

            if frames_folder:
                assert video is not None
                save_png_frames(tee(), video, progress=False)
            else:
                for _ in tee():
                    pass
        if output.video is not None:
            outputs["video"] = output.video
        if output.side_by_side is not None:
            outputs["side_by_side"] = output.side_by_side
        if output.gif is not None:
            assert video is not None
            make_gif(video, output.gif, source_fps=fps, width=2 * size.width if paste else size.width,
                     progress=False)
            outputs["gif"] = output.gif
    return Written(outputs, count)


