"""Every check of a job that needs no model, in well under a second, before any heavy work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.config import ModelConfig, check_frame_size
from ..engine.reference import check_reference
from ..errors import CheckpointError, ConfigError, FommLabError, MediaError, Placeholder, Remedy
from ..faces.track import CROP_MODES
from ..io.probe import VideoInfo
from .job import AnimateJob, CropOptions, OutputOptions, RuntimeOptions


@dataclass(frozen=True)
class CheckedJob:
    """What :func:`check_job` learnt: the model's config and each driving clip's description."""

    config: ModelConfig
    drivings: tuple[VideoInfo, ...]


def model_config(model: str | Path) -> ModelConfig:
    """The config of a registry name, shipped config name or yaml path (no torch, no download), of either family."""
    from ..engine.families import load_any_config
    from ..hub.registry import resolve_model

    config, _ = resolve_model(model)
    return load_any_config(config)


def crops_source(crop: CropOptions, config: ModelConfig) -> bool:
    """Whether the photo is face-cropped: as asked, else for face models."""
    return config.is_face_model if crop.source is None else crop.source


def crops_driving(crop: CropOptions, config: ModelConfig) -> bool:
    """Whether the driving clip is cut to its face track: as asked, else for face models."""
    return config.is_face_model if crop.driving is None else crop.driving


def needs_detector(crop: CropOptions, config: ModelConfig) -> bool:
    """Whether a face detector is needed: a face is cropped and its box is not given."""
    return ((crops_source(crop, config) and crop.source_box is None)
            or (crops_driving(crop, config) and crop.driving_box is None))


def _check_outputs(job: AnimateJob) -> None:
    from ..io.atomic import check_output_folder
    from ..io.video import output_format

    out = job.output
    inputs = {p.resolve() for p in (job.source, *job.drivings, job.checkpoint) if p is not None}
    named = [(p, kind) for p, kind in ((out.video, "video"), (out.side_by_side, "side-by-side"), (out.gif, "gif"))
             if p is not None]
    if not named:
        raise ValueError("AnimateJob.output names no output: give output.video, output.side_by_side or output.gif")
    seen: set[Path] = set()
    for path, kind in named:
        path = Path(path)
        resolved = path.resolve()
        if resolved in inputs:
            raise MediaError(f"output {path} is also an input file; choose another output name")
        if resolved in seen:
            raise MediaError(f"{path} is given as two different outputs; give each output its own name")
        seen.add(resolved)
        if kind == "gif" and path.suffix.lower() != ".gif":
            raise MediaError(f"cannot write GIF {path}: give a file name ending in .gif")
        if kind == "video" and path.suffix == "":
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise MediaError(f"cannot save PNG frames into {path}: it exists and is not an empty folder; pick "
                                 "a new folder name")
        elif kind != "gif":
            output_format(path)
        check_output_folder(path)


def _check_backend(runtime: RuntimeOptions) -> None:
    from ..engine.fast.backends import BACKENDS, missing_openvino, openvino_installed

    if runtime.backend not in BACKENDS:
        raise FommLabError(f"backend {runtime.backend!r} is not one of {', '.join(BACKENDS)}")
    if runtime.backend == "openvino":
        if runtime.compile:
            raise FommLabError("compiling applies to the torch backend; OpenVINO compiles its graphs itself",
                               remedies=[Remedy("leave compiling off ({})", "runtime.compile", False)])
        if runtime.device not in (None, "cpu"):
            raise FommLabError(f"the OpenVINO backend runs on the CPU, not on device {runtime.device!r}",
                               remedies=[Remedy("use the CPU ({})", "runtime.device", "cpu"),
                                         Remedy("use the torch backend ({})", "runtime.backend", "torch")])
        if not openvino_installed():
            raise missing_openvino()


def check_job(job: AnimateJob, *, model_given: bool = False) -> CheckedJob:
    """Every check that needs no model, before any heavy work: the config, the photo (readable), every
    driving clip (a video with frames), the outputs (extensions, folders, writable, distinct), the
    options (crop mode, faces, best frame within the clip). Raises the error a later stage would.
    ``model_given``: the caller brings a loaded model (the job's weights are then not looked for)."""
    from ..io.image import read_image
    from ..io.video import read_video

    config = model_config(job.model)
    check_frame_size(config)
    if not model_given:
        _check_weights(job)
    read_image(job.source)
    infos = []
    for path in job.drivings:
        with read_video(path) as reader:
            infos.append(reader.info)
    if job.crop.mode not in CROP_MODES:
        raise FommLabError(f"crop mode {job.crop.mode!r} is not one of {', '.join(CROP_MODES)}")
    if job.runtime.batch_size < 1:
        raise FommLabError(f"batch size must be at least 1, got {job.runtime.batch_size}")
    _check_backend(job.runtime)
    motion = job.motion
    if motion.best_frame is not None:
        shortest = min((i.frame_count for i in infos if i.frame_count), default=None)
        check_reference(motion.best_frame, shortest, approximate=True)
    if motion.best_frame is not None and motion.find_best_frame:
        raise FommLabError("give either a best frame or find_best_frame, not both",
                           remedies=[Remedy("leave the search off ({})", "motion.find_best_frame", False)])
    if motion.avd and getattr(config, "family", "fomm") != "tpsmm":
        raise FommLabError(f"the avd mode needs a Thin-Plate Spline model's AVD network; {config.name} is not one",
                           remedies=[Remedy("use relative motion ({})", "motion.avd", False),
                                     Remedy("use a Thin-Plate Spline model ({})", "model", "tpsmm-vox")])
    _check_outputs(job)
    _check_enhance(job.output)
    return CheckedJob(config, tuple(infos))


def _check_weights(job: AnimateJob) -> None:
    """A checkpoint that exists, or a registry name (whose checkpoint is found or downloaded), or random weights
    asked for explicitly: a config without weights would animate noise."""
    from ..hub.registry import resolve_model

    if job.checkpoint is not None:
        if not Path(job.checkpoint).is_file():
            raise CheckpointError(f"checkpoint {job.checkpoint} does not exist; check the path")
        return
    _, entry = resolve_model(job.model)
    if entry is None and not job.random_weights:
        raise CheckpointError(f"config {job.model} comes without weights: give its checkpoint, or a registry name "
                              "(see `fomm-lab models`) whose checkpoint is downloaded once",
                              remedies=[Remedy("give the weights file ({})", "checkpoint", Placeholder("FILE")),
                                        Remedy("animate noise on purpose ({})", "random_weights", True)])


def _check_enhance(output: OutputOptions) -> None:
    """The face enhancer: a known kind, a strength in [0, 1], and a given weights file that is that enhancer's
    (read and identified, not loaded into a network: a few tenths of a second for the released files). The
    registry's weights are verified when they are downloaded."""
    if output.enhance is None:
        if output.enhancer_weights is not None:
            raise FommLabError(f"enhancer weights {output.enhancer_weights} are given but no face enhancer is chosen",
                               remedies=[Remedy("choose GPEN ({})", "output.enhance", "gpen"),
                                         Remedy("GFPGAN ({})", "output.enhance", "gfpgan")])
        return
    from ..enhance.kinds import EXPECTED, KINDS

    kind = str(output.enhance).lower()
    if kind not in KINDS:
        raise ConfigError(f"unknown face enhancer {output.enhance!r}: there are {', '.join(KINDS)}",
                          remedies=[Remedy("use GPEN ({})", "output.enhance", "gpen"),
                                    Remedy("GFPGAN ({})", "output.enhance", "gfpgan")])
    if not 0.0 <= output.enhance_strength <= 1.0:
        raise FommLabError(f"enhancement strength {output.enhance_strength} is not in [0, 1]",
                           remedies=[Remedy("enhance fully ({})", "output.enhance_strength", 1.0)])
    if output.enhancer_weights is None:
        return
    from ..enhance.weights import identify, read_weights

    weights = read_weights(output.enhancer_weights)  # CheckpointError: missing, empty, a web page, corrupt
    what, fits = identify(weights)
    if fits == kind:
        return
    remedies = [Remedy(f"use it with the {fits} enhancer ({{}})", "output.enhance", fits)] if fits else []
    remedies.append(Remedy(f"give {EXPECTED[kind]} ({{}})", "output.enhancer_weights", Placeholder("FILE")))
    raise CheckpointError(f"enhancer weights {weights.path} hold {what}, not what the {kind} enhancer needs"
                          + (f": they are for the {fits} enhancer" if fits else ""), remedies=remedies)
