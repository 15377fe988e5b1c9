"""The one table of options: every option of a job (and every option an error's advice can name), defined once.

Each :class:`Option` gives its field (the job's dotted path, which is also its Python keyword: ``crop.source`` is
``CropOptions(source=...)``), its default, its help text, and its words in each shell: the command-line flag
(``fomm-lab animate``'s flags are generated from this table) and the notebook parameter. The job's dataclasses
(:mod:`fomm_lab.pipeline.job`) take their defaults from here, so every route (CLI, notebook, Python, the
Animator) has one default per option. Errors name options by field in their :class:`~fomm_lab.errors.Remedy`;
a test checks that every field named anywhere in the package is in this table.

No imports beyond the standard library: the CLI builds its parser from this module without loading torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One option.

    field:    the dotted path of the job field (``motion.relative``); ``model``, ``checkpoint`` ... are fields of
              the job itself; other prefixes (``download.``, ``lab.``, ``train.``) are options of other commands.
    default:  the default whatever the route.
    help:     one line for ``--help`` and the docs.
    flag:     the command-line flag (None: no flag). ``switch``: for a flag without a value, the field's value when
              the flag is given (``--absolute`` sets ``motion.relative`` to False); ``negatable``: the flag also
              has a ``--no-`` form (``--crop-source`` / ``--no-crop-source``).
    parse:    the name of the parser type of a flag with a value (see :mod:`fomm_lab.cli.parser`), ``nargs``,
              ``metavar``, ``choices``: as argparse takes them.
    notebook: the notebook's parameter (``CROP_SOURCE``), None when the notebook has none.
    commands: the subcommands whose flags include it (``animate`` by default).
    """

    field: str
    default: Any
    help: str
    flag: str | None = None
    switch: Any = None
    negatable: bool = False
    parse: str | None = None
    nargs: int | None = None
    metavar: str | tuple[str, ...] | None = None
    choices: tuple[str, ...] | None = None
    notebook: str | None = None
    commands: tuple[str, ...] = ("animate",)
    extra_flags: tuple[tuple[str, Any], ...] = dataclasses.field(default=())
    exclusive: str | None = None
    """Options with the same ``exclusive`` name cannot be given together on the command line."""
    """Further switches on the same field: (flag, value), e.g. ``--multi-face`` sets ``crop.faces`` to ``all``."""

    @property
    def owner(self) -> str:
        """The part of the job the field belongs to (``crop``), or ``""`` for the job's own fields."""
        return self.field.rpartition(".")[0]

    @property
    def name(self) -> str:
        """The field's own name (``source`` for ``crop.source``): its Python keyword."""
        return self.field.rpartition(".")[2]


PADDING = (0.4, 0.5, 0.4, 0.35)
"""Default margin around the photo's face (left, top, right, bottom, as fractions of the face box)."""

