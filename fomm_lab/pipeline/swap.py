"""A face swap job and its session: a photo's face swapped into the face track of a video, pasted back into the
full-resolution video with its sound.

The stages are the animation's (:mod:`.check`, :mod:`.prepare`, :mod:`.write`); only the networks differ
(:mod:`fomm_lab.swap`, the motion-supervised co-part segmentation model of Siarohin et al., ICPR 2020)::

    with Swap(SwapJob(source=photo, target=clip, output=OutputOptions(video=out))) as session:
        session.check()      # every check that needs no weights: inputs, outputs, config, parts
        session.prepare()    # the photo's face crop; the clip's face tracks, the one swapped
        session.swap()       # swapped frame by frame, pasted back, written (with the target's sound)

Per target frame inside the chosen track: the frame's crop square (where the track's crop came from) is cut out
at the model's size, its parts swapped with the photo's (:meth:`fomm_lab.swap.Swapper.swap`), optionally
enhanced, and composited back into that full-resolution frame at the same square by the colour-matched, feathered
:class:`~fomm_lab.faces.paste.Compositor`. Frames outside the track are the target's, unchanged. Frames stream:
memory does not grow with the clip.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import BOX, CheckpointError, FaceIndexError, FommLabError, NoFaceError, Placeholder, Remedy
from ..geometry import Box, Size
from ..options import default
from .enhance import enhanced, load_output_enhancer
from .job import AnimateJob, CropOptions, OutputOptions, RuntimeOptions
from .prepare import DrivingPlan, Prepared, Progress, SourcePlan, get_detector_for, prepare_source

if TYPE_CHECKING:
    from ..engine.config import ModelConfig
    from ..faces.detect import FaceDetector
    from ..faces.track import CropPlan
    from ..hub.registry import RemoteFile
    from ..io.probe import VideoInfo
    from ..swap import SegmentConfig, Swapper

log = logging.getLogger(__name__)

FACE_PARTS = tuple(range(1, 16))
"""Supervised default: every face parser class but background (0), cloth (16), hair (17) and hat (18) -- skin,
brows, eyes, glasses, ears, earring, nose, mouth, lips, neck, necklace -- as the authors' notebook swaps a face."""
SEGMENT_PARTS = (1, 2, 5)
"""Unsupervised default: the authors' command-line default. What a segment is depends on the trained checkpoint:
look at :meth:`fomm_lab.swap.Swapper.segments` (the lab's part-mask figure) and choose."""
PARSER_CLASS_COUNT = 19
MAX_DISPLAY_HEIGHT = 512
"""Height cap of the side-by-side's columns and of the GIF (the video itself is at the target's full size)."""


@dataclass(frozen=True, kw_only=True)
class FaceSwapOptions:
    """What is swapped and with which networks (defaults from :data:`fomm_lab.options.OPTIONS`, ``swap.*``).

    config: the segment model (registry name, shipped config name or yaml); checkpoint: its weights instead of the
    registry's; parser: the face parser's weights instead of the registry's; motion_checkpoint: a 10-keypoint FOMM
    checkpoint for the FOMM-aligned mode (supervised only). parts: parser classes (supervised) or segments
    (unsupervised), None: :data:`FACE_PARTS` / :data:`SEGMENT_PARTS`. supervised: masks from the face parser;
    hard_mask: threshold the mask at 0.5; source_segmentation: the mask of the photo, moved, instead of each
    frame's. face_index: the target's face track, 0 the leftmost (None: the longest); target_box: the target's face
    box in pixels instead of detecting it.
    """

    config: str | Path = default("swap.config")
    checkpoint: Path | None = default("swap.checkpoint")
    parser: Path | None = default("swap.parser")
    motion_checkpoint: Path | None = default("swap.motion_checkpoint")
    parts: tuple[int, ...] | None = default("swap.parts")
    supervised: bool = default("swap.supervised")
    hard_mask: bool = default("swap.hard_mask")
    source_segmentation: bool = default("swap.source_segmentation")
    face_index: int | None = default("swap.face_index")
    target_box: tuple[float, float, float, float] | None = default("swap.target_box")

    @property
    def chosen_parts(self) -> tuple[int, ...]:
        """The parts swapped: as given, else the default of the mode."""
        if self.parts is not None:
            return tuple(int(p) for p in self.parts)
        return FACE_PARTS if self.supervised else SEGMENT_PARTS


