"""The demo notebook's state, kept across re-runs of its cells, and its calls into the pipeline.

``NotebookLab.current()`` returns the same object every time a cell asks for it in one kernel (it
lives in the notebook's own namespace), so the photo chosen, an upload, the recorder widget with its
recording, the loaded model and the prepared crops survive re-running any cell or range of cells.
Each step checks what it needs: when something is missing (no driving clip recorded yet) it says
what it waits for and returns, without a traceback; errors are shown in the notebook's own words
(its parameters, e.g. ``CROP_SOURCE = False``). The flow itself is :mod:`fomm_lab.pipeline`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import options
from ..errors import FommLabError, Remedy, python_words

log = logging.getLogger(__name__)

_KEY = "_fomm_lab_notebook"

def notebook_words(remedy: Remedy) -> str | None:
    """A remedy worded as a change to the notebook's parameters cell (Python words where it has no parameter)."""
    return options.notebook_words(remedy.option, remedy.value) or python_words(remedy)


def _display(*objects: Any) -> None:
    from IPython.display import display

    display(*objects)


def _show_figure(fig: Any) -> None:
    import matplotlib.pyplot as plt

    _display(fig)
    plt.close(fig)


def animation_path(output_dir: Path, caption: str) -> Path:
    return output_dir / ("animation-" + caption.replace(" + ", "-").replace(", ", "-").replace(" ", "-") + ".mp4")