OPTIONS: tuple[Option, ...] = (
    # -- the model
    Option("model", "vox", "model: a registry name (see `fomm-lab models`; its checkpoint is downloaded once), a "
           "shipped config name (vox-256, ...) or a yaml file", flag="--config", parse="str", metavar="MODEL",
           notebook="CONFIG",
           commands=("animate", "export")),
    Option("checkpoint", None, "weights (.pth.tar or .pdparams) instead of the registry's (needed with a yaml "
           "--config)", flag="--checkpoint", parse="path", metavar="FILE", notebook="CHECKPOINT",
           commands=("animate", "export")),
    Option("random_weights", False, "animate with random weights when no checkpoint is given (for tests and "
           "timing; the result is noise)", flag="--random-weights", switch=True,
           commands=("animate", "export")),
    Option("cache_dir", None, "checkpoint cache (default: $FOMM_LAB_HOME or ~/.cache/fomm-lab)", flag="--cache-dir",
           parse="path", metavar="DIR", commands=("animate", "export", "download", "models", "train", "reconstruct",
                                   "animate_pairs", "swap")),
    Option("strict", False, "a driving video that ends before its header says is an error, not a warning",
           flag="--strict", switch=True),
    # -- motion (paper Sec. 3.4)
    Option("motion.relative", True, "absolute keypoint positions instead of motion relative to the reference frame",
           flag="--absolute", switch=False),
    Option("motion.adapt_scale", True, "do not scale the motion by the ratio of the faces' sizes",
           flag="--no-adapt-scale", switch=False),
    Option("motion.avd", False, "TPSMM's avd mode: its AVD network puts the driving pose on the photo's identity "
           "(Thin-Plate Spline models only)", flag="--avd", switch=True),
    Option("motion.find_best_frame", False, "start the relative motion from the driving frame whose face pose is "
           "closest to the photo's (needs face-alignment's weights)", flag="--find-best-frame", switch=True,
           exclusive="reference",
           notebook="FIND_BEST_FRAME"),
    Option("motion.best_frame", None, "start the relative motion from driving frame N (0-based)",
           flag="--best-frame", parse="non_negative_int", metavar="N", exclusive="reference", notebook="BEST_FRAME"),
    Option("motion.smoothing", 0.5, "steady the driving keypoints over time: 0 (off) to 1 (strongest)",
           flag="--smoothing", parse="fraction", metavar="S", notebook="SMOOTHING"),
    # -- crops
    Option("crop.source", None, "crop the photo to its face (default: yes for face models)", flag="--crop-source",
           negatable=True, notebook="CROP_SOURCE"),
    Option("crop.driving", None, "cut the driving video to its longest face track (default: yes for face models)",
           flag="--crop-driving", negatable=True, notebook="CROP_DRIVING"),
    Option("crop.source_box", None, "the face box of the photo in pixels, instead of detecting it",
           flag="--source-box", parse="number", nargs=4, metavar=("X0", "Y0", "X1", "Y1"), notebook="SOURCE_BOX",
           commands=("animate", "swap")),
    Option("crop.driving_box", None, "the face box of the driving video in pixels, instead of detecting it",
           flag="--driving-box", parse="number", nargs=4, metavar=("X0", "Y0", "X1", "Y1"), notebook="DRIVING_BOX"),
    Option("crop.padding", PADDING, "extra margin around the photo's face, as fractions of its size",
           flag="--crop-padding", parse="number", nargs=4, metavar=("L", "T", "R", "B"), commands=("animate", "swap")),
    Option("crop.increase", 0.1, "margin added around a driving face track, as a fraction of its size",
           flag="--increase", parse="number", metavar="F", commands=("animate", "swap")),
    Option("crop.mode", "auto", "driving crop: one box per track (static), a box following the face (follow), or "
           "follow only when the face moves far (auto)", flag="--crop-mode", parse="str",
           choices=("auto", "static", "follow"), commands=("animate", "swap")),
    Option("crop.faces", "largest", "the photo's faces to animate, numbered from 0 left to right (chosen faces are "
           "pasted back into the photo)", flag="--face-index", parse="face_indices", metavar="I[,J...]",
           extra_flags=(("--multi-face", "all"),)),
    Option("crop.detector", "auto", "face detector: face-alignment when its weights are there (auto), or OpenCV's "
           "Haar cascade", flag="--detector", parse="str", choices=("auto", "face_alignment", "haar"),
           notebook="FACE_DETECTOR", commands=("animate", "crop", "prepare_data", "animate_pairs", "swap")),
    Option("crop.download_face_weights", False, "let face-alignment download its weights (landmarks, better boxes, "
           "--find-best-frame)", flag="--download-face-weights", switch=True, notebook="DOWNLOAD_FACE_WEIGHTS",
           commands=("animate", "crop", "prepare_data", "animate_pairs", "reconstruct", "swap")),
    Option("crop.min_track_frames", 10, "ignore face tracks shorter than N frames", flag="--min-track-frames",
           parse="positive_int", metavar="N", commands=("animate", "swap")),
    Option("crop.feather", 0.2, "soft edge of the pasted face, as a fraction of its box", flag="--feather",
           parse="fraction", metavar="F", commands=("animate", "swap")),
    # -- outputs
    Option("output.video", None, "result video (.mp4, .mov, .mkv), or a new folder (a name without extension) for "
           "lossless PNG frames", flag="--output", parse="path", metavar="OUT.mp4", commands=("animate", "swap")),
    Option("output.side_by_side", None, "also write source | driving | result next to each other",
           flag="--side-by-side", parse="path", metavar="OUT.mp4", commands=("animate", "swap")),
    Option("output.gif", None, "also write the result as a GIF", flag="--gif", parse="path", metavar="OUT.gif",
           commands=("animate", "swap")),
    Option("output.audio", True, "write the result without sound", flag="--no-audio", switch=False,
           commands=("animate", "swap")),
    Option("output.paste_back", False, "composite the animated face into the full-size photo", flag="--paste-back",
           switch=True),
    # -- enhancement (after the animation, before paste-back)
    Option("output.enhance", None, "sharpen each animated face to 512x512 (or its size in the photo when pasting "
           "back) with a face enhancer: gpen (PaddleGAN's) or gfpgan (v1.4)", flag="--enhance", parse="str",
           choices=("gpen", "gfpgan"), notebook="ENHANCE", commands=("animate", "swap")),
    Option("output.enhance_strength", 1.0, "blend of the enhanced face with the animated one: 1 fully enhanced, 0 "
           "not at all", flag="--enhance-strength", parse="fraction", metavar="S", commands=("animate", "swap")),
    Option("output.enhancer_weights", None, "the enhancer's weights file instead of the registry's",
           flag="--enhancer-weights", parse="path", metavar="FILE", commands=("animate", "swap")),
    # -- where and how the networks run
    Option("runtime.device", None, "torch device: cuda, cuda:1, mps or cpu (default: the best available)",
           flag="--device", parse="str", metavar="DEVICE", notebook="DEVICE",
           commands=("animate", "train", "reconstruct", "animate_pairs", "swap")),
    Option("runtime.dtype", "auto", "compute precision; auto: bfloat16 where the CPU or GPU has it natively (on a "
           "CPU tuned by `fomm-lab tune`, where it measured faster), float16 on other GPUs, else float32",
           flag="--dtype", parse="str",
           choices=("auto", "float32", "bfloat16", "float16"), notebook="DTYPE",
           commands=("animate", "animate_pairs", "swap")),
    Option("runtime.batch_size", 1, "driving frames per forward pass", flag="--batch-size", parse="positive_int",
           metavar="N", commands=("animate", "animate_pairs", "swap")),
    Option("runtime.compile", False, "torch.compile the networks: faster per frame after a compilation of a minute "
           "or more where it pays (docs/performance.md says where it does)", flag="--compile",
           switch=True),
    Option("runtime.backend", "torch", "where the networks run: PyTorch, or OpenVINO on their ONNX graphs on the CPU "
           "(pip install 'fomm-lab[openvino]')", flag="--backend", parse="str", choices=("torch", "openvino")),
    # -- options of other commands that errors can name
    Option("download.url", None, "fetch from this address instead of the registry's mirrors", flag="--url",
           parse="str", commands=("download",)),
    Option("lab.port", None, "port (default: $FOMM_LAB_PORT or 8888); an error if it is taken", flag="--port",
           parse="port", metavar="N", commands=("lab",)),
    Option("lab.allow_root", False, "let JupyterLab run as root (it refuses to by default)", flag="--allow-root",
           switch=True, commands=("lab",)),
    Option("train.resume", False, "continue the run in RUN from its last checkpoint", flag="--resume", switch=True,
           commands=("train",)),
    Option("train.out", None, "the run folder", flag="--out", parse="path", metavar="RUN", commands=("train",)),
    # -- face swap (`fomm-lab swap`, fomm_lab.pipeline.swap)
    Option("swap.config", "vox-10segments", "segment model: a registry name (vox-5segments, vox-10segments, "
           "vox-15segments; its checkpoint is fetched once), a shipped config name (vox-256-sem-10segments) or a "
           "yaml file", flag="--config", parse="str", metavar="MODEL", commands=("swap",)),
    Option("swap.checkpoint", None, "the segment model's weights instead of the registry's (needed with a yaml "
           "--config)", flag="--checkpoint", parse="path", metavar="FILE", commands=("swap",)),
    Option("swap.parser", None, "the face parser's weights (79999_iter.pth) instead of the registry's; supervised "
           "swaps take their masks from it", flag="--parser", parse="path", metavar="FILE", commands=("swap",)),
    Option("swap.motion_checkpoint", None, "a 10-keypoint First Order Motion Model checkpoint (vox-cpk.pth.tar): "
           "align the source to the target with its motion (supervised swaps only)", flag="--motion-checkpoint",
           parse="path", metavar="FILE", commands=("swap",)),
    Option("swap.parts", None, "the parts swapped: face parser classes 0-18 when supervised (default: the face, "
           "1-15), the segment model's parts 1-K otherwise (default 1,2,5)", flag="--parts", parse="part_indices",
           metavar="I[,J...]", commands=("swap",)),
    Option("swap.supervised", True, "masks from the face parser (supervised), or from the segment model's own parts "
           "(--no-supervised)", flag="--supervised", negatable=True, commands=("swap",)),
    Option("swap.hard_mask", False, "a hard 0/1 mask (the soft mask above 0.5) instead of a soft one",
           flag="--hard-mask", switch=True, commands=("swap",)),
    Option("swap.source_segmentation", False, "take the mask from the source photo (moved with the target's motion) "
           "instead of from each target frame", flag="--source-segmentation", switch=True, commands=("swap",)),
    Option("swap.face_index", None, "the target's face track to swap, numbered from 0 left to right (default: the "
           "longest)", flag="--face-index", parse="non_negative_int", metavar="N", commands=("swap",)),
    Option("swap.target_box", None, "the face box of the target video in pixels, instead of detecting it",
           flag="--target-box", parse="number", nargs=4, metavar=("X0", "Y0", "X1", "Y1"), commands=("swap",)),
)