MASK_FIELDS = ("parts", "supervised", "hard_mask", "source_segmentation")
"""The swap options :meth:`Swap.swap` may change for one call (the networks and the crops stay)."""


@dataclass(frozen=True, kw_only=True)
class SwapJob:
    """One face swap: the photo whose face goes in, the video whose face is replaced, and every option.

    crop: the photo's face crop (source_box, padding), the target's track (increase, mode, min_track_frames), the
    paste-back's feather and the face detector; faces are always cropped. output: video / side_by_side / gif,
    audio (the target's sound), enhance (after the swap, before the paste-back); paste_back does not apply (the
    swap is always pasted back). runtime: device, dtype, batch_size.
    """

    source: Path
    target: Path
    swap: FaceSwapOptions = field(default_factory=FaceSwapOptions)
    crop: CropOptions = field(default_factory=CropOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    cache_dir: Path | None = default("cache_dir")
    strict: bool = default("strict")

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))  # a str path is taken as the Path it names
        object.__setattr__(self, "target", Path(self.target))


@dataclass(frozen=True)
class CheckedSwap:
    """What :func:`check_swap_job` learnt: the segment model's config, its yaml and registry entry, the target."""

    config: SegmentConfig
    config_path: Path
    entry: RemoteFile | None
    target: VideoInfo


@dataclass
class SwapPrepared:
    """The photo's face crop and the target's face tracks, with the one swapped (``track``, an index of
    ``plan.tracks``)."""

    source: SourcePlan
    plan: CropPlan
    track: int


@dataclass
class FaceSwapResult:
    """What :meth:`Swap.swap` wrote: ``outputs`` by kind, every frame of the target (``frames``) at ``fps``, of
    which ``swapped`` inside the face track; the precision the networks ran in."""

    outputs: dict[str, Path]
    frames: int
    fps: float
    swapped: int
    prepared: SwapPrepared
    dtype: str = "float32"


class _FaceFrames:
    """What the crop stages read of a model's config: swaps are of faces (and crops are forced on anyway)."""

    is_face_model = True


_FACES = cast("ModelConfig", _FaceFrames())


def check_swap_job(job: SwapJob) -> CheckedSwap:
    """Every check that needs no weights, before any heavy work: the config (a segment model's, not an
    animation model's), its weights (given and present, or the registry's), the parser and motion checkpoint, the
    parts for the mode, the photo, the target (a video with frames), the options, the outputs (via
    :func:`~fomm_lab.pipeline.check._check_outputs`). Raises the error a later stage would."""
    from ..faces.track import CROP_MODES
    from ..io.image import read_image
    from ..io.video import read_video
    from ..swap.config import load_segment_config
    from ..swap.registry import resolve_segment_model
    from .check import _check_outputs

    options = job.swap
    config_path, entry = resolve_segment_model(options.config)
    config = load_segment_config(config_path)
    if options.checkpoint is not None:
        if not Path(options.checkpoint).is_file():
            raise CheckpointError(f"segment checkpoint {options.checkpoint} does not exist; check the path")
    elif entry is None:
        raise CheckpointError(f"segment config {options.config} comes without weights: give its checkpoint, or a "
                              "registry name whose checkpoint is fetched once",
                              remedies=[Remedy("give the weights file ({})", "swap.checkpoint", Placeholder("FILE")),
                                        Remedy("use the registry's model ({})", "swap.config", "vox-10segments")])
    for path, what in ((options.parser, "face parser weights"), (options.motion_checkpoint, "motion checkpoint")):
        if path is not None and not Path(path).is_file():
            raise CheckpointError(f"{what} {path} does not exist; check the path")
    if options.motion_checkpoint is not None and not options.supervised:
        raise FommLabError("the FOMM-aligned mode (a motion checkpoint) works with supervised masks only, as in the "
                           "authors' code", remedies=[Remedy("swap supervised ({})", "swap.supervised", True)])
    _check_parts(options, config)
    read_image(job.source)
    with read_video(job.target) as reader:
        target = reader.info
    if options.face_index is not None and options.target_box is not None:
        raise FommLabError("a target box gives the target one face track: a face index does not apply",
                           remedies=[Remedy("leave the face index out ({})", "swap.face_index", None)])
    if job.crop.mode not in CROP_MODES:
        raise FommLabError(f"crop mode {job.crop.mode!r} is not one of {', '.join(CROP_MODES)}")
    if job.runtime.batch_size < 1:
        raise FommLabError(f"batch size must be at least 1, got {job.runtime.batch_size}")
    if job.output.enhance is not None:
        from ..enhance.weights import check_kind

        check_kind(job.output.enhance)
    out = job.output
    if out.video is None and out.side_by_side is None and out.gif is None:
        raise FommLabError("SwapJob.output names no output: give output.video, output.side_by_side or output.gif")
    _check_outputs(AnimateJob(source=job.source, driving=job.target, checkpoint=options.checkpoint, output=out))
    return CheckedSwap(config, config_path, entry, target)


