"""``fomm-lab reconstruct``: the paper's reconstruction evaluation (Sec. 4, "Video reconstruction").

Every test video is reconstructed from its own first frame: the first frame is the source, every frame
in turn the driving frame (absolute keypoints, as the paper's evaluation), with any family's model
(:func:`reconstruction`: the family's own when it has one -- TPSMM's adds its background motion, as its
authors' ``reconstruction.py`` does -- else detect, prepare once and generate through the family's networks).
Reported per video and over all videos, into a CSV written atomically:

* **L1**: the mean absolute difference between the reconstruction and the real frame, pixel values in
  [0, 1], averaged over pixels and channels, then over a video's frames. The summary row ``mean (frames)``
  averages every frame of every video -- the number the paper's code prints; ``mean (videos)`` averages the
  per-video values.
* **AKD** (average keypoint distance, for faces; needs face-alignment's weights): the landmarks of the real
  and of the reconstructed frame (68 points, face-alignment), their mean Euclidean distance in pixels over
  the frames where both are found; ``missing`` is the share of frames with landmarks in the real frame but
  none in the reconstruction.

With ``side_by_side`` each video is also written as ``NAME.mp4``: ground truth | reconstruction.
Frames are streamed: memory does not grow with the video's length.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ..engine.config import check_frame_size
from ..engine.family import MotionModel
from ..engine.frames import tensor_to_frames
from ..io.atomic import atomic_output

Landmarks = Callable[[np.ndarray], "np.ndarray | None"]
"""RGB uint8 (H, W, 3) image -> (68, 2) landmark pixel coordinates, or None when no face is found."""


@dataclass(frozen=True, kw_only=True)
class ReconstructOptions:
    """side_by_side: folder for ``NAME.mp4`` ground truth | reconstruction videos (None: none). max_videos: stop
    after that many videos. batch_size: driving frames per forward pass. progress: progress bars."""

    side_by_side: Path | None = None
    max_videos: int | None = None
    batch_size: int = 8
    progress: bool = True


@dataclass(frozen=True)
class KeypointDistance:
    """AKD over some frames: ``akd`` (pixels, NaN when no frame had landmarks in both), ``missing`` (share of
    frames with landmarks in the real frame but not in the generated one), ``frames`` with both, ``real``
    frames with landmarks in the real frame."""

    akd: float
    missing: float
    frames: int
    real: int


def keypoint_distance(real: Sequence[np.ndarray | None], generated: Sequence[np.ndarray | None]) -> KeypointDistance:
    """AKD and the missing share of paired landmark arrays ((K, 2) each, or None where no face was found)."""
    if len(real) != len(generated):
        raise ValueError(f"{len(real)} real and {len(generated)} generated landmark sets")
    distances, with_real, missing = [], 0, 0
    for a, b in zip(real, generated):
        if a is None:
            continue
        with_real += 1
        if b is None:
            missing += 1
            continue
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"landmarks must be (K, 2) arrays of one shape, got {a.shape} and {b.shape}")
        distances.append(float(np.linalg.norm(a - b, axis=1).mean()))
    return KeypointDistance(akd=float(np.mean(distances)) if distances else math.nan,
                            missing=missing / with_real if with_real else math.nan,
                            frames=len(distances), real=with_real)


def combine(parts: Sequence[KeypointDistance]) -> KeypointDistance:
    """The AKD of several videos together (each frame counts once)."""
    frames = sum(p.frames for p in parts)
    real = sum(p.real for p in parts)
    akd = sum(p.akd * p.frames for p in parts if p.frames) / frames if frames else math.nan
    missing = sum(p.missing * p.real for p in parts if p.real) / real if real else math.nan
    return KeypointDistance(akd=akd, missing=missing, frames=frames, real=real)


@dataclass
class VideoScore:
    """One video's reconstruction: ``frames``, mean ``l1`` and, when measured, its keypoint distance."""

    name: str
    frames: int
    l1: float
    keypoints: KeypointDistance | None = None
    side_by_side: Path | None = None


