"""The TPSMM authors' demo loop (``make_animation`` of yoyo-nb/Thin-Plate-Spline-Motion-Model's ``demo.py``), as
the baseline of ``bench_engine.py --config tpsmm-vox``: written here on fomm-lab's networks, which equal the
authors' (tests/engine/tpsmm), doing the same work per frame as the demo does.

What the demo does, and so what this loop does:

* the whole driving clip is one (1, 3, T, H, W) float tensor; the source's keypoints and the first driving
  frame's (the initial frame of relative motion) are detected once;
* per frame: the keypoint detector on the driving frame, then the mode's keypoints -- ``relative`` (the demo's
  default): ``(kp_driving - kp_initial) * scale + kp_source``, the scale sqrt(source hull area / initial hull
  area) recomputed with scipy's ConvexHull on every call as ``relative_kp`` does; ``standard``: the driving
  keypoints; ``avd``: the AVD network's -- then the whole dense motion network (its source downsampling and
  source heatmaps recomputed every frame) and the whole inpainting network (which re-encodes the source every
  frame), ``bg_param=None``; each prediction is copied to a NumPy (H, W, 3) array and kept in a list;
* the inpainting network's forward also returns, every frame, the ``warped_encoder_maps`` of the training's warp
  loss: each encoder level warped and occluded a second time (the ``out_ij`` / ``encode_ij`` of its
  ``.detach()`` copies). The demo discards them, but computes them, and so does this loop.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.spatial import ConvexHull

from fomm_lab.engine.nets.tpsmm.inpainting import Warp

MODES = ("relative", "standard", "avd")


def relative_keypoints(kp_source: torch.Tensor, kp_driving: torch.Tensor, kp_initial: torch.Tensor) -> torch.Tensor:
    """The demo's ``relative_kp``: hull areas of batch element 0 in float64, the float32 displacement scaled."""
    source_area = ConvexHull(kp_source[0].double().cpu().numpy()).volume
    initial_area = ConvexHull(kp_initial[0].double().cpu().numpy()).volume
    scale = np.sqrt(source_area) / np.sqrt(initial_area)
    return (kp_driving - kp_initial) * float(scale) + kp_source


@torch.no_grad()
def make_animation(networks, source: np.ndarray, driving: list[np.ndarray], clock: Callable[[], float],
                   mode: str = "relative", device: torch.device | str = "cpu") -> tuple[list[np.ndarray], list[float]]:
    """The demo's loop on ``networks`` (:class:`fomm_lab.engine.tpsmm.model.TpsmmNets`, eval mode) for a uint8
    source (H, W, 3) and driving frames; returns the float predictions (H, W, 3) in [0, 1] and each frame's time
    (``clock`` seconds, the driving frame's upload included)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    source_t = torch.from_numpy(source[None].astype(np.float32) / 255).permute(0, 3, 1, 2).to(device)
    video = torch.from_numpy(np.stack(driving)[None].astype(np.float32) / 255).permute(0, 4, 1, 2, 3)
    kp_source = networks.kp_detector(source_t)
    kp_initial = networks.kp_detector(video[:, :, 0].to(device))
    predictions, times = [], []
    for index in range(video.shape[2]):
        start = clock()
        frame = video[:, :, index].to(device)
        kp_driving = networks.kp_detector(frame)
        if mode == "relative":
            kp_norm = relative_keypoints(kp_source, kp_driving, kp_initial)
        elif mode == "avd":
            kp_norm = networks.avd_network(kp_source, kp_driving)
        else:
            kp_norm = kp_driving
        dense, inpainting = networks.dense_motion_network, networks.inpainting_network
        motion = dense(dense.prepare(source_t, kp_source), kp_norm, bg_param=None)
        encoded = inpainting.encode(source_t)
        out = inpainting.decode(source_t, encoded, motion.deformation, motion.occlusion)
        warp = Warp(motion.deformation)
        inpainting.mask_levels([warp(level) for level in encoded], motion.occlusion)  # warped_encoder_maps
        predictions.append(np.transpose(out.float().cpu().numpy(), (0, 2, 3, 1))[0])
        times.append(clock() - start)
    return predictions, times