_BY_FIELD = {option.field: option for option in OPTIONS}


def option(field_name: str) -> Option:
    """The option of a field; KeyError naming the known fields otherwise (a typo in the code)."""
    try:
        return _BY_FIELD[field_name]
    except KeyError:
        raise KeyError(f"{field_name!r} is not an option of fomm_lab.options.OPTIONS") from None


def default(field_name: str) -> Any:
    """The default of a field (the one default every route uses)."""
    return option(field_name).default


def options_of(command: str) -> tuple[Option, ...]:
    """The options a subcommand has flags for, in table order."""
    return tuple(o for o in OPTIONS if command in o.commands and o.flag is not None)


OWNERS = {"crop": "CropOptions", "motion": "MotionOptions", "output": "OutputOptions", "runtime": "RuntimeOptions",
          "swap": "FaceSwapOptions"}
"""The Python class of each part of an :class:`~fomm_lab.pipeline.job.AnimateJob` (and of a
:class:`~fomm_lab.pipeline.swap.SwapJob`'s swap options)."""


def python_words(field_name: str, value: Any) -> str:
    """How Python code sets a field: ``CropOptions(source=False)``, ``AnimateJob(strict=True)``."""
    opt = option(field_name)
    if opt.field == "download.url":
        return f"fomm_lab.pipeline.weights.download({value!r}, url=URL)"
    if opt.field == "model":
        return f"load_model({value!r}), or AnimateJob(model={value!r})"
    call = f"{opt.name}={value!r}"
    if opt.owner in OWNERS:
        return f"{OWNERS[opt.owner]}({call})"
    return f"AnimateJob({call})" if opt.owner == "" else call


