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


CROP_COLOUR = "#ffd000"
"""Edge colour of a crop square (what the model sees)."""
FACE_COLOUR = "#00c8ff"
"""Edge colour of a detected face box."""
LABEL_STYLE = {"color": "white", "fontsize": 9, "va": "top", "ha": "left",
               "bbox": {"facecolor": "black", "alpha": 0.75, "edgecolor": "none", "pad": 1.5}}
"""Box labels: white on a dark patch, readable over any photo (and inside the image, never over a title)."""


def _box(ax: Any, box: Any, colour: str, label: str | None = None, legend: str | None = None) -> None:
    """Draw ``box`` (x0, y0, x1, y1 pixels) with ``label`` written inside its top-left corner; ``legend``: the
    legend's entry for this kind of box (said once per axes)."""
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = box.as_tuple()
    seen = {h.get_label() for h in ax.patches}
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2,
                           label=legend if legend and legend not in seen else "_nolegend_"))
    if label:
        height, width = ax.images[0].get_array().shape[:2] if ax.images else (y1, x1)
        ax.text(min(max(x0, 0), width - 1) + 3, min(max(y0, 0), height - 1) + 3, label, clip_on=True,
                **LABEL_STYLE)


def _legend_below(ax: Any) -> None:
    """The axes' legend under the image, so it covers nothing."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8, frameon=False,
                  ncol=1)


def photo_crop_figure(source: SourcePlan) -> Any:
    """The photo with each face's crop square (yellow, labelled ``face N``: the one numbering, 0 = leftmost) and
    detected face box (blue), a legend saying which is which, beside the crops the model sees."""
    plt = _pyplot()
    count = len(source.images)
    fig, axes = plt.subplots(1, 1 + count, figsize=(4 + 2.5 * count, 4.6), squeeze=False)
    ax = axes[0][0]
    ax.imshow(source.photo)
    for crop in source.crops:
        _box(ax, crop.box, CROP_COLOUR, crop.label, legend="crop square: what the model sees")
        _box(ax, crop.face, FACE_COLOUR, legend="face found by the detector")
    ax.set_title("photo" + ("" if source.crops else " (not cropped: the whole photo, centre square)"))
    _legend_below(ax)
    for i, image in enumerate(source.images):
        axes[0][i + 1].imshow(image)
        name = source.crops[i].label if source.crops else "whole photo"
        axes[0][i + 1].set_title(f"{name}: what the model sees", fontsize=9)
    for a in axes[0]:
        a.axis("off")
    fig.tight_layout()
    return fig


def crop_plan_figure(plan: CropPlan, frame: np.ndarray) -> Any:
    """Left: a frame of the clip with every track's crop box (labelled inside the box, named in the legend);
    right: the tracks' face centres over time."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4))
    left.imshow(frame)
    colours = ["#ffd000", "#00c8ff", "#ff4fd8", "#7cff4f", "#ff8c1a"]
    for i, track in enumerate(plan.tracks):
        colour = colours[i % len(colours)]
        name = f"track {i + 1}"
        _box(left, track.box_at(track.start), colour, name,
             legend=f"{name}: {track.mode} crop, frames {track.start}-{track.end - 1}")
        frames = [index for index, _ in track.faces]
        right.plot(frames, [face.center[0] for _, face in track.faces], "-", color=colour, label=f"{name} x")
        right.plot(frames, [face.center[1] for _, face in track.faces], "--", color=colour, label=f"{name} y")
    left.set_title("crop box of each face track (at its first frame)", fontsize=10)
    left.axis("off")
    _legend_below(left)
    right.set_facecolor("#555555")  # the light track colours read on grey
    right.set_xlim(0, max(plan.frame_count - 1, 1))
    right.set_xlabel("frame")
    right.set_ylabel("face centre (pixels)")
    right.set_title("face tracks over time", fontsize=10)
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

