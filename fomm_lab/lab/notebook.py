"""The demo notebook's state, kept across re-runs of its cells, and its calls into the pipeline.

``NotebookLab.current()`` returns the same object every time a cell asks for it in one kernel (it
lives in the notebook's own namespace), so an upload, the recorder widget with its recording, the
loaded model and the prepared crops survive re-running any cell or range of cells.

**Parameters are the source of truth on every re-run.** A parameter edited in the parameters cell takes
effect when that cell and the cells that use it run again (``SOURCE_IMAGE`` selects the new photo in the
gallery, ``DRIVING_VIDEO`` replaces the recording, ``CONFIG`` loads the other model). What the user did
*after* the parameter last changed is kept: an upload or a gallery choice, a recording. Whichever came
last wins (:class:`_Latest`).

Each step checks what it needs: when something is missing (no driving clip recorded yet, a model whose
weights could not be fetched) it says what it waits for and returns, without a traceback; errors are
shown in the notebook's own words (its parameters, e.g. ``CROP_SOURCE = False``, ``CHECKPOINT = ...``).
The flow itself is :mod:`fomm_lab.pipeline`'s.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
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
    """A remedy worded as a change to the notebook's parameters cell (Python words where it has no parameter).

    A download that failed is answered with ``CHECKPOINT`` (the file fetched by hand); random weights are never
    offered in the notebook (a model without weights animates noise)."""
    if remedy.option == "download.url":
        from ..hub.registry import MODELS

        entry = MODELS.get(str(remedy.value))
        filename = entry.filename if entry is not None else "the checkpoint file"
        return (f"set CHECKPOINT = \"path/to/{filename}\" in the parameters cell once you have downloaded it in a "
                "browser from an address below")
    if remedy.option == "random_weights":
        return None
    return options.notebook_words(remedy.option, remedy.value) or python_words(remedy)


def _compare_words(reference: str) -> Callable[[Remedy], str | None]:
    """The notebook's words, with a failed download answered by a ``COMPARE_MODELS`` entry (config, checkpoint)."""
    def words(remedy: Remedy) -> str | None:
        if remedy.option == "download.url":
            from ..hub.registry import MODELS

            entry = MODELS.get(str(remedy.value))
            filename = entry.filename if entry is not None else "the checkpoint file"
            return (f"put ({reference!r}, \"path/to/{filename}\") in COMPARE_MODELS once you have downloaded it in a "
                    "browser from an address below")
        return notebook_words(remedy)

    return words


def _display(*objects: Any) -> None:
    from IPython.display import display

    display(*objects)


def _show_figure(fig: Any) -> None:
    import matplotlib.pyplot as plt

    _display(fig)
    plt.close(fig)


def animation_path(output_dir: Path, caption: str) -> Path:
    return output_dir / ("animation-" + caption.replace(" + ", "-").replace("+", "-").replace(", ", "-")
                         .replace(" ", "-") + ".mp4")


class _Latest:
    """Which of a parameter and the user's own actions came last (a counter of events in this kernel)."""

    def __init__(self) -> None:
        self.clock = 0
        self.parameter: Any = None
        self.parameter_at = -1
        self.action_at = -1

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def see_parameter(self, value: Any) -> bool:
        """Note the parameter's value; True when it changed since the last look (it then takes effect)."""
        if self.parameter_at >= 0 and value == self.parameter:
            return False
        self.parameter, self.parameter_at = value, self._tick()
        return True

    def see_action(self) -> None:
        """The user acted (upload, gallery choice, recording)."""
        self.action_at = self._tick()

    @property
    def parameter_wins(self) -> bool:
        return self.parameter_at > self.action_at