def _check_parts(options: FaceSwapOptions, config: SegmentConfig) -> None:
    parts = options.chosen_parts
    if not parts:
        raise FommLabError("no part to swap: name at least one", remedies=[
            Remedy("swap the face ({})", "swap.parts", FACE_PARTS if options.supervised else SEGMENT_PARTS)])
    count = PARSER_CLASS_COUNT if options.supervised else config.num_segments + 1
    bad = [p for p in parts if not 0 <= p < count]
    if bad:
        what = (f"the face parser's classes are 0 to {count - 1}" if options.supervised else
                f"the segment model {config.name} has {config.num_segments} parts, 1 to {config.num_segments} "
                "(0 is the background)")
        raise FommLabError(f"part {', '.join(map(str, bad))} does not exist: {what}")


def _source_no_face(exc: NoFaceError, photo: Path) -> NoFaceError:
    return NoFaceError(f"{exc.message} (the photo {photo}): a face swap needs a face in the photo and in the video",
                       details=exc.details, remedies=[Remedy("give its face box ({})", "crop.source_box", BOX)])


def _target_no_face(exc: NoFaceError) -> NoFaceError:
    remedies = [r for r in exc.remedies if r.option == "crop.min_track_frames"]
    return NoFaceError(f"{exc.message}: a face swap needs a face track in the target video", details=exc.details,
                       remedies=[*remedies, Remedy("give the face box of the target ({})", "swap.target_box", BOX)])


