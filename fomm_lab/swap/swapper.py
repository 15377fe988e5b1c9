"""The part swap ("Motion-Supervised Co-Part Segmentation", Siarohin et al., ICPR 2020, Sec. 4.3): the chosen
parts of a target video's frames are replaced by those of a source image, moved as the target's parts move.

Per target frame (the source's side is computed once):

1. blend mask M: the sum of the chosen channels of a probability map -- the segment model's soft
   segmentation (K+1 channels, 0 = background; unsupervised) or the BiSeNet face parser's softmax (19
   classes, :data:`~fomm_lab.swap.nets.bisenet.PARSER_CLASSES`; supervised) -- of the target frame, or of the
   source with ``source_segmentation``; with ``hard``, M > 0.5 as 0/1 (strict, before any resizing);
2. motion D from target to source coordinates: the part motions weighted by the target's segmentation
   (Eq. 2-4), or, in the FOMM-aligned mode, FOMM's dense motion network driven by a FOMM checkpoint's
   keypoints and jacobians (absolute motion);
3. both frames encoded; the source features warped by D and multiplied by the visibility (Eq. 5, or FOMM's
   occlusion map); M brought to the features' resolution (the parser's 512x512 mask blurred and subsampled
   8x) and, when it is the source's, warped by D; the features blended and decoded.

Outside the mask the output is the network's reconstruction of the target frame, not a copy of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.frames import tensor_to_frames
from ..engine.nets.dense_motion import SourceMotionCache
from ..engine.nets.generator import warp
from ..errors import CheckpointError
from .config import SegmentConfig
from .nets.bisenet import PARSER_CLASSES, PARSER_MEAN, PARSER_STD, BiSeNet
from .nets.reconstruction import PartSwapGenerator, segment_deformation, segment_visibility
from .nets.segmentation import SegmentationModule, Segments

PARSER_SIZE = 512
"""The face parser's input side: frames are upscaled to it (nearest) as the authors do."""


@dataclass(frozen=True)
class FommAlignment:
    """The networks of the FOMM-aligned mode, from a First Order Motion Model checkpoint.

    keypoints: FOMM's keypoint detector run as a segmentation module without its segmentation head (7x7
    heads with padding 3, as the authors run it); generator: FOMM's encoder-decoder with its dense motion
    network; checkpoint: the file.
    """

    keypoints: SegmentationModule
    generator: PartSwapGenerator
    checkpoint: Path | None = None


@dataclass(frozen=True)
class SwapOptions:
    """One swap's choices (validated by :meth:`Swapper.options`)."""

    parts: tuple[int, ...]
    supervised: bool = False
    hard: bool = False
    source_segmentation: bool = False
    first_order_motion: bool = False


@dataclass(frozen=True)
class SourceState:
    """What a swap computes once per source image.

    image: (1, 3, H, W); features: (1, F, h, w) its encoding; segments: the segment model's view of it
    (None in the FOMM-aligned mode); mask: (1, 1, h, w) its blend mask at feature resolution, with
    ``source_segmentation`` (else None); motion: FOMM's source-side cache in the FOMM-aligned mode.
    """

    image: torch.Tensor
    features: torch.Tensor
    segments: Segments | None
    mask: torch.Tensor | None
    motion: SourceMotionCache | None


@dataclass(frozen=True)
class SwapResult:
    """One batch of swapped frames and what made them.

    prediction: (N, 3, H, W) in [0, 1]; mask: (N, 1, h, w) the blend mask where it meets the features (after
    downscaling and, for a source mask, warping); deformation: (N, h, w, 2) target -> source, (x, y) in
    [-1, 1]; visibility: (N, 1, h, w) or None.
    """

    prediction: torch.Tensor
    mask: torch.Tensor
    deformation: torch.Tensor
    visibility: torch.Tensor | None


