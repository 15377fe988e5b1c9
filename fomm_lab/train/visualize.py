"""Pictures of a training step: one row per sample, the columns

    source + its keypoints | transformed driving + its keypoints | driving + its keypoints | deformed source |
    prediction | occlusion map

(the transformed frame when the equivariance losses are on, the occlusion map when the model has one).
Keypoints are discs of ``visualizer_params.kp_size`` pixels coloured by ``visualizer_params.colormap``;
``draw_border`` draws a white line between the columns. Written as PNG, atomically.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..engine.nets.generator import warp
from ..errors import ConfigError
from .model import Generated
from .params import VisualizerParams


def check_colormap(colormap: str) -> None:
    """ConfigError now, before training, when ``visualizer_params.colormap`` is not a matplotlib colormap."""
    import matplotlib

    if colormap not in matplotlib.colormaps:
        raise ConfigError(f"visualizer_params.colormap {colormap!r} is not a matplotlib colormap; use e.g. "
                          "gist_rainbow (the official configs' choice) or viridis")


def keypoint_colours(count: int, colormap: str) -> list[tuple[int, int, int]]:
    """One RGB colour per keypoint from a matplotlib colormap (rainbow-like by default)."""
    import matplotlib

    check_colormap(colormap)
    cmap = matplotlib.colormaps[colormap]
    return [tuple(int(255 * c) for c in cmap(i / max(count, 1))[:3]) for i in range(count)]  # type: ignore[misc]


def to_images(batch: torch.Tensor, rows: int) -> list[np.ndarray]:
    """(N, C, H, W) in [0, 1] -> the first ``rows`` as uint8 (H, W, 3) (one channel repeated to three)."""
    batch = batch[:rows].detach().float().clamp(0, 1).cpu()
    if batch.shape[1] == 1:
        batch = batch.repeat(1, 3, 1, 1)
    return list((batch * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


def draw_keypoints(image: np.ndarray, points: np.ndarray, colours: list[tuple[int, int, int]],
                   radius: int) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with a disc at each (x, y) of ``points`` (K, 2) in [-1, 1]."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    for (x, y), colour in zip(points, colours):
        if np.isfinite(x) and np.isfinite(y):
            centre = (int(round((x + 1) / 2 * (w - 1))), int(round((y + 1) / 2 * (h - 1))))
            cv2.circle(out, centre, max(1, radius), colour, thickness=-1, lineType=cv2.LINE_AA)
    return out


def training_picture(source: torch.Tensor, driving: torch.Tensor, generated: Generated, params: VisualizerParams,
                     rows: int = 4) -> np.ndarray:
    """The picture of one step (see the module's description): uint8 (rows*H, columns*W, 3)."""
    rows = min(rows, source.shape[0])
    colours = keypoint_colours(generated.kp_source.value.shape[1], params.colormap)

    def with_kp(frames: torch.Tensor, values: torch.Tensor) -> list[np.ndarray]:
        points = values[:rows].detach().float().cpu().numpy()
        return [draw_keypoints(img, p, colours, params.kp_size) for img, p in zip(to_images(frames, rows), points)]

    h, w = source.shape[2:]
    columns = [with_kp(source, generated.kp_source.value)]
    if generated.transformed_frame is not None and generated.transformed_kp is not None:
        columns.append(with_kp(generated.transformed_frame, generated.transformed_kp.value))
    columns.append(with_kp(driving, generated.kp_driving.value))
    if generated.deformed is not None:
        deformed = generated.deformed[:rows]
    else:
        with torch.no_grad():
            deformed = warp(source[:rows].detach(), generated.deformation[:rows].detach())
    columns += [to_images(deformed, rows), to_images(generated.prediction, rows)]
    if generated.occlusion_map is not None:
        occlusion = F.interpolate(generated.occlusion_map[:rows].detach().float(), size=(h, w), mode="bilinear")
        columns.append(to_images(occlusion, rows))
    tiles = [np.vstack(column) for column in columns]
    if params.draw_border:
        for tile in tiles:
            tile[:, [0, -1]] = 255
    return np.hstack(tiles)