class Swap:
    """The session of one face swap (see the module's description): the only route from a :class:`SwapJob` to
    its outputs, for the CLI (``fomm-lab swap``), the lab and Python alike.

    swapper / detector: given to share them between sessions; otherwise made on first use. progress: progress
    bars; say: where the steps' one-line reports go.
    """

    def __init__(self, job: SwapJob, *, swapper: Swapper | None = None, detector: FaceDetector | None = None,
                 progress: bool = True, say: Progress = log.info):
        self.job = job
        self.progress = progress
        self.say = say
        self._swapper = swapper
        self._detector = detector
        self._checked: CheckedSwap | None = None
        self._prepared: SwapPrepared | None = None
        self._enhancer: tuple[tuple, Any] | None = None

    def __enter__(self) -> Swap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is kept on disk between steps (crops are cut from the frames as they stream); for symmetry with
        :class:`~fomm_lab.pipeline.session.Animation`."""

    # -- what the session owns -------------------------------------------------------------------
    def check(self) -> CheckedSwap:
        """Every check that needs no weights (:func:`check_swap_job`), once."""
        if self._checked is None:
            self._checked = check_swap_job(self.job)
        return self._checked

    @property
    def swapper(self) -> Swapper:
        """The segment model (with the face parser when supervised, the FOMM checkpoint when given), loaded once;
        the registry's weights are fetched and verified once."""
        if self._swapper is None:
            from ..swap import load_swapper
            from ..swap.registry import ensure_face_parser, ensure_segment_checkpoint

            checked = self.check()
            options, runtime = self.job.swap, self.job.runtime
            checkpoint = options.checkpoint
            if checkpoint is None:
                assert checked.entry is not None  # check_swap_job refuses a config without weights
                checkpoint = ensure_segment_checkpoint(checked.entry, self.job.cache_dir, self.progress)
            parser = options.parser
            if parser is None and options.supervised:
                parser = ensure_face_parser(self.job.cache_dir, self.progress)
            self._swapper = load_swapper(checked.config_path, checkpoint, parser, options.motion_checkpoint,
                                         device=runtime.device, dtype=runtime.dtype, batch_size=runtime.batch_size)
        return self._swapper

    @property
    def detector(self) -> FaceDetector | None:
        """The face detector the crop options ask for, made once; None when both face boxes are given."""
        if self._detector is None and (self.job.crop.source_box is None or self.job.swap.target_box is None):
            self._detector = get_detector_for(self.job.crop, self.job.runtime.device)
        return self._detector

    # -- the steps -------------------------------------------------------------------------------
    def prepare(self) -> SwapPrepared:
        """The photo's face crop (its largest face, or the given box) and the target's face tracks, with the one
        swapped: the longest, or ``face_index`` counted from the left. Done once."""
        if self._prepared is None:
            from ..faces.track import plan_video_crop

            job, options = self.job, self.job.swap
            config = self.check().config
            size = Size.square(config.frame_size)
            crop = dataclasses.replace(job.crop, source=True, driving=True, faces="largest",
                                       driving_box=options.target_box)
            try:
                source = prepare_source(job.source, size, crop, _FACES, self.detector)
            except NoFaceError as exc:
                raise _source_no_face(exc, job.source) from exc
            self.say("photo: face at x0={} y0={} x1={} y1={}".format(*source.crops[0].box.as_ints()))
            try:
                plan = plan_video_crop(job.target, size.width, increase=crop.increase, min_frames=crop.min_track_frames,
                                       detector=None if options.target_box is not None else self.detector,
                                       box=options.target_box, mode=crop.mode, progress=self.progress)
            except NoFaceError as exc:
                raise _target_no_face(exc) from exc
            track = self._track(plan)
            self.say(plan.describe())
            self.say(f"swapping the face of track {track + 1}")
            self._prepared = SwapPrepared(source, plan, track)
        return self._prepared

    def _track(self, plan: CropPlan) -> int:
        index = self.job.swap.face_index
        if index is None:
            return 0
        order = plan.left_to_right()
        if index >= len(order):
            raise FaceIndexError(f"face index {index} asked for, but {plan.path} has {len(order)} face track(s), "
                                 f"numbered 0 to {len(order) - 1} from left to right",
                                 remedies=[Remedy("swap the longest track ({})", "swap.face_index", None)])
        return order[index]

    def swap(self, *, output: OutputOptions | None = None, **options: Any) -> FaceSwapResult:
        """Swap the prepared faces and write the outputs in one streamed pass.

        output: other outputs than the job's; ``options``: :data:`MASK_FIELDS` that differ from the job's
        (``parts=(1, 2)``, ``hard_mask=True`` ...), on the same networks and crops.
        """
        from tqdm.auto import tqdm

        from ..device import dtype_name
        from .write import write_outputs

        unknown = sorted(set(options) - set(MASK_FIELDS))
        if unknown:
            raise TypeError(f"Swap.swap got unknown option(s) {', '.join(unknown)}; known: {', '.join(MASK_FIELDS)}")
        chosen = dataclasses.replace(self.job.swap, **options)
        if options:
            _check_parts(chosen, self.check().config)
        output = output or self.job.output
        prepared = self.prepare()
        swapper = self.swapper
        plan = prepared.plan
        swapped = 0

        def counted(faces: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal swapped
            for face in faces:
                swapped += 1
                yield face

        frames = tqdm(self._frames(prepared, chosen, output, counted), total=plan.frame_count, unit="frame",
                      desc="swapping faces", disable=not self.progress)
        audio = plan.path if output.audio and plan.has_audio and not plan.path.is_dir() else None
        driving = DrivingPlan(plan.path, plan.fps, plan.frame_count, None, audio)
        display = _display_size(plan.width, plan.height)
        written = write_outputs(frames, output, driving, Prepared(_FACES, prepared.source, [driving]), display, audio,
                                paste=False)
        return FaceSwapResult(written.outputs, written.frames, plan.fps, swapped, prepared, dtype_name(swapper.dtype))

    def _frames(self, prepared: SwapPrepared, options: FaceSwapOptions, output: OutputOptions,
                counted: Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]]) -> Iterator[np.ndarray]:
        """Every frame of the target at full resolution, the chosen track's face swapped and pasted back."""
        from ..faces.paste import Compositor
        from ..io.resize import resize_image

        plan, index = prepared.plan, prepared.track
        track = plan.tracks[index]
        side = Size.square(self.swapper.frame_size)
        stream = plan.boxed_frames(index)
        yield from (frame for frame, _ in itertools.islice(stream, track.start))
        pending: deque[tuple[np.ndarray, Box]] = deque()

        def crops() -> Iterator[np.ndarray]:
            for frame, box in itertools.islice(stream, track.frames):
                assert box is not None
                pending.append((frame, box))
                x0, y0, x1, y1 = box.as_ints()
                yield resize_image(frame[y0:y1, x0:x1], side)

        faces = self.swapper.swap(prepared.source.images[0], crops(), options.chosen_parts,
                                  supervised=options.supervised, hard=options.hard_mask,
                                  source_segmentation=options.source_segmentation)
        if output.enhance:
            faces = self._enhanced(faces, output, track.box)
        for face in counted(faces):
            frame, box = pending.popleft()
            yield Compositor(frame, [box], feather=self.job.crop.feather).paste([face])
        yield from (frame for frame, _ in stream)

    # -- enhancement ------------------------------------------------------------------------------
    def enhancer(self, output: OutputOptions | None = None) -> Any:
        """The face enhancer the outputs ask for (:func:`~fomm_lab.pipeline.enhance.load_output_enhancer`), loaded
        once."""
        output = output or self.job.output
        key = (output.enhance, output.enhancer_weights)
        if self._enhancer is None or self._enhancer[0] != key:
            self._enhancer = (key, load_output_enhancer(output, self.job.runtime, str(self.swapper.device),
                                                        cache_dir=self.job.cache_dir, progress=self.progress))
        return self._enhancer[1]

    def _enhanced(self, faces: Iterator[np.ndarray], output: OutputOptions, box: Box) -> Iterator[np.ndarray]:
        """The swapped faces enhanced at their size in the target (the track's square)."""
        return enhanced(faces, self.enhancer(output), batch_size=self.job.runtime.batch_size,
                        size=(round(box.width), round(box.height)), strength=output.enhance_strength)

    def run(self) -> FaceSwapResult:
        """Check, load the networks, prepare and swap."""
        try:
            self.check()
            self.swapper  # noqa: B018 - loaded before the crops, so a wrong checkpoint fails first
            self.prepare()
            return self.swap()
        finally:
            self.close()


def _display_size(width: int, height: int) -> Size:
    """The target's size shrunk (aspect kept, even sides) to at most :data:`MAX_DISPLAY_HEIGHT` high: the
    side-by-side's target and result columns and the GIF's width."""
    if height <= MAX_DISPLAY_HEIGHT:
        return Size(width, height)
    scale = MAX_DISPLAY_HEIGHT / height
    return Size(max(2, round(width * scale / 2) * 2), MAX_DISPLAY_HEIGHT)


def run_swap_job(job: SwapJob, *, swapper: Swapper | None = None, detector: FaceDetector | None = None,
                 progress: bool = True, say: Progress = log.info) -> FaceSwapResult:
    """Check, load the networks, prepare and swap ``job`` (``Swap(job, ...).run()``); returns what was written."""
    return Swap(job, swapper=swapper, detector=detector, progress=progress, say=say).run()