class NotebookLab:
    """What the demo notebook has done so far, and its steps (see the module's description).

    The parameters (the ``job`` fields, output folder, device) are refreshed by :meth:`configure`
    each time the setup cell runs; the state (photo, recorder, model, crops, results) stays.
    """

    def __init__(self) -> None:
        from ..pipeline import AnimateJob

        self.output_dir = Path("temp")
        self.job: AnimateJob | None = None
        self.interactive = True
        self._detectors: dict[tuple[str, bool], Any] = {}
        self._model: tuple[tuple, Any] | None = None
        self._gallery: Any = None
        self._recorder: Any = None
        self.source: Any = None
        self.prepared: Any = None
        self.results: dict[str, Path] = {}
        self._said: set[str] = set()

    # -- state across re-runs -----------------------------------------------------------------
    @classmethod
    def current(cls) -> NotebookLab:
        """The lab of this kernel (created on first use); a fresh one outside IPython."""
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
        namespace = getattr(shell, "user_ns", None)
        if namespace is None:
            return cls()
        lab = namespace.get(_KEY)
        if not isinstance(lab, cls):
            lab = namespace[_KEY] = cls()
        return lab

    def configure(self, *, config: str, checkpoint: str | None, device: str | None, dtype: str,
                  source_image: str, output_dir: str, interactive: bool, download_face_weights: bool,
                  face_detector: str = "auto", crop_source: bool | None = None, crop_driving: bool | None = None,
                  source_box: tuple | None = None, driving_box: tuple | None = None, multi_face: bool = False,
                  find_best_frame: bool = True, best_frame: int | None = None, smoothing: float | None = None,
                  ) -> None:
        """Take the parameters cell's values. The photo and clip chosen so far are kept; a change of
        model or crop options invalidates what depends on them."""
        from ..engine.smoothing import DEFAULT_STRENGTH
        from ..pipeline import AnimateJob, CropOptions, MotionOptions, RuntimeOptions

        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        motion = MotionOptions(best_frame=best_frame, find_best_frame=find_best_frame and best_frame is None,
                               smoothing=DEFAULT_STRENGTH if smoothing is None else smoothing)
        crop = CropOptions(source=crop_source, driving=crop_driving, source_box=source_box, driving_box=driving_box,
                           faces="all" if multi_face else "largest", detector=face_detector,
                           download_face_weights=download_face_weights)
        job = AnimateJob(source=Path(source_image), driving=self.job.driving if self.job else (), model=config,
                         checkpoint=Path(checkpoint) if checkpoint else None, motion=motion, crop=crop,
                         runtime=RuntimeOptions(device=device, dtype=dtype))
        if self.job is not None and (self.job.crop, self.job.model, self.job.motion) != (crop, config, motion):
            self.prepared, self.results = None, {}
        self.job = job
        self.interactive = interactive

    # -- messages -----------------------------------------------------------------------------
    def say_once(self, text: str) -> None:
        """Print ``text`` the first time only (a warning that would repeat on every crop)."""
        if text not in self._said:
            self._said.add(text)
            print(text)

    @staticmethod
    def waiting(text: str) -> None:
        """Say, without an error, what this step waits for."""
        print(f"Waiting: {text}")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run a step; a FommLabError is shown in the notebook's words (no traceback) and the step ends."""
        try:
            yield
        except FommLabError as exc:
            print(f"{name} did not work: {exc.render(notebook_words)}")

    # -- detectors and model ------------------------------------------------------------------
    def detector(self) -> Any:
        """The face detector the parameters ask for, made once (the offline warning is said once)."""
        import warnings

        from ..faces.detect import FaceAlignmentUnavailable
        from ..pipeline.prepare import get_detector_for

        assert self.job is not None
        key = self._detector_key()
        if key not in self._detectors:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._detectors[key] = get_detector_for(self.job.crop, self.job.runtime.device)
            for warning in caught:
                if isinstance(warning.message, FaceAlignmentUnavailable):
                    self.say_once("Face boxes come from OpenCV's Haar cascades (no landmarks, so no best frame): "
                                  + warning.message.error.first_line(notebook_words))
        return self._detectors[key]

    def _detector_key(self) -> tuple[str, bool]:
        assert self.job is not None
        return (self.job.crop.detector, self.job.crop.download_face_weights)

    def landmarks(self) -> Callable[[np.ndarray], np.ndarray | None] | None:
        landmarks = getattr(self.detector(), "landmarks", None)
        return landmarks if callable(landmarks) else None

    def model(self) -> Any:
        """The model of the parameters, loaded once (downloaded once, with a progress bar) by the session."""
        assert self.job is not None
        key = (str(self.job.model), str(self.job.checkpoint), self.job.runtime.device)
        if self._model is None or self._model[0] != key:
            self._model = (key, self.session().model)
            self.prepared, self.results = None, {}
        return self._model[1]

    def session(self) -> Any:
        """The :class:`~fomm_lab.pipeline.Animation` of the current parameters and choices, sharing the loaded
        model, the face detector and the prepared crops; the driving crops go to the output folder."""
        from ..pipeline import Animation, OutputOptions

        assert self.job is not None
        job = self.job
        if job.output.video is None:
            job = replace(job, output=OutputOptions(video=animation_path(self.output_dir, "check")))
        key = (str(job.model), str(job.checkpoint), job.runtime.device)
        model = self._model[1] if self._model is not None and self._model[0] == key else None
        session = Animation(job, model=model, detector=self._detectors.get(self._detector_key()),
                            workdir=self.output_dir / "crops", say=print)
        session._prepared = self.prepared
        return session

    # -- the photo ----------------------------------------------------------------------------
    def choose_photo(self, folder: str | Path, selected: str | Path) -> Path:
        """The photo: from the gallery (shown once, it keeps its choice and uploads) or ``selected``."""
        if not self.interactive:
            return Path(selected)
        if self._gallery is None:
            from .gallery import ImageGallery

            self._gallery = ImageGallery(folder, selected=selected, upload_dir=self.output_dir / "uploads")
        _display(self._gallery.widget)
        return self._gallery.path

    def crop_photo(self, photo: str | Path | None = None) -> Any:
        """Crop ``photo`` (default: the gallery's current choice, else SOURCE_IMAGE) as the pipeline does and
        show the photo with its box beside the crop."""
        from ..pipeline import model_config
        from ..pipeline.check import needs_detector
        from .figures import photo_crop_figure

        assert self.job is not None
        if photo is None:
            photo = self._gallery.path if self._gallery is not None else self.job.source
        self.job = replace(self.job, source=Path(photo))
        config = model_config(self.job.model)
        self.source = None
        print(f"Photo: {Path(photo).resolve()}")
        with self.step("Cropping the photo"):
            if needs_detector(self.job.crop, config):
                self.detector()
            self.source = self.session().prepare_source(Path(photo))
            _show_figure(photo_crop_figure(self.source))
        self.prepared, self.results = None, {}
        return self.source

    # -- the driving clip ---------------------------------------------------------------------
    def recorder(self, max_seconds: float = 10) -> Any:
        """The webcam recorder, made once per kernel: re-running its cell shows the same widget, with
        the recording it holds."""
        if self._recorder is None:
            from .recorder import WebcamRecorder

            self._recorder = WebcamRecorder(self.output_dir, max_seconds=max_seconds)
        _display(self._recorder)
        return self._recorder

    def driving(self, given: str | Path | None) -> Path | None:
        """The driving clip: the latest recording, else ``given`` (DRIVING_VIDEO); None (said) when neither."""
        recorded = self._recorder.video_path if self._recorder is not None else None
        path = recorded or (Path(given) if given else None)
        if path is None:
            self.waiting("no driving clip yet: record one with the recorder above (or set DRIVING_VIDEO in the "
                         "parameters cell), then run this cell and the ones below again")
            return None
        assert self.job is not None
        if self.job.driving != path:
            self.prepared, self.results = None, {}
        self.job = replace(self.job, driving=path)
        print(f"Driving clip: {path}")
        return path

    def prepare(self) -> Any:
        """Cut the driving clip to its face track (the pipeline's decisions), find the reference frame,
        and show the crop plan and the keypoints of the photo and of the reference frame."""

        if self.source is None:
            self.waiting("a photo: run the photo cell above first")
            return None
        assert self.job is not None
        if not self.job.drivings:
            self.waiting("a driving clip (see the recording step above)")
            return None
        with self.step("Preparing the driving clip"):
            if self.job.motion.find_best_frame and self.landmarks() is None:
                print("Best frame needs face-alignment's landmarks (unavailable): the first frame is the reference.")
                self.job = replace(self.job, motion=replace(self.job.motion, find_best_frame=False))
            self.detector()
            self.prepared = None
            session = self.session()
            prepared = session.prepare(source=self.source)
            if prepared.drivings[0].plan is not None:
                self._show_plan(prepared.drivings[0].plan)
            self.prepared, self.results = prepared, {}
            self._model = (self._model_key(), session.model)
            self._show_keypoints()
        return self.prepared

    def _model_key(self) -> tuple:
        assert self.job is not None
        return (str(self.job.model), str(self.job.checkpoint), self.job.runtime.device)

    def _show_plan(self, plan: Any) -> None:
        from ..io.video import read_video
        from .figures import crop_plan_figure

        with read_video(plan.path) as reader:
            frame = next(iter(reader))
        _show_figure(crop_plan_figure(plan, frame))

    def _show_keypoints(self) -> None:
        import torch

        from ..engine.frames import frames_to_tensor
        from ..pipeline.prepare import driving_frames
        from .figures import keypoints_figure

        model = self.model()
        size = model.frame_size
        reference_index = self.prepared.best_frame or 0
        frames = driving_frames(self.prepared.drivings[0], size)
        reference = next(f for i, f in enumerate(frames) if i == reference_index)
        images = [self.prepared.source.images[0], reference]
        detect = model.inference_networks().kp_detector
        with torch.inference_mode():
            keypoints = [detect(frames_to_tensor([image], size, model.device)) for image in images]
        _show_figure(keypoints_figure(images, keypoints, ["photo", f"reference frame {reference_index}"]))

    # -- animating and exporting --------------------------------------------------------------
    def animate(self) -> dict[str, Path]:
        """One animation per motion mode the model's family offers (FOMM: the three relative / adapt-scale
        combinations), written as mp4 by the session."""
        from ..pipeline import OutputOptions

        if self.prepared is None:
            self.waiting("the prepared clip: run the cells above (photo, driving clip, preparation) first")
            return {}
        assert self.job is not None
        results = {}
        with self.step("Animating"):
            session = self.session()
            for mode in self.model().modes:
                path = animation_path(self.output_dir, mode.label)
                result = session.animate(output=OutputOptions(video=path), relative=mode.relative,
                                         adapt_scale=mode.adapt_scale, avd=mode.avd)
                results[mode.label] = result.outputs["video"]
                print(f"{mode.label}: {path} ({result.frames} frames, {result.dtype})")
            self.results = results
        return self.results

    def compare(self) -> None:
        """The driving clip and the animations played side by side in sync."""
        if not self.results:
            self.waiting("the animations of the cell above")
            return
        from .compare import ComparisonPlayer

        _display(ComparisonPlayer([self.prepared.drivings[0].path, *self.results.values()],
                                  ["driving", *self.results]))

    def export(self, gif_fps: float = 12.5) -> Path | None:
        """``comparison.mp4`` (driving | each animation) with sound, ``comparison.gif`` and one GIF per
        animation, in the output folder; the comparison GIF is shown."""
        from IPython.display import Image

        from ..io.export import make_gif, side_by_side
        from ..io.video import read_video

        if not self.results:
            self.waiting("the animations above")
            return None
        driving = self.prepared.drivings[0]
        size = self.prepared.config.frame_size
        with self.step("Exporting"):
            readers = [read_video(driving.path), *(read_video(p) for p in self.results.values())]
            try:
                comparison = side_by_side(self.output_dir / "comparison.mp4", readers, ["driving", *self.results],
                                          driving.fps, audio_from=driving.audio_from, height=size.height,
                                          total=driving.frames)
            finally:
                for reader in readers:
                    reader.close()
            gif = make_gif(comparison, self.output_dir / "comparison.gif", fps=min(driving.fps, gif_fps),
                           width=size.width * len(readers))
            for path in self.results.values():
                make_gif(path, path.with_suffix(".gif"), fps=min(driving.fps, gif_fps), width=size.width)
            print(f"Saved {comparison} and {gif}")
            _display(Image(filename=str(gif)))
            return comparison
        return None

    def _live_animator(self) -> Any:
        """An Animator for live use (relative motion with adapted scale), or None (and a waiting line) before a
        photo is chosen."""

        if self.source is None:
            self.waiting("a photo: run the photo cell above first")
            return None
        assert self.job is not None
        return self.session().animator(replace(self.job.motion, relative=True, adapt_scale=True))

    def local_camera(self, camera: int | str) -> Any:
        """Animate from a camera on the kernel's machine (e.g. ``docker run --device /dev/video0``)."""
        from .local_camera import LocalCamera

        animator = self._live_animator()
        if animator is None:
            return None
        assert self.source is not None
        with self.step("Starting the local camera"):
            return LocalCamera(animator, self.source.images[0], camera=camera).start()
        return None

    def live(self) -> Any:
        """The live animator on the photo's face crop (browser camera)."""
        from .live_animator import LiveAnimator

        animator = self._live_animator()
        if animator is None:
            return None
        assert self.source is not None
        widget = LiveAnimator(animator, self.source.images[0], output_dir=self.output_dir, landmarker=self.landmarks())
        _display(widget)
        return widget
