"""What the notebook's "Face swap" section calls: a swap of a photo's face into a clip through the one
:class:`~fomm_lab.pipeline.swap.Swap` session, and a figure of the part masks that helps choose the parts.

    run = run_swap("photo.jpg", "clip.mp4", "outputs/", swap=FaceSwapOptions(supervised=False, parts=(1, 2)))
    run.outputs                      # {"video": outputs/swap.mp4, "side_by_side": ..., "gif": ...}
    run.masks_figure(frame=0)        # the target's crop, its parts, and the mask swapped
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..pipeline import CropOptions, FaceSwapOptions, FaceSwapResult, OutputOptions, RuntimeOptions, Swap, SwapJob
from .figures import _pyplot

if TYPE_CHECKING:
    from ..swap import Swapper


@dataclass
class SwapRun:
    """A swap done: what was written (:attr:`result`) and the session, whose networks and crops the figures use."""

    result: FaceSwapResult
    session: Swap

    @property
    def outputs(self) -> dict[str, Path]:
        return self.result.outputs

    def target_crop(self, frame: int = 0) -> np.ndarray:
        """The swapped track's crop of target frame ``frame`` (counted from the track's start), at the model's
        size: what the segment model sees."""
        prepared = self.result.prepared
        crops = prepared.plan.frames(prepared.track)
        found = next(itertools.islice(crops, frame, None), None)
        if found is None:
            raise IndexError(f"frame {frame} is past the swapped track's {prepared.plan.tracks[prepared.track].frames} "
                             "frames")
        return found

    def masks_figure(self, frame: int = 0) -> Any:
        """:func:`part_masks_figure` of the target crop ``frame`` with the job's parts and mode."""
        options = self.session.job.swap
        return part_masks_figure(self.session.swapper, self.target_crop(frame), options.chosen_parts,
                                 supervised=options.supervised)


def run_swap(source: str | Path, target: str | Path, out_dir: str | Path, *, swap: FaceSwapOptions | None = None,
             crop: CropOptions | None = None, runtime: RuntimeOptions | None = None, side_by_side: bool = True,
             gif: bool = False, audio: bool = True, enhance: str | None = None, swapper: Swapper | None = None,
             progress: bool = True, say: Any = print) -> SwapRun:
    """Swap the face of ``source`` (a photo) into ``target`` (a clip) and write ``out_dir/swap.mp4`` (and
    ``swap-side-by-side.mp4``, ``swap.gif``). ``swapper``: the networks of an earlier run, reused (same options
    of the model). Every error is a :class:`~fomm_lab.errors.FommLabError`; nothing is half written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    output = OutputOptions(video=out / "swap.mp4", side_by_side=out / "swap-side-by-side.mp4" if side_by_side else None,
                           gif=out / "swap.gif" if gif else None, audio=audio, enhance=enhance)
    job = SwapJob(source=Path(source), target=Path(target), swap=swap or FaceSwapOptions(), crop=crop or CropOptions(),
                  output=output, runtime=runtime or RuntimeOptions())
    session = Swap(job, swapper=swapper, progress=progress, say=say)
    return SwapRun(session.run(), session)


def _label_parts(ax: Any, labels: np.ndarray, names: list[str]) -> None:
    """Each part's name at the centre of its largest share of pixels."""
    for index in np.unique(labels):
        ys, xs = np.nonzero(labels == index)
        if len(xs) > 0.002 * labels.size:
            ax.text(float(np.median(xs)), float(np.median(ys)), names[int(index)], color="white", fontsize=7,
                    ha="center", va="center", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})


def part_masks_figure(swapper: Swapper, frame: np.ndarray, parts: tuple[int, ...] | list[int],
                      supervised: bool = False) -> Any:
    """The frame (``(S, S, 3)``, the model's size); the segment model's parts (the most likely part of each pixel
    of :meth:`~fomm_lab.swap.Swapper.segments`, numbered as ``parts`` counts them); with a face parser, its classes
    (:meth:`~fomm_lab.swap.Swapper.parse`); and the blend mask of ``parts`` in the chosen mode, over the frame."""
    from ..swap import PARSER_CLASSES

    plt = _pyplot()
    panels = 4 if swapper.parser is not None else 3
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.4))
    side = frame.shape[0]
    axes[0].imshow(frame)
    axes[0].set_title("target crop")
    segments = swapper.segments(frame).argmax(axis=0)
    axes[1].imshow(segments, cmap="tab20", interpolation="nearest", vmin=0, vmax=19)
    _label_parts(axes[1], segments, [str(i) for i in range(swapper.num_segments + 1)])
    axes[1].set_title(f"{swapper.num_segments} segments (0: background)")
    if swapper.parser is not None:
        classes = swapper.parse(frame).argmax(axis=0)
        axes[2].imshow(classes, cmap="tab20", interpolation="nearest", vmin=0, vmax=19)
        _label_parts(axes[2], classes, [f"{i} {name}" for i, name in enumerate(PARSER_CLASSES)])
        axes[2].set_title("face parser classes")
    mask = swapper.mask(frame, parts, supervised=supervised)
    axes[-1].imshow(frame)
    axes[-1].imshow(mask, cmap="magma", alpha=0.6, extent=(-0.5, side - 0.5, side - 0.5, -0.5), vmin=0, vmax=1)
    axes[-1].set_title(f"swapped: {','.join(map(str, parts))} ({'parser' if supervised else 'segments'})")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig
