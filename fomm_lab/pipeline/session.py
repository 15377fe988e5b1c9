"""One animation session: the only route from a job to its outputs, for every shell.

``Animation(job)`` owns the job, the model, the face detector and the work folder, and makes each decision
once: whether faces are cropped and with which detector (:func:`~fomm_lab.pipeline.check.needs_detector`), the
model (:func:`fomm_lab.engine.families.load_model`), the precision (the Animator's), the reference frame
(:func:`fomm_lab.engine.reference.check_reference`). The CLI (``fomm-lab animate``), the notebook
(:class:`~fomm_lab.lab.notebook.NotebookLab`), the live widgets and ``animate-pairs`` all call it::

    with Animation(job) as session:
        session.check()            # every check that needs no model (well under a second)
        session.prepare()          # the face crops of the photo and the clip(s), the reference frame
        session.animate()          # the job's options; writes the outputs
        session.animate(relative=False, output=OutputOptions(video=Path("absolute.mp4")))

``Animation(job).run()`` does all three (and is what :func:`fomm_lab.pipeline.run_job` does).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..geometry import Size
from .check import CheckedJob, check_job, needs_detector
from .enhance import enhanced, load_output_enhancer
from .job import AnimateJob, MotionOptions, OutputOptions
from .prepare import Prepared, Progress, SourcePlan, driving_frames, get_detector_for, prepare, prepare_source
from .write import AnimateResult, write_outputs

if TYPE_CHECKING:
    from ..engine.family import MotionModel
    from ..faces.detect import FaceDetector

log = logging.getLogger(__name__)

_MOTION_FIELDS = {f.name for f in dataclasses.fields(MotionOptions)}

ENHANCED_SIZE = 512
"""The side of the face enhancers' output (GPEN-512, GFPGAN v1.4), when the faces are not pasted back."""