class Swapper:
    """Part swaps with one segment model (and optionally the face parser and a FOMM checkpoint), built by
    :func:`fomm_lab.swap.load_swapper`.

    Frames are RGB ``(S, S, 3)`` arrays, uint8 or float in [0, 1], with S the config's frame size (256 for
    the published models): crop and resize them before, paste the results back after.
    ``batch_size`` target frames run together (1 reproduces the authors' frame-by-frame float rounding);
    ``dtype`` bfloat16 runs the convolutions under autocast (softmaxes, masks and keypoints stay float32).
    """

    def __init__(self, config: SegmentConfig, segmenter: SegmentationModule, generator: PartSwapGenerator, *,
                 parser: BiSeNet | None = None, fomm: FommAlignment | None = None,
                 device: torch.device | None = None, dtype: torch.dtype = torch.float32, batch_size: int = 1,
                 checkpoint: Path | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.config = config
        self.segmenter = segmenter
        self.generator = generator
        self.parser = parser
        self.fomm = fomm
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        self.batch_size = batch_size
        self.checkpoint = checkpoint

    @property
    def num_segments(self) -> int:
        """K, the segment model's number of parts (its segmentation has K+1 channels, 0 = background)."""
        return self.config.num_segments

    @property
    def frame_size(self) -> int:
        return self.config.frame_size

    # ----------------------------------------------------------------------------------------------- inputs

    def to_tensor(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB ``(S, S, 3)`` frames (uint8, or float in [0, 1]) -> (N, 3, S, S) float32 in [0, 1] on the device.

        The tensor keeps the frames' channels-last memory layout, as the authors' code feeds it (the same
        values; the convolutions round as theirs do)."""
        arrays = []
        side = self.frame_size
        for frame in frames:
            frame = np.asarray(frame)
            if frame.shape != (side, side, 3):
                raise ValueError(f"expected an RGB frame of shape ({side}, {side}, 3) (crop and resize it first), "
                                 f"got {frame.shape}")
            if frame.dtype == np.uint8:
                arrays.append(frame.astype(np.float32) / np.float32(255))
            elif np.issubdtype(frame.dtype, np.floating):
                if frame.size and (np.nanmin(frame) < -1e-3 or np.nanmax(frame) > 1 + 1e-3):
                    raise ValueError("float frames must hold values in [0, 1] (uint8 frames hold 0 .. 255)")
                arrays.append(frame.astype(np.float32))
            else:
                raise ValueError(f"frames must be uint8 or float in [0, 1], got {frame.dtype}")
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return batch.to(self.device)

    def _autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    # ------------------------------------------------------------------------------------------ validation

    def options(self, parts: Iterable[int], *, supervised: bool = False, hard: bool = False,
                source_segmentation: bool = False, first_order_motion: bool | None = None) -> SwapOptions:
        """Validated :class:`SwapOptions`. ``first_order_motion`` None: the FOMM-aligned mode when a motion
        checkpoint was loaded and the swap is supervised (the only combination the authors support)."""
        chosen = tuple(int(p) for p in parts)
        if not chosen:
            raise ValueError("parts is empty: name at least one part (channel index) to swap")
        if supervised and self.parser is None:
            raise CheckpointError("a supervised swap takes its masks from the BiSeNet face parser, and no parser "
                                  "weights were loaded: pass parser=PATH to 79999_iter.pth (zllrunning's "
                                  "face-parsing.PyTorch), or swap unsupervised with the segment model's parts")
        if first_order_motion is None:
            first_order_motion = self.fomm is not None and supervised
        if first_order_motion:
            if self.fomm is None:
                raise CheckpointError("the FOMM-aligned mode needs a First Order Motion Model checkpoint and none "
                                      "was loaded: pass motion_checkpoint=PATH to FOMM's vox-cpk.pth.tar")
            if not supervised:
                raise ValueError("the FOMM-aligned mode works with supervised (face parser) masks only, as in the "
                                 "authors' code: the FOMM checkpoint has no part segmentation; use supervised=True "
                                 "or first_order_motion=False")
        count = len(PARSER_CLASSES) if supervised else self.num_segments + 1
        bad = [p for p in chosen if not 0 <= p < count]
        if bad:
            where = (f"the face parser has {count} classes: 0 .. {count - 1} ({', '.join(PARSER_CLASSES)})"
                     if supervised else
                     f"the segment model {self.checkpoint or ''} has {self.num_segments} parts: 1 .. "
                     f"{self.num_segments} (0 = background)")
            raise CheckpointError(f"part index {', '.join(map(str, bad))} is out of range: {where}")
        return SwapOptions(chosen, supervised, hard, source_segmentation, bool(first_order_motion))

    # ------------------------------------------------------------------------------------------- the stages

    def parser_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) frames in [0, 1] -> (N, 19, 512, 512) parser logits: upscaled to 512x512 (nearest),
        ImageNet-normalised, the fused head upsampled bilinearly."""
        if self.parser is None:
            raise CheckpointError("no face parser weights were loaded: pass parser=PATH to 79999_iter.pth")
        big = F.interpolate(frames, size=(PARSER_SIZE, PARSER_SIZE))
        mean = torch.tensor(PARSER_MEAN, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
        std = torch.tensor(PARSER_STD, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
        with self._autocast():
            return self.parser((big - mean) / std).float()

    def _probabilities(self, frames: torch.Tensor, segments: Segments | None, supervised: bool) -> torch.Tensor:
        if supervised:
            return torch.softmax(self.parser_logits(frames), dim=1)
        if segments is None or segments.segmentation is None:
            with self._autocast():
                segments = self.segmenter(frames)
        assert segments.segmentation is not None
        return segments.segmentation

    def blend_mask(self, frames: torch.Tensor, options: SwapOptions, segments: Segments | None = None,
                   generator: PartSwapGenerator | None = None) -> torch.Tensor:
        """The (N, 1, h, w) blend mask of ``frames`` at the features' resolution (step 1, then the downscaling
        of step 3), not warped. ``segments``: the segment model's output for ``frames`` if already computed."""
        probabilities = self._probabilities(frames, segments, options.supervised)
        mask = probabilities[:, list(options.parts)].sum(dim=1, keepdim=True)
        if options.hard:
            mask = (mask > 0.5).to(mask.dtype)
        side = self.config.feature_size
        return (generator or self.generator).mask_to_features(mask, (side, side))

    def prepare(self, source: torch.Tensor, options: SwapOptions) -> SourceState:
        """The source's side of a swap, (1, 3, S, S) in [0, 1] -> :class:`SourceState`."""
        with torch.inference_mode(), self._autocast():
            if options.first_order_motion:
                assert self.fomm is not None
                generator = self.fomm.generator
                assert generator.dense_motion_network is not None
                keypoints = self.fomm.keypoints(source).keypoints
                motion = generator.dense_motion_network.prepare(source, keypoints)
                segments = None
            else:
                generator = self.generator
                segments = self.segmenter(source)
                motion = None
            features = generator.encode(source)
            mask = None
            if options.source_segmentation:
                mask = self.blend_mask(source, options, segments, generator)
        return SourceState(source, features, segments, mask, motion)

    def step(self, state: SourceState, frames: torch.Tensor, options: SwapOptions) -> SwapResult:
        """Swap a batch of (N, 3, S, S) target frames in [0, 1] given the source's :class:`SourceState`."""
        with torch.inference_mode(), self._autocast():
            segments: Segments | None = None
            if options.first_order_motion:
                assert self.fomm is not None and state.motion is not None
                generator = self.fomm.generator
                assert generator.dense_motion_network is not None
                keypoints = self.fomm.keypoints(frames).keypoints
                deformation, visibility = generator.dense_motion_network(state.motion, keypoints)
            else:
                generator = self.generator
                assert state.segments is not None
                segments = self.segmenter(frames)
                deformation = segment_deformation(segments, state.segments)
                visibility = segment_visibility(segments, state.segments)
            if state.mask is not None:
                mask = warp(state.mask.expand(frames.shape[0], -1, -1, -1), deformation)
            else:
                mask = self.blend_mask(frames, options, segments, generator)
            visibility = visibility if generator.estimate_visibility else None
            prediction = generator.blend(state.features, generator.encode(frames), deformation, visibility, mask)
        return SwapResult(prediction.float(), mask.float(), deformation.float(),
                          None if visibility is None else visibility.float())

    # -------------------------------------------------------------------------------------------- frames

    def swap(self, source: np.ndarray, target: Iterable[np.ndarray], parts: Iterable[int], *,
             supervised: bool = False, hard: bool = False, source_segmentation: bool = False,
             first_order_motion: bool | None = None, output: Literal["uint8", "float"] = "uint8",
             ) -> Iterator[np.ndarray]:
        """Swap ``parts`` of ``source`` into every frame of ``target``, streamed.

        source: (S, S, 3) RGB, uint8 or float in [0, 1]; target: an iterable of such frames (read lazily,
        ``batch_size`` at a time: constant memory); parts: channel indices of the mask's probability map --
        segment model parts 1..K (0 = background) unsupervised, parser classes 0..18 supervised
        (:data:`~fomm_lab.swap.nets.bisenet.PARSER_CLASSES`); hard: threshold the mask at 0.5;
        source_segmentation: take the mask from the source (then warped) instead of each target frame;
        first_order_motion: the FOMM-aligned mode (default: on when a motion checkpoint was loaded and the
        swap is supervised). Yields (S, S, 3) frames, uint8 or (``output="float"``) float32 in [0, 1].
        Arguments are checked before the first frame is read.
        """
        if output not in ("uint8", "float"):
            raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
        options = self.options(parts, supervised=supervised, hard=hard, source_segmentation=source_segmentation,
                               first_order_motion=first_order_motion)
        state = self.prepare(self.to_tensor([source]), options)
        return self._stream(state, iter(target), options, output == "float")

    def _stream(self, state: SourceState, frames: Iterator[np.ndarray], options: SwapOptions,
                as_float: bool) -> Iterator[np.ndarray]:
        while batch := list(itertools.islice(frames, self.batch_size)):
            result = self.step(state, self.to_tensor(batch), options)
            yield from tensor_to_frames(result.prediction, as_float=as_float)

    # ------------------------------------------------------------------------------------------ figures

    def segments(self, frame: np.ndarray) -> np.ndarray:
        """The segment model's soft segmentation of one frame: (K+1, h, w) float32 probabilities summing to 1
        over the first axis (channel 0 the background; h = w = 64 for 256x256 frames)."""
        with torch.inference_mode(), self._autocast():
            segmentation = self.segmenter(self.to_tensor([frame])).segmentation
        assert segmentation is not None
        return segmentation[0].float().cpu().numpy()

    def parse(self, frame: np.ndarray) -> np.ndarray:
        """The face parser's class probabilities of one frame: (19, 512, 512) float32 (classes
        :data:`~fomm_lab.swap.nets.bisenet.PARSER_CLASSES`). CheckpointError without parser weights."""
        with torch.inference_mode():
            logits = self.parser_logits(self.to_tensor([frame]))
        return torch.softmax(logits, dim=1)[0].cpu().numpy()

    def mask(self, frame: np.ndarray, parts: Iterable[int], *, supervised: bool = False,
             hard: bool = False) -> np.ndarray:
        """The blend mask of one frame before any resizing: (h, w) with h = 64 (segment model) or 512
        (parser), the sum of the chosen channels' probabilities (0/1 with ``hard``)."""
        options = self.options(parts, supervised=supervised, hard=hard, first_order_motion=False)
        with torch.inference_mode():
            probabilities = self._probabilities(self.to_tensor([frame]), None, supervised)
            mask = probabilities[:, list(options.parts)].sum(dim=1)
            if hard:
                mask = (mask > 0.5).to(mask.dtype)
        return mask[0].float().cpu().numpy()