@dataclass
class ReconstructResult:
    """Every video's score, the CSV written and the summaries."""

    videos: list[VideoScore]
    csv: Path
    per_frame_l1: list[float] = field(default_factory=list, repr=False)

    @property
    def mean_l1(self) -> float:
        """The mean over every frame of every video (the paper's code's number)."""
        return float(np.mean(self.per_frame_l1)) if self.per_frame_l1 else math.nan

    @property
    def mean_video_l1(self) -> float:
        return float(np.mean([v.l1 for v in self.videos])) if self.videos else math.nan

    @property
    def keypoints(self) -> KeypointDistance | None:
        parts = [v.keypoints for v in self.videos if v.keypoints is not None]
        return combine(parts) if parts else None


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _to_tensor(frames: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    array = np.stack(frames).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous().to(device)


Reconstruction = Callable[[torch.Tensor], torch.Tensor]
"""Driving frames (N, 3, H, W) in [0, 1] -> their reconstructions (N, 3, H, W) from one source image."""


def reconstruction(model: MotionModel, source: torch.Tensor) -> Reconstruction:
    """How ``model`` reconstructs frames from ``source`` (1, 3, H, W) in [0, 1], in float32: the family's own
    ``reconstruction(source)`` when it has one (TPSMM: with the background predictor), else the family's networks
    with the driving keypoints as detected (FOMM's evaluation: Sec. 4 of the paper)."""
    own = getattr(model, "reconstruction", None)
    if callable(own):
        return cast(Reconstruction, own(source))
    nets = model.inference_networks()
    kp_source = nets.kp_detector(source)
    state = nets.prepare(source, kp_source)

    def predict(driving: torch.Tensor) -> torch.Tensor:
        kp_driving = model.transfer(kp_source, nets.kp_detector(driving), None, relative=False, scale=1.0)
        return nets.generate(state, kp_driving)

    return predict


@torch.inference_mode()
def reconstruct_video(model: MotionModel, frames: Iterator[np.ndarray], batch_size: int = 8
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """(real frame, reconstruction, L1) for each frame, the first frame being the source (uint8 frames)."""
    predict: Reconstruction | None = None
    for batch in _batches(frames, batch_size):
        driving = _to_tensor(batch, model.device)
        if predict is None:
            predict = reconstruction(model, driving[:1])
        prediction = predict(driving)
        l1 = (prediction.float() - driving).abs().mean(dim=(1, 2, 3)).tolist()
        yield from zip(batch, tensor_to_frames(prediction), l1)


def check_model(config: str | Path) -> None:
    """ConfigError when the frame size of ``config`` (a registry name, shipped config or yaml) does not fit its
    networks (:func:`fomm_lab.engine.config.check_frame_size`): checked before any model or data is loaded."""
    from ..engine.families import load_any_config
    from ..hub.registry import resolve_model

    reference, _ = resolve_model(config)
    check_frame_size(load_any_config(reference))


def write_csv(path: Path, result: ReconstructResult) -> Path:
    """The CSV: one row per video, then ``mean (frames)`` and ``mean (videos)``."""
    akd = result.keypoints is not None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "frames", "l1"] + (["akd", "missing_keypoints"] if akd else []))

    def kp_cells(kp: KeypointDistance | None) -> list[str]:
        return [f"{kp.akd:.4f}", f"{kp.missing:.4f}"] if kp is not None else ["", ""]

    for video in result.videos:
        writer.writerow([video.name, video.frames, f"{video.l1:.6f}"] + (kp_cells(video.keypoints) if akd else []))
    total = sum(v.frames for v in result.videos)
    writer.writerow(["mean (frames)", total, f"{result.mean_l1:.6f}"] + (kp_cells(result.keypoints) if akd else []))
    writer.writerow(["mean (videos)", len(result.videos), f"{result.mean_video_l1:.6f}"] + (["", ""] if akd else []))
    with atomic_output(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def reconstruct(model: MotionModel, data: str | Path, csv_path: str | Path,
                options: ReconstructOptions = ReconstructOptions(), landmarks: Landmarks | None = None,
                say: Callable[[str], None] = lambda text: None) -> ReconstructResult:
    """Reconstruct every video of ``data`` (a dataset folder -- its ``test`` split -- or a split folder) and
    write the CSV (see the module's description). ``landmarks`` turns the AKD on."""
    from tqdm.auto import tqdm

    from ..io.export import SideBySideWriter
    from .data import VideoFrames, dataset_layout

    check_frame_size(model.config)
    layout = dataset_layout(data, need_test=True)
    videos = layout.test[: options.max_videos] if options.max_videos else layout.test
    result = ReconstructResult([], Path(csv_path))
    for path in tqdm(videos, desc="reconstructing", unit="video", disable=not options.progress):
        video = VideoFrames(path, model.frame_size)
        errors: list[float] = []
        real_lm: list[np.ndarray | None] = []
        fake_lm: list[np.ndarray | None] = []
        with contextlib.ExitStack() as stack:  # the video is published only when complete
            writer = None
            if options.side_by_side is not None:
                fps = 25.0
                if path.is_file():
                    from ..io.probe import probe_video

                    fps = probe_video(path).fps or 25.0
                name = path.name if path.is_dir() else path.stem
                writer = stack.enter_context(SideBySideWriter(Path(options.side_by_side) / f"{name}.mp4",
                                                              ["ground truth", "reconstruction"], fps,
                                                              height=model.frame_size.height))
            for real, fake, l1 in reconstruct_video(model, video.frames(), options.batch_size):
                errors.append(l1)
                if writer is not None:
                    writer.write([real, fake])
                if landmarks is not None:
                    real_lm.append(landmarks(real))
                    fake_lm.append(landmarks(fake))
        written = writer.path if writer is not None else None
        score = VideoScore(video.name, len(errors), float(np.mean(errors)),
                           keypoint_distance(real_lm, fake_lm) if landmarks is not None else None, written)
        result.videos.append(score)
        result.per_frame_l1 += errors
        say(f"{score.name}: {score.frames} frames, L1 {score.l1:.4f}"
            + (f", AKD {score.keypoints.akd:.3f} px" if score.keypoints is not None else ""))
    write_csv(result.csv, result)
    return result