class Animation:
    """The session of one job (see the module's description).

    model / detector / landmarks: given to share them between sessions (the notebook, batch pairs); otherwise
    made on first use. workdir: where the driving crops go (default: a temporary folder removed by
    :meth:`close`). progress: progress bars; say: where the steps' one-line reports go.
    """

    def __init__(self, job: AnimateJob, *, model: MotionModel | None = None, detector: FaceDetector | None = None,
                 landmarks: Callable[[np.ndarray], np.ndarray | None] | None = None, workdir: Path | None = None,
                 progress: bool = True, say: Progress = log.info):
        self.job = job
        self.progress = progress
        self.say = say
        self._model = model
        self._detector = detector
        self._landmarks = landmarks
        self._workdir = workdir
        self._owned_workdir: Path | None = None
        self._checked: CheckedJob | None = None
        self._prepared: Prepared | None = None
        self._enhancer: tuple[tuple, Any] | None = None
        self.animators: list[Any] = []

    # -- context ---------------------------------------------------------------------------------
    def __enter__(self) -> Animation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the temporary work folder (the driving crops), if the session made one."""
        if self._owned_workdir is not None:
            shutil.rmtree(self._owned_workdir, ignore_errors=True)
            self._owned_workdir = None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._owned_workdir = self._workdir = Path(tempfile.mkdtemp(prefix="fomm-lab-"))
        return self._workdir

    # -- what the session owns -------------------------------------------------------------------
    def check(self) -> CheckedJob:
        """Every check that needs no model (:func:`~fomm_lab.pipeline.check.check_job`), once."""
        if self._checked is None:
            self._checked = check_job(self.job, model_given=self._model is not None)
        return self._checked

    @property
    def model(self) -> MotionModel:
        """The job's model, loaded (and downloaded) once."""
        if self._model is None:
            from ..engine.families import load_model

            job = self.job
            self._model = load_model(job.model, job.checkpoint, device=job.runtime.device, cache_dir=job.cache_dir,
                                     progress=self.progress)
        return self._model

    @property
    def detector(self) -> FaceDetector | None:
        """The face detector the crop options ask for, made once; None when no face is cropped without a box."""
        if self._detector is None and needs_detector(self.job.crop, self.check().config):
            self._detector = get_detector_for(self.job.crop, self.job.runtime.device)
        return self._detector

    @property
    def landmarks(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        """face-alignment's landmarks (for the best frame): the detector's own when it has them."""
        if self._landmarks is None:
            found = getattr(self.detector, "landmarks", None)
            self._landmarks = found if callable(found) else None
        return self._landmarks

    # -- the steps -------------------------------------------------------------------------------
    def prepare_source(self, photo: np.ndarray | Path | None = None) -> SourcePlan:
        """The photo (default: the job's) cut to the model's frames: what :meth:`prepare` animates."""
        config = self.check().config if photo is None else self._config()
        return prepare_source(self.job.source if photo is None else photo, config.frame_size, self.job.crop, config,
                              self.detector)

    def _config(self) -> Any:
        from .check import model_config

        return self._checked.config if self._checked is not None else model_config(self.job.model)

    def prepare(self, source: SourcePlan | None = None) -> Prepared:
        """Crop the photo (or take ``source``, a :meth:`prepare_source`) and the driving clip(s); pick the
        reference frame. Done once; :attr:`prepared` keeps it for every :meth:`animate`."""
        if self._prepared is None:
            config = self.check().config
            landmarks = self.landmarks if self.job.motion.find_best_frame else None
            self._prepared = prepare(self.job, config, self.workdir, self.detector, landmarks=landmarks,
                                     progress=self.progress, say=self.say, source=source)
        return self._prepared

    @property
    def prepared(self) -> Prepared | None:
        return self._prepared

    def animator(self, motion: MotionOptions | None = None) -> Any:
        """An :class:`~fomm_lab.engine.animator.Animator` of the session's model with the job's runtime options and
        ``motion`` (default the job's); the live widgets animate with one."""
        from ..engine.animator import Animator

        motion = motion or self.job.motion
        runtime = self.job.runtime
        return Animator(self.model, relative=motion.relative, adapt_scale=motion.adapt_scale, avd=motion.avd,
                        batch_size=runtime.batch_size, dtype=runtime.dtype, compile=runtime.compile,
                        smoothing=motion.smoothing, backend=runtime.backend)

    def animate(self, *, output: OutputOptions | None = None, **motion: Any) -> AnimateResult:
        """Animate every face of the prepared job and write the outputs in one streamed pass.

        output: other outputs than the job's; ``motion``: MotionOptions fields that differ from the job's
        (``relative=False`` ...). The result is the animated crop, or, with paste-back, chosen faces or several
        faces, the full photo with every face pasted back. The Animators are kept for the same options.
        """
        from tqdm.auto import tqdm

        from ..device import dtype_name

        unknown = sorted(set(motion) - _MOTION_FIELDS)
        if unknown:
            raise TypeError(f"Animation.animate got unknown motion option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(_MOTION_FIELDS))}")
        job = self.job
        options = dataclasses.replace(job.motion, **motion)
        output = output or job.output
        prepared = self.prepare()
        size = prepared.config.frame_size
        faces = len(prepared.source.images)
        if len(self.animators) != faces or any(a.options != options for a in self.animators):
            self.animators = [_Keyed(self.animator(options), options) for _ in range(faces)]
        plans = prepared.drivings if len(prepared.drivings) == faces else prepared.drivings * faces
        frames = min(p.frames for p in plans)
        streams = [keyed.animator.animate(image, driving_frames(plan, size, job.strict), best_frame=prepared.best_frame)
                   for keyed, image, plan in zip(self.animators, prepared.source.images, plans)]
        paste = self.pastes_back(output)
        if output.enhance:
            corners = [c.box.as_ints() for c in prepared.source.crops]  # the compositor's pixel boxes
            sizes = [(x1 - x0, y1 - y0) for x0, y0, x1, y1 in corners] if paste else [None] * faces
            streams = [self._enhanced(stream, output, side) for stream, side in zip(streams, sizes)]
            if not paste:
                size = Size(ENHANCED_SIZE, ENHANCED_SIZE)
        results = _composite(prepared, streams, job.crop.feather) if paste else streams[0]
        results = tqdm(results, total=frames, desc=f"animating ({_mode_label(self.model, options)})", unit="frame",
                       disable=not self.progress)
        first = plans[0]
        audio = first.audio_from if output.audio else None
        written = write_outputs(results, output, first, prepared, size, audio, paste)
        return AnimateResult(written.outputs, written.frames, first.fps, prepared,
                             dtype_name(self.animators[0].animator.dtype))

    def enhancer(self, output: OutputOptions | None = None) -> Any:
        """The face enhancer the outputs ask for (:func:`~fomm_lab.pipeline.enhance.load_output_enhancer`), loaded
        once."""
        output = output or self.job.output
        key = (output.enhance, output.enhancer_weights)
        if self._enhancer is None or self._enhancer[0] != key:
            self._enhancer = (key, load_output_enhancer(output, self.job.runtime, str(self.model.device),
                                                        cache_dir=self.job.cache_dir, progress=self.progress))
        return self._enhancer[1]

    def _enhanced(self, stream: Iterator[np.ndarray], output: OutputOptions,
                  size: tuple[int, int] | None) -> Iterator[np.ndarray]:
        """The animated faces enhanced to 512x512, or to ``size`` (w, h): the face's size in the photo."""
        return enhanced(stream, self.enhancer(output), batch_size=self.job.runtime.batch_size, size=size,
                        strength=output.enhance_strength)

    def pastes_back(self, output: OutputOptions | None = None) -> bool:
        """Whether the animated faces are pasted back into the photo: asked for, or faces chosen by index, or
        several faces (and a face was cropped)."""
        output = output or self.job.output
        prepared = self.prepare()
        chosen = not isinstance(self.job.crop.faces, str)
        return (output.paste_back or chosen or len(prepared.source.images) > 1) and bool(prepared.source.crops)

    def run(self) -> AnimateResult:
        """Check, load the model, prepare and animate; the work folder is removed afterwards."""
        try:
            self.check()
            self.model  # noqa: B018 - loaded before the crops, so a missing checkpoint fails first
            self.prepare()
            return self.animate()
        finally:
            self.close()


class _Keyed:
    """An Animator with the motion options it was made for."""

    def __init__(self, animator: Any, options: MotionOptions):
        self.animator = animator
        self.options = options


def _mode_label(model: Any, options: MotionOptions) -> str:
    try:
        return model.mode(relative=options.relative and not options.avd, adapt_scale=options.adapt_scale,
                          avd=options.avd).label
    except ValueError:
        return "custom"


def _composite(prepared: Prepared, streams: list[Iterator[np.ndarray]], feather: float) -> Iterator[np.ndarray]:
    """Every animated face pasted back into the full photo, frame by frame."""
    from ..faces.paste import Compositor

    compositor = Compositor(prepared.source.photo, prepared.source.boxes,
                            [c.face for c in prepared.source.crops], feather=feather)
    for frames in zip(*streams):
        yield compositor.paste(list(frames))


def run_job(job: AnimateJob, *, model: MotionModel | None = None, detector: FaceDetector | None = None,
            progress: bool = True, say: Progress = log.info) -> AnimateResult:
    """Check, load the model, prepare and animate ``job`` (``Animation(job, ...).run()``); returns what was
    written."""
    return Animation(job, model=model, detector=detector, progress=progress, say=say).run()
