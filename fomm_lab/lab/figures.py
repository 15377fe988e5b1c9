"""Matplotlib figures the lab shows: the photo crop, the driving crop plan and the keypoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..engine.keypoints import Keypoints
    from ..faces.track import CropPlan
    from ..pipeline import SourcePlan


def _pyplot() -> Any:
    import matplotlib.pyplot as plt  # the notebook's inline backend, or Agg without a display

    return plt


def _box(ax: Any, box: Any, colour: str, label: str | None = None) -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = box.as_tuple()
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2))
    if label:
        ax.text(x0, y0 - 4, label, color=colour, fontsize=9, va="bottom")


def photo_crop_figure(source: SourcePlan) -> Any:
    """The photo with each face's crop square (and detected face), beside the crops the model sees."""
    plt = _pyplot()
    count = len(source.images)
    fig, axes = plt.subplots(1, 1 + count, figsize=(4 + 2.5 * count, 4), squeeze=False)
    ax = axes[0][0]
    ax.imshow(source.photo)
    for i, crop in enumerate(source.crops):
        _box(ax, crop.box, "yellow", f"face {i + 1}" if count > 1 else "crop")
        _box(ax, crop.face, "cyan")
    ax.set_title("photo" + ("" if source.crops else " (not cropped)"))
    for i, image in enumerate(source.images):
        axes[0][i + 1].imshow(image)
        axes[0][i + 1].set_title(f"face {i + 1}" if count > 1 else "what the model sees")
    for a in axes[0]:
        a.axis("off")
    fig.tight_layout()
    return fig


def crop_plan_figure(plan: CropPlan, frame: np.ndarray) -> Any:
    """Left: a frame of the clip with every track's crop box; right: the tracks' face centres over time."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.imshow(frame)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, track in enumerate(plan.tracks):
        colour = colours[i % len(colours)]
        _box(left, track.box_at(track.start), colour, f"track {i + 1} ({track.mode})")
        frames = [index for index, _ in track.faces]
        right.plot(frames, [face.center[0] for _, face in track.faces], "-", color=colour, label=f"track {i + 1} x")
        right.plot(frames, [face.center[1] for _, face in track.faces], "--", color=colour, label=f"track {i + 1} y")
    left.set_title("crop boxes (first frame of each track)")
    left.axis("off")
    right.set_xlim(0, max(plan.frame_count - 1, 1))
    right.set_xlabel("frame")
    right.set_ylabel("face centre (pixels)")
    right.set_title("face tracks over time")
    right.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def keypoints_figure(images: list[np.ndarray], keypoints: list[Keypoints], titles: list[str]) -> Any:
    """Each image with the model's keypoints (x, y in [-1, 1]) and their jacobians' axes drawn on it."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(images), figsize=(3.5 * len(images), 3.6), squeeze=False)
    for ax, image, kp, title in zip(axes[0], images, keypoints, titles):
        height, width = image.shape[:2]
        points = kp.value[0].float().cpu().numpy()
        xs, ys = (points[:, 0] + 1) * (width - 1) / 2, (points[:, 1] + 1) * (height - 1) / 2
        ax.imshow(image)
        ax.scatter(xs, ys, c=np.arange(len(xs)), cmap="gist_rainbow", s=30, edgecolors="white", linewidths=0.5)
        if kp.jacobian is not None:
            jac = kp.jacobian[0].float().cpu().numpy() * 0.08 * width / 2
            for x, y, j in zip(xs, ys, jac):
                ax.plot([x, x + j[0, 0]], [y, y + j[1, 0]], color="white", linewidth=1)
                ax.plot([x, x + j[0, 1]], [y, y + j[1, 1]], color="black", linewidth=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return fig