def cli_words(field_name: str, value: Any) -> str | None:
    """How the command line sets a field to ``value``: ``--no-crop-source``, ``--best-frame 3``; None when it has
    no flag for it."""
    opt = option(field_name)
    if opt.flag is None:
        return None
    if opt.field == "download.url":
        return f"`fomm-lab download {value} --url URL`"
    for flag, switched in opt.extra_flags:
        if value == switched:
            return flag
    if opt.negatable:
        return opt.flag if value else "--no-" + opt.flag[2:]
    if opt.parse is None:  # a switch
        return opt.flag if value == opt.switch else f"without {opt.flag}"
    if opt.nargs and isinstance(value, str):
        metavar = opt.metavar if isinstance(opt.metavar, tuple) else (opt.metavar or "VALUE",)
        return f"{opt.flag} {' '.join(metavar)}"
    if isinstance(value, (tuple, list)):
        return f"{opt.flag} {','.join(str(v) for v in value)}"
    return f"{opt.flag} {value}"


def notebook_words(field_name: str, value: Any) -> str | None:
    """How the notebook sets a field: ``set CROP_SOURCE = False in the parameters cell``; None when it has no
    parameter for it."""
    opt = option(field_name)
    if opt.notebook is None:
        return None
    return f"set {opt.notebook} = {value!r} in the parameters cell"


Wording = Callable[[str, Any], "str | None"]
"""A shell's words for setting a field to a value (:func:`cli_words`, :func:`notebook_words`, :func:`python_words`)."""
