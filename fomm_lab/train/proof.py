"""Whether a model learnt the synthetic motion dataset: reconstruction against the copy-the-source baseline, and
keypoints against the known transforms (:mod:`fomm_lab.train.synthetic`).

* **L1** (the paper's reconstruction measure, Sec. 4): each held-out clip reconstructed from its first frame
  (:func:`fomm_lab.train.evaluate.reconstruct_video`), mean absolute difference in [0, 1] over every frame.
  **Baseline**: the first frame itself as every frame's prediction (what a model that moves nothing scores).
* **Keypoint error** (equivariance to the true motion, Eq. 3-4 of the paper with the true transform): the
  keypoints of frame 0 carried to frame f by the clip's true similarity transforms,
  ``p_f = A_f A_0^-1 (p_0 - t_0) + t_f``, against the keypoints detected in frame f: mean distance in pixels over
  keypoints and frames. Its baseline is the **keypoint motion**: the mean distance the carried keypoints travel
  from frame 0 (what keypoints that stay put would score). The mild thin-plate warp of the texture is left out of
  the carried positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .synthetic import ClipMotion, iter_clips, read_motion


@dataclass(frozen=True)
class ProofScores:
    """Means over the held-out clips' frames: ``l1`` (reconstruction), ``baseline_l1`` (copy the first frame),
    ``keypoint_error`` and ``keypoint_motion`` (pixels), and the number of ``clips`` and ``frames``."""

    l1: float
    baseline_l1: float
    keypoint_error: float
    keypoint_motion: float
    clips: int
    frames: int

    @property
    def l1_ratio(self) -> float:
        """Reconstruction L1 over the baseline's (below 1: better than not moving)."""
        return self.l1 / self.baseline_l1

    def lines(self) -> list[str]:
        return [f"held-out reconstruction L1 {self.l1:.4f} vs copy-the-source {self.baseline_l1:.4f} "
                f"(ratio {self.l1_ratio:.2f}) over {self.frames} frames of {self.clips} clips",
                f"keypoints vs the true motion: {self.keypoint_error:.2f} px off, while the carried keypoints move "
                f"{self.keypoint_motion:.2f} px on average (ratio {self.keypoint_error / self.keypoint_motion:.2f})"]


def carry(points: np.ndarray, motion: ClipMotion, frame: int) -> np.ndarray:
    """Normalised frame points (K, 2) of frame 0 -> where the clip's true similarity motion takes them in ``frame``."""
    inverse = np.linalg.inv(motion.affine[0, :, :2])
    objects = (points - motion.affine[0, :, 2]) @ inverse.T
    return objects @ motion.affine[frame, :, :2].T + motion.affine[frame, :, 2]


def _frames(clip: Path) -> list[np.ndarray]:
    from ..io.image import read_image
    from .data import _natural_key

    files = sorted((p for p in clip.iterdir() if p.suffix.lower() == ".png"), key=_natural_key)
    return [read_image(p, max_size=None) for p in files]


@torch.inference_mode()
def keypoint_errors(model, frames: list[np.ndarray], motion: ClipMotion) -> tuple[list[float], list[float]]:
    """Per frame: (distance of the detected keypoints from the carried ones, distance the carried ones moved),
    in pixels."""
    tensor = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255).to(model.device)
    detected = model.kp_detector(tensor).value.float().cpu().numpy().astype(np.float64)
    half = motion.size / 2
    errors, moves = [], []
    for f in range(len(frames)):
        carried = carry(detected[0], motion, f)
        errors.append(float(np.linalg.norm(detected[f] - carried, axis=1).mean() * half))
        moves.append(float(np.linalg.norm(carried - detected[0], axis=1).mean() * half))
    return errors, moves


def prove(model, clips: Iterable[Path]) -> ProofScores:
    """The scores of ``model`` (a FOMM model) on synthetic clips (folders with their motion file)."""
    from .evaluate import reconstruct_video

    l1: list[float] = []
    baseline: list[float] = []
    errors: list[float] = []
    moves: list[float] = []
    count = 0
    for clip in clips:
        frames = _frames(clip)
        motion = read_motion(clip)
        count += 1
        first = frames[0].astype(np.float32) / 255
        baseline += [float(np.abs(f.astype(np.float32) / 255 - first).mean()) for f in frames]
        l1 += [value for _, _, value in reconstruct_video(model, iter(frames))]
        e, m = keypoint_errors(model, frames, motion)
        errors += e[1:]
        moves += m[1:]
    if not count:
        raise ValueError("no synthetic clips (folders holding motion.json) to score")
    return ProofScores(l1=float(np.mean(l1)), baseline_l1=float(np.mean(baseline)),
                       keypoint_error=float(np.mean(errors)), keypoint_motion=float(np.mean(moves)),
                       clips=count, frames=len(l1))


def prove_dataset(model, data: str | Path) -> ProofScores:
    """:func:`prove` on the held-out clips of a synthetic dataset folder (``DIR/test``)."""
    return prove(model, iter_clips(Path(data) / "test"))