class NotebookLab:
    """What the demo notebook has done so far, and its steps (see the module's description).

    The parameters (the ``job`` fields, output folder, device) are refreshed by :meth:`configure`
    each time the setup cell runs; the user's actions (upload, gallery choice, recording) and what
    depends only on them stay.
    """

    def __init__(self) -> None:
        from ..pipeline import AnimateJob

        self.output_dir = Path("temp")
        self.job: AnimateJob | None = None
        self.interactive = True
        self._detectors: dict[tuple[str, bool], Any] = {}
        self._model: tuple[tuple, Any] | None = None
        self._model_failed: tuple[tuple, str] | None = None
        self._gallery: Any = None
        self._recorder: Any = None
        self._photo = _Latest()
        self._driving = _Latest()
        self._photo_failed: str | None = None
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
                  enhance: str | None = None) -> None:
        """Take the parameters cell's values. An edited ``source_image`` replaces the photo chosen before it; a
        change of model or crop options invalidates what depends on them."""
        from ..engine.smoothing import DEFAULT_STRENGTH
        from ..pipeline import AnimateJob, CropOptions, MotionOptions, OutputOptions, RuntimeOptions

        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        motion = MotionOptions(best_frame=best_frame, find_best_frame=find_best_frame and best_frame is None,
                               smoothing=DEFAULT_STRENGTH if smoothing is None else smoothing)
        crop = CropOptions(source=crop_source, driving=crop_driving, source_box=source_box, driving_box=driving_box,
                           faces="all" if multi_face else "largest", detector=face_detector,
                           download_face_weights=download_face_weights)
        self._photo.see_parameter(str(source_image))
        source = self._photo_choice()
        job = AnimateJob(source=source, driving=self.job.driving if self.job else (), model=config,
                         checkpoint=Path(checkpoint) if checkpoint else None, motion=motion, crop=crop,
                         output=OutputOptions(enhance=enhance), runtime=RuntimeOptions(device=device, dtype=dtype))
        if self.job is not None and (self.job.crop, self.job.model, self.job.checkpoint, self.job.motion) != (
                crop, config, job.checkpoint, motion):
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

    def _model_key(self) -> tuple:
        assert self.job is not None
        return (str(self.job.model), str(self.job.checkpoint), self.job.runtime.device)

    def model(self) -> Any:
        """The model of the parameters, loaded once (its checkpoint downloaded once, with a progress bar). A
        failure (offline, no weights for a config) is said in the notebook's words, with how to go on, and
        None is returned; the cells that need the model then say they wait for it."""
        assert self.job is not None
        key = self._model_key()
        if self._model is not None and self._model[0] == key:
            return self._model[1]
        self._model_failed = None
        with self.step("Loading the model"):
            session = self.session(model=False)
            session.check()  # a config without weights is an error before any work
            model = session.model
            self._model = (key, model)
            self.prepared, self.results = None, {}
            print(f"Model {model.name} ({model.family}): {model.frame_size} frames on {model.device}")
            return model
        self._model_failed = (key, "the model cell above did not work: follow its advice, then run it and the "
                                   "cells below again")
        return None

    def _needed_model(self) -> Any:
        """The model for a later step: loaded, or None after saying that the model cell's failure is waited on."""
        key = self._model_key()
        if self._model is not None and self._model[0] == key:
            return self._model[1]
        if self._model_failed is not None and self._model_failed[0] == key:
            self.waiting(f"the model: {self._model_failed[1]}")
            return None
        return self.model()

    def session(self, model: bool = True) -> Any:
        """The :class:`~fomm_lab.pipeline.Animation` of the current parameters and choices, sharing the loaded
        model (``model=False``: a fresh one), the face detector and the prepared crops; the driving crops go to
        the output folder."""
        from ..pipeline import Animation

        assert self.job is not None
        job = self.job
        if job.output.video is None:
            job = replace(job, output=replace(job.output, video=animation_path(self.output_dir, "check")))
        loaded = None
        if model and self._model is not None and self._model[0] == self._model_key():
            loaded = self._model[1]
        session = Animation(job, model=loaded, detector=self._detectors.get(self._detector_key()),
                            workdir=self.output_dir / "crops", say=print)
        session._prepared = self.prepared
        return session

    # -- the photo ----------------------------------------------------------------------------
    def _photo_choice(self) -> Path:
        """SOURCE_IMAGE when it changed after the last gallery choice or upload; else that choice."""
        if self._gallery is not None and self._photo.parameter_wins:
            self._gallery.select(self._photo.parameter)
        if self._gallery is not None:
            return Path(self._gallery.path)
        return Path(self._photo.parameter)

    def choose_photo(self, folder: str | Path, selected: str | Path) -> None:
        """The photo gallery of ``folder`` and the uploads (shown once per kernel; it keeps its choice and uploads):
        ``selected`` (SOURCE_IMAGE) is chosen when it changed since the last choice made in the gallery."""
        self._photo.see_parameter(str(selected))
        if not self.interactive:
            print(f"Photo: {Path(selected)} (USE_WEBCAM = False: no gallery)")
            return
        with self.step("Showing the photos"):
            if self._gallery is None:
                from .gallery import ImageGallery

                self._gallery = ImageGallery(folder, selected=selected, upload_dir=self.output_dir / "uploads",
                                             on_choice=self._photo.see_action)
            self._photo_choice()
            _display(self._gallery.widget)

    def crop_photo(self, photo: str | Path | None = None) -> Any:
        """Crop ``photo`` (default: the photo chosen: SOURCE_IMAGE, or a later gallery choice or upload) as the
        pipeline does and show the photo with its box beside the crop."""
        from ..pipeline import model_config
        from ..pipeline.check import needs_detector
        from .figures import photo_crop_figure

        assert self.job is not None
        photo = Path(photo) if photo is not None else self._photo_choice()
        self.job = replace(self.job, source=photo)
        self.source, self.prepared, self.results = None, None, {}
        self._photo_failed = ("the photo cell above did not work (see its message): choose another photo or follow "
                              "its advice, then run it and the cells below again")
        print(f"Photo: {photo.resolve()}")
        with self.step("Cropping the photo"):
            config = model_config(self.job.model)
            if needs_detector(self.job.crop, config):
                self.detector()
            self.source = self.session().prepare_source(photo)
            self._photo_failed = None
            _show_figure(photo_crop_figure(self.source))
        return self.source

    def _need_photo(self) -> bool:
        if self.source is not None:
            return True
        self.waiting(f"a photo: {self._photo_failed}" if self._photo_failed else
                     "a photo: run the photo cell above first")
        return False

    # -- the driving clip ---------------------------------------------------------------------
    def recorder(self, max_seconds: float = 10, sound: bool = True) -> Any:
        """The webcam recorder, made once per kernel: re-running its cell shows the same widget, with
        the recording it holds. ``sound``: record the microphone too (when the browser gives one)."""
        if self._recorder is None:
            from .recorder import WebcamRecorder

            self._recorder = WebcamRecorder(self.output_dir, max_seconds=max_seconds, sound=sound)
            self._recorder.observe(self._recorded, names="path")
        else:
            self._recorder.sound = sound
        _display(self._recorder)
        return self._recorder

    def _recorded(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._driving.see_action()

    def driving(self, given: str | Path | None) -> Path | None:
        """The driving clip: DRIVING_VIDEO when it was set or changed after the latest recording, else that
        recording; None (said) when there is neither."""
        self._driving.see_parameter(str(given) if given else None)
        recorded = self._recorder.video_path if self._recorder is not None else None
        parameter = Path(given) if given else None
        path = parameter if (parameter is not None and (recorded is None or self._driving.parameter_wins)) \
            else recorded
        if path is None:
            self.waiting("no driving clip yet: record one with the recorder above (or set DRIVING_VIDEO in the "
                         "parameters cell), then run this cell and the ones below again")
            return None
        assert self.job is not None
        if self.job.driving != path:
            self.prepared, self.results = None, {}
        self.job = replace(self.job, driving=path)
        print(f"Driving clip: {path}" + (" (the recording)" if path == recorded else " (DRIVING_VIDEO)"))
        return path

    def prepare(self) -> Any:
        """Cut the driving clip to its face track (the pipeline's decisions), find the reference frame,
        and show the crop plan with its ffmpeg command and the keypoints of the photo and the reference frame."""
        if not self._need_photo():
            return None
        assert self.job is not None
        if not self.job.drivings:
            self.waiting("a driving clip (see the recording step above)")
            return None
        model = self._needed_model()
        if model is None:
            return None
        with self.step("Preparing the driving clip"):
            if self.job.motion.find_best_frame and self.landmarks() is None:
                print("Best frame needs face-alignment's landmarks (unavailable): the first frame is the reference.")
                self.job = replace(self.job, motion=replace(self.job.motion, find_best_frame=False))
            self.detector()
            self.prepared = None
            lines: list[str] = []
            session = self.session()
            session.say = lines.append
            prepared = session.prepare(source=self.source)
            plans = {d.plan.describe(): d for d in prepared.drivings if d.plan is not None}
            for line in lines:  # the crop plan with the exact command that wrote the crop
                print(plans[line].plan.describe(plans[line].path) if line in plans else line)
            if prepared.drivings[0].plan is not None:
                self._show_plan(prepared.drivings[0].plan)
            self.prepared, self.results = prepared, {}
            self._show_keypoints(model)
        return self.prepared

    def _show_plan(self, plan: Any) -> None:
        from ..io.video import read_video
        from .figures import crop_plan_figure

        with read_video(plan.path) as reader:
            frame = next(iter(reader))
        _show_figure(crop_plan_figure(plan, frame))

    def _show_keypoints(self, model: Any) -> None:
        import torch

        from ..engine.frames import frames_to_tensor
        from ..pipeline.prepare import driving_frames
        from .figures import keypoints_figure

        size = model.frame_size
        reference_index = self.prepared.best_frame or 0
        frames = driving_frames(self.prepared.drivings[0], size)
        reference = next(f for i, f in enumerate(frames) if i == reference_index)
        images = [self.prepared.source.images[0], reference]
        detect = model.inference_networks().kp_detector
        with torch.inference_mode():
            keypoints = [detect(frames_to_tensor([image], size, model.device)) for image in images]
        _show_figure(keypoints_figure(images, keypoints, ["photo", f"reference frame {reference_index}"]))

    def _need_prepared(self, what: str = "the prepared clip: run the cells above (photo, driving clip, "
                                           "preparation) first") -> bool:
        if self.prepared is not None:
            return True
        self.waiting(what)
        return False

    # -- animating and exporting --------------------------------------------------------------
    def animate(self) -> dict[str, Path]:
        """One animation per motion mode the model's family offers (FOMM: the three relative / adapt-scale
        combinations; TPSMM: standard, relative, avd), written as mp4 by the session. A file from an earlier
        run is replaced, and that is said."""
        from ..pipeline import OutputOptions

        if not self._need_prepared():
            return {}
        model = self._needed_model()
        if model is None:
            return {}
        results = {}
        with self.step("Animating"):
            session = self.session()
            for mode in model.modes:
                path = animation_path(self.output_dir, mode.label)
                if path.exists():
                    print(f"{mode.label}: replacing {path} (written by an earlier run)")
                result = session.animate(output=OutputOptions(video=path), relative=mode.relative,
                                         adapt_scale=mode.adapt_scale, avd=mode.avd)
                results[mode.label] = result.outputs["video"]
                print(f"{mode.label}: {path} ({result.frames} frames, {result.dtype})")
            self.results = results
        return self.results

    def compare(self) -> None:
        """The driving clip and the animations played side by side in sync (no camera needed)."""
        if not self.results:
            self.waiting("the animations of the cell above")
            return
        from .compare import ComparisonPlayer

        _display(ComparisonPlayer([self.prepared.drivings[0].path, *self.results.values()],
                                  ["driving", *self.results]))

    def export(self, gif_fps: float = 12.5) -> Path | None:
        """``comparison.mp4`` (photo | driving | each animation, with the clip's sound, like the CLI's
        side-by-side), ``comparison.gif`` and one GIF per animation, in the output folder; every file written is
        listed and the comparison GIF is shown."""
        from IPython.display import Image

        from ..io.export import make_gif, side_by_side
        from ..io.video import read_video

        if not self.results:
            self.waiting("the animations above")
            return None
        driving = self.prepared.drivings[0]
        size = self.prepared.config.frame_size
        photo = self.prepared.source.images[0]
        with self.step("Exporting"):
            readers = [read_video(driving.path), *(read_video(p) for p in self.results.values())]
            try:
                comparison = side_by_side(self.output_dir / "comparison.mp4", [photo, *readers],
                                          ["photo", "driving", *self.results], driving.fps,
                                          audio_from=driving.audio_from, height=size.height, total=driving.frames)
            finally:
                for reader in readers:
                    reader.close()
            fps = min(driving.fps, gif_fps)
            written = [(comparison, f"photo | driving | {len(self.results)} animations"
                        + (", with the clip's sound" if driving.audio_from else ""))]
            gif = make_gif(comparison, self.output_dir / "comparison.gif", fps=fps,
                           width=size.width * (len(readers) + 1))
            written.append((gif, "the same as a GIF, without sound"))
            for label, path in self.results.items():
                written.append((make_gif(path, path.with_suffix(".gif"), fps=fps, width=size.width),
                                f"{label} as a GIF"))
            print("Saved:\n" + "\n".join(f"  {path}  ({what})" for path, what in written))
            _display(Image(filename=str(gif)))
            return comparison
        return None

    # -- another model on the same photo and clip ------------------------------------------------
    def compare_models(self, models: Sequence[str | tuple[str, str | None]]) -> dict[str, Path]:
        """Animate the prepared photo and clip with each of ``models`` (a model name or config, or (config,
        checkpoint)) in its recommended mode (relative motion with adapted scale), and show them in sync beside
        the driving clip; ``models-comparison.mp4`` holds photo | driving | each model. A model whose weights are
        not at hand is skipped with what to do; the others are still compared."""
        from ..pipeline import Animation, OutputOptions, model_config

        if not self._need_prepared():
            return {}
        assert self.job is not None
        results: dict[str, Path] = {}
        for item in models:
            reference, checkpoint = (item, None) if isinstance(item, str) else item
            name = Path(reference).stem if str(reference).endswith((".yaml", ".yml")) else str(reference)
            name = next(f"{name}-{n}" if n else name for n in range(len(models) + 1)
                        if not any(key.startswith(f"{name}-{n} (" if n else f"{name} (") for key in results))
            with self.step(f"Animating with {name}"):
                if str(reference) == str(self.job.model) and checkpoint is None:
                    checkpoint = str(self.job.checkpoint) if self.job.checkpoint else None
                config = model_config(reference)
                job = replace(self.job, model=reference, checkpoint=Path(checkpoint) if checkpoint else None,
                              output=OutputOptions(video=self.output_dir / f"model-{name}.mp4"))
                loaded = self._model[1] if self._model is not None and self._model[0] == (
                    str(job.model), str(job.checkpoint), job.runtime.device) else None
                with Animation(job, model=loaded, detector=self._detectors.get(self._detector_key()),
                               workdir=self.output_dir / "crops" / name, say=log.info) as session:
                    session.check()
                    if config.frame_size == self.prepared.config.frame_size:
                        session._prepared = dataclasses.replace(self.prepared, config=config)
                    try:
                        model = session.model
                    except FommLabError as exc:
                        self.waiting(f"{name}'s weights: {exc.first_line(_compare_words(reference))}")
                        print("\n".join(f"  {line}" for line in exc.details))
                        continue
                    mode = model.mode(relative=True, adapt_scale=True)
                    result = session.animate(relative=mode.relative, adapt_scale=mode.adapt_scale, avd=mode.avd)
                results[f"{name} ({mode.label})"] = result.outputs["video"]
                print(f"{name} ({model.family}, {mode.label}): {result.outputs['video']}")
        if len(results) >= 1:
            self._show_models(results)
        return results

    def _show_models(self, results: dict[str, Path]) -> None:
        from ..io.export import side_by_side
        from ..io.video import read_video
        from .compare import ComparisonPlayer

        driving = self.prepared.drivings[0]
        size = self.prepared.config.frame_size
        with self.step("Writing the comparison of models"):
            readers = [read_video(driving.path), *(read_video(p) for p in results.values())]
            try:
                path = side_by_side(self.output_dir / "models-comparison.mp4",
                                    [self.prepared.source.images[0], *readers], ["photo", "driving", *results],
                                    driving.fps, audio_from=driving.audio_from, height=size.height,
                                    total=driving.frames, progress=False)
            finally:
                for reader in readers:
                    reader.close()
            print(f"Saved {path} (photo | driving | {' | '.join(results)})")
            _display(ComparisonPlayer([driving.path, *results.values()], ["driving", *results]))

    # -- face enhancement ------------------------------------------------------------------------
    def enhance(self, frame: int | None = None) -> Path | None:
        """The recommended animation again with the face enhancer of ENHANCE (gpen or gfpgan), written as
        ``animation-<mode>-<enhancer>.mp4``, and a before/after figure of one frame (default: the middle one)."""
        from ..pipeline import OutputOptions

        assert self.job is not None
        kind = self.job.output.enhance
        if kind is None:
            print('Face enhancement is off: set ENHANCE = "gpen" or "gfpgan" in the parameters cell and run it, '
                  "the setup cell and this cell again.")
            return None
        if not self._need_prepared():
            return None
        model = self._needed_model()
        if model is None:
            return None
        with self.step(f"Enhancing the faces with {kind}"):
            mode = model.mode(relative=True, adapt_scale=True)
            session = self.session()
            before = self.results.get(mode.label)
            if before is None:
                before = session.animate(output=OutputOptions(video=animation_path(self.output_dir, mode.label)),
                                         relative=mode.relative, adapt_scale=mode.adapt_scale,
                                         avd=mode.avd).outputs["video"]
            target = animation_path(self.output_dir, f"{mode.label} {kind}")
            result = session.animate(output=replace(self.job.output, video=target), relative=mode.relative,
                                     adapt_scale=mode.adapt_scale, avd=mode.avd)
            after = result.outputs["video"]
            print(f"{mode.label} enhanced with {kind}: {after} ({result.frames} frames)")
            self._show_before_after(before, after, kind, frame)
            return after
        return None

    def _show_before_after(self, before: Path, after: Path, kind: str, frame: int | None) -> None:
        from ..io.video import read_video
        from .enhance_figure import enhance_figure

        with read_video(before) as plain_reader, read_video(after) as enhanced_reader:
            pairs = list(zip(plain_reader, enhanced_reader))
        numbers = list(range(len(pairs))) if frame is None else [min(frame, len(pairs) - 1)]
        plain, enhanced = [pairs[i][0] for i in numbers], [pairs[i][1] for i in numbers]
        _show_figure(enhance_figure(plain, enhanced, ("animated", f"enhanced with {kind}"), frame_numbers=numbers))

    # -- face swap -------------------------------------------------------------------------------
    def face_swap(self, **swap: Any) -> Any:
        """Swap the photo's face into the driving clip (:func:`fomm_lab.lab.swap_section.run_swap`): writes
        ``swap/swap.mp4`` and ``swap/swap-side-by-side.mp4`` in the output folder, plays the clip and the swap in
        sync and shows the masks of the parts swapped. ``swap``: :class:`~fomm_lab.pipeline.FaceSwapOptions`
        fields (``supervised=False, parts=(1, 2, 5)`` ...)."""
        if not self._need_photo():
            return None
        assert self.job is not None
        if not self.job.drivings:
            self.waiting("a driving clip (see the recording step above): the swap puts the photo's face into it")
            return None
        import warnings

        from ..faces.detect import FaceAlignmentUnavailable
        from ..pipeline import FaceSwapOptions, RuntimeOptions
        from .compare import ComparisonPlayer
        from .swap_section import run_swap

        with self.step("Swapping the face"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FaceAlignmentUnavailable)  # said once by the setup cell
            paths = {"checkpoint", "parser", "motion_checkpoint"}
            given: dict[str, Any] = {k: Path(v) if k in paths and v is not None else v for k, v in swap.items()}
            options = FaceSwapOptions(**given)
            run = run_swap(self.job.source, self.job.drivings[0], self.output_dir / "swap", swap=options,
                           crop=replace(self.job.crop, faces="largest"),
                           runtime=RuntimeOptions(device=self.job.runtime.device, dtype=self.job.runtime.dtype))
            print("Saved:\n" + "\n".join(f"  {path}  ({kind})" for kind, path in run.outputs.items()))
            _display(ComparisonPlayer([self.job.drivings[0], run.outputs["video"]], ["clip", "face swapped"]))
            _show_figure(run.masks_figure(0))
            return run
        return None

    # -- live ------------------------------------------------------------------------------------
    def _live_animator(self) -> Any:
        """An Animator for live use (relative motion with adapted scale), or None (and a waiting line) before a
        photo is chosen or while the model is missing."""
        if not self._need_photo():
            return None
        if self._needed_model() is None:
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
        """The live animator on the photo's face crop (browser camera); it shows "press Start camera" until then."""
        from .live_animator import LiveAnimator

        animator = self._live_animator()
        if animator is None:
            return None
        assert self.source is not None
        with self.step("Starting the live animation"):
            widget = LiveAnimator(animator, self.source.images[0], output_dir=self.output_dir,
                                  landmarker=self.landmarks())
            _display(widget)
            return widget
        return None
