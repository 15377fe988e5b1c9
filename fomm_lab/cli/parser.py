"""The ``fomm-lab`` argument parser. Each subcommand names its function in :mod:`fomm_lab.cli.commands`
(``command`` default); nothing here imports the package's heavy parts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..options import Option, option, options_of

PROG = "fomm-lab"
DTYPES = option("runtime.dtype").choices


def _int_at_least(minimum: int):
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be {minimum} or more")
        return value

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def fraction(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    value = number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (1-65535)")
    return value


def face_indices(text: str) -> tuple[int, ...]:
    """argparse type: ``0,2`` -> (0, 2)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of face numbers") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text}: face numbers start at 0")
    return values


def part_indices(text: str) -> tuple[int, ...]:
    """argparse type: ``1,2,5`` -> (1, 2, 5), the parts of a face swap."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of part numbers") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text}: part numbers start at 0")
    return values


PARSERS = {"str": str, "path": Path, "number": number, "fraction": fraction, "positive_int": positive_int,
           "non_negative_int": non_negative_int, "face_indices": face_indices, "part_indices": part_indices,
           "port": port}
"""The value types the table of options (:mod:`fomm_lab.options`) names, by name."""


def dest(opt: Option) -> str:
    """The argparse destination of an option: its field with ``__`` for the dots (``crop__source``)."""
    return opt.field.replace(".", "__")


def add_options(p: argparse.ArgumentParser, command: str) -> None:
    """The flags of ``command``, generated from the table of options. Flags not given are absent from the parsed
    arguments, so the job's dataclasses give their (the table's) defaults."""
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for opt in options_of(command):
        assert opt.flag is not None
        target: argparse._ActionsContainer = p
        if opt.exclusive is not None:
            if opt.exclusive not in groups:
                groups[opt.exclusive] = p.add_mutually_exclusive_group()
            target = groups[opt.exclusive]
        default_text = "" if opt.default in (None, False, True) or opt.parse is None else f" (default: {opt.default})"
        common: dict[str, Any] = {"dest": dest(opt), "default": argparse.SUPPRESS, "help": opt.help + default_text}
        if opt.negatable:
            target.add_argument(opt.flag, action=argparse.BooleanOptionalAction, **common)
        elif opt.parse is None:
            target.add_argument(opt.flag, action="store_const", const=opt.switch, **common)
        else:
            target.add_argument(opt.flag, type=PARSERS[opt.parse], nargs=opt.nargs, metavar=opt.metavar,
                                choices=opt.choices, **common)
        for flag, value in opt.extra_flags:
            p.add_argument(flag, action="store_const", const=value, dest=dest(opt), default=argparse.SUPPRESS,
                           help=f"{opt.field} = {value!r}: every face (see {opt.flag})")


def _cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path, help="checkpoint cache (default: $FOMM_LAB_HOME or ~/.cache/fomm-lab)")


def _detector(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", choices=("auto", "face_alignment", "haar"), default="auto",
                   help="face detector: face-alignment when its weights are there (auto), or OpenCV's Haar cascade")
    p.add_argument("--download-face-weights", action="store_true",
                   help="let face-alignment download its weights (landmarks, better boxes, --find-best-frame)")


def _box(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    p.add_argument(flag, type=number, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                   help=f"the face box of {what} in pixels, instead of detecting it")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (each sets ``command``: its function's name)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log what is being done (device chosen, files read)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")

    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common],
        description="Animate a still image with the First Order Motion Model (Siarohin et al., NeurIPS 2019).")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    p = sub.add_parser("animate", parents=[common], help="animate a photo from a driving video",
                       description="Animate SOURCE (a photo) with the motion of DRIVING (a video) and write the "
                                   "result as an H.264 mp4 with the driving video's sound. For face models the "
                                   "photo's face and the clip's face track are cropped first.")
    p.add_argument("--source", required=True, type=Path, metavar="IMG", help="the photo to animate")
    p.add_argument("--driving", required=True, type=Path, nargs="+", metavar="VIDEO",
                   help="the video whose motion is transferred (a file or a folder of frames); with several "
                        "faces, one video per face in the same order")
    add_options(p, "animate")
    p.set_defaults(command="animate")

    p = sub.add_parser("swap", parents=[common], help="swap the face of a photo into a video",
                       description="Swap the face of SOURCE (a photo) into the face of TARGET (a video) with the "
                                   "motion-supervised co-part segmentation model (Siarohin et al., ICPR 2020): both "
                                   "faces are found and cropped, the chosen parts swapped frame by frame, and each "
                                   "swapped face pasted back into the full-resolution target, with its sound.")
    p.add_argument("--source", required=True, type=Path, metavar="IMG", help="the photo whose face is swapped in")
    p.add_argument("--target", required=True, type=Path, metavar="VIDEO",
                   help="the video whose face is replaced (a file or a folder of frames)")
    add_options(p, "swap")
    p.set_defaults(command="swap")

    p = sub.add_parser("export", parents=[common], help="export a model's networks as ONNX graphs",
                       description="Write the ONNX graphs the animation runs (keypoint detector, source "
                                   "encoder, dense motion, generator decode; a TPSMM's AVD network when it has one) "
                                   "and a manifest.json into a new folder, for ONNX Runtime, OpenVINO or other "
                                   "runtimes. FOMM and TPSMM models.")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--config", default="vox",
                   help="model: a registry name (its checkpoint is downloaded once), a shipped config name or a "
                        "yaml file (default: vox)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE",
                   help="weights (.pth.tar or .pdparams) instead of the registry's (needed with a yaml --config)")
    _cache_dir(p)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the new folder to write")
    p.add_argument("--opset", type=_int_at_least(17), default=17, help="ONNX opset (default 17, the least that works)")
    p.set_defaults(command="export")

    p = sub.add_parser("crop", parents=[common], help="cut a video's face tracks into square clips",
                       description="Find the faces in VIDEO, print the plan (exactly what is run), and write the "
                                   "longest face track (or every track) as a square clip with its sound.")
    p.add_argument("video", type=Path, metavar="VIDEO")
    p.add_argument("--output", required=True, type=Path, metavar="OUT.mp4",
                   help="the clip; with --all-tracks, OUT-1.mp4, OUT-2.mp4, ... (track 1 is the longest)")
    p.add_argument("--all-tracks", action="store_true", help="write one clip per face track")
    p.add_argument("--size", type=positive_int, default=None,
                   help="side of the clips in pixels (default: the --config model's frame size, 256 for vox)")
    p.add_argument("--config", default="vox", help="model whose frame size the clips get (default: vox)")
    _box(p, "--box", "the video (one track over the whole clip)")
    p.add_argument("--mode", choices=("auto", "static", "follow"), default="auto",
                   help="one box per track (static), a box following the face (follow), or follow only when "
                        "the face moves far (auto)")
    p.add_argument("--increase", type=number, default=0.1,
                   help="margin added around the face box, as a fraction of its size (default 0.1)")
    p.add_argument("--min-frames", type=positive_int, default=None, metavar="N",
                   help="ignore face tracks shorter than N frames (default 10)")
    p.add_argument("--no-audio", action="store_true", help="write the clips without sound")
    _detector(p)
    p.set_defaults(command="crop")

    p = sub.add_parser("download", parents=[common], help="download and verify a pretrained checkpoint",
                       description="Download a checkpoint of the registry (see `fomm-lab models`) into the cache.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--url", help="fetch from this address instead of the registry's mirrors")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the file")
    _cache_dir(p)
    p.set_defaults(command="download")

    p = sub.add_parser("models", parents=[common], help="list the pretrained checkpoints and the cache",
                       description="List the registry's checkpoints: name, resolution, size, whether cached, path.")
    _cache_dir(p)
    p.set_defaults(command="models")

    p = sub.add_parser("lab", parents=[common], help="start JupyterLab on the demo notebook",
                       description="Start JupyterLab on notebooks/demo.ipynb at 127.0.0.1 with a random token (or "
                                   "$JUPYTER_TOKEN) and print the URL to open.")
    p.add_argument("--port", type=port, default=None,
                   help="port (default: $FOMM_LAB_PORT or 8888); an error if it is taken")
    p.add_argument("--ip", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; the Docker image uses 0.0.0.0 inside its "
                        "container, published on the host's 127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--allow-root", action="store_true", help="let JupyterLab run as root (it refuses to by default)")
    p.add_argument("--notebook", type=Path, help="notebook to open (default: notebooks/demo.ipynb)")
    p.set_defaults(command="lab")

    p = sub.add_parser("tune", parents=[common], help="measure the fastest exact convolution forms on this CPU",
                       description="Time each convolution layer of the model in its exact forms (oneDNN's direct "
                                   "convolution, Winograd's (F(2x2, 3x3) in bfloat16), the other memory layout, packed "
                                   "weights, and by taps for layers of a few output channels) on this machine, "
                                   "keep the fastest, print the table and cache the choices for this CPU, "
                                   "thread count, torch version and precision: animate uses them from then on. "
                                   "Random weights (the timing does not depend on them): nothing is downloaded. "
                                   "Takes seconds.")
    p.add_argument("--config", default="vox-256",
                   help="model: a registry name, a shipped config name or a yaml file (default: vox-256)")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="precision to tune; auto: float32, and bfloat16 where the CPU has it natively (their "
                        "measured rates then decide animate's --dtype auto) (default: auto)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads to tune for (default: torch's default, the one animate uses)")
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                   help="driving frames per forward pass to tune for (default 1, as animate)")
    p.set_defaults(command="tune")
    _training_parsers(sub, common)
    return parser


def _training_parsers(sub, common: argparse.ArgumentParser) -> None:
    """``prepare-data``, ``train``, ``reconstruct`` and ``animate-pairs`` (:mod:`fomm_lab.train`)."""
    p = sub.add_parser("prepare-data", parents=[common], help="cut the face tracks of videos into a training dataset",
                       description="Crop the face track of each VIDEO to square frames and write them in the "
                                   "official dataset layout: DIR/train/NAME and DIR/test/NAME (a share of the videos, "
                                   "chosen by a hash of their names). Existing entries are kept.")
    p.add_argument("videos", nargs="*", type=Path, metavar="VIDEO", help="video files or folders of frames")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the dataset folder")
    p.add_argument("--synthetic", action="store_true",
                   help="no videos: write the synthetic motion dataset (photos of scikit-image moving with known "
                        "transforms; default size 64) and DIR/vgg19-random.pth (docs/training.md)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the --synthetic clips (default 0)")
    p.add_argument("--recolour", action="store_true",
                   help="--synthetic: colour each training clip's photo at random (held-out clips unchanged; "
                        "docs/training.md)")
    p.add_argument("--aspect", type=number, default=None, metavar="A",
                   help="--synthetic: every object's mask an ellipse of this aspect, short over long axis, in "
                        "[0.2, 1] (default: drawn from 0.7 to 1 per clip; docs/training.md)")
    p.add_argument("--rotation", type=number, default=None, metavar="DEGREES",
                   help="--synthetic: the largest rotation of an object from its upright pose, 0 to 90 (default 35; "
                        "docs/training.md)")
    p.add_argument("--size", type=_int_at_least(16), default=None,
                   help="side of the frames in pixels (default: the --config's frame size)")
    p.add_argument("--config", default="vox-256", help="config whose frame size is used (default: vox-256)")
    p.add_argument("--format", choices=("png", "mp4"), default="png",
                   help="a folder of PNG frames per video (lossless, fastest to train from; default) or an mp4")
    p.add_argument("--test-fraction", type=number, default=0.2, metavar="F",
                   help="share of the videos put in test/ (default 0.2; at least one when there are two or more)")
    p.add_argument("--no-crop", action="store_true",
                   help="do not look for faces: use the centre square of the whole frame (other objects)")
    p.add_argument("--all-tracks", action="store_true", help="every face track of a video (NAME#1, NAME#2, ...)")
    p.add_argument("--mode", choices=("auto", "static", "follow"), default="auto",
                   help="one box per track (static), a box following the face (follow), or follow only when the "
                        "face moves far (auto)")
    p.add_argument("--increase", type=number, default=0.1,
                   help="margin added around the face box, as a fraction of its size (default 0.1)")
    p.add_argument("--min-frames", type=positive_int, default=10, metavar="N",
                   help="ignore face tracks shorter than N frames (default 10)")
    _detector(p)
    p.set_defaults(command="prepare_data")

    p = sub.add_parser("train", parents=[common], help="train a model on your own videos",
                       description="Train (or fine-tune, or resume) a First Order Motion Model on a dataset in the "
                                   "official layout (see prepare-data), as the paper's train_params say. Checkpoints, "
                                   "a JSONL log of the losses and pictures go to RUN. Several processes or machines: "
                                   "torchrun --nproc_per_node N -m fomm_lab train ...")
    p.add_argument("--config", required=True,
                   help="a shipped config name (vox-256, ...) or a yaml file: FOMM's, or a Thin-Plate Spline Motion "
                        "Model's (the authors' layout) to train a TPSMM")
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="dataset folder holding train/ and test/")
    p.add_argument("--out", required=True, type=Path, metavar="RUN", help="the run folder")
    p.add_argument("--checkpoint", metavar="FILE|NAME",
                   help="start from these weights (fine-tuning; a registry name such as vox is downloaded), or with "
                        "--resume the checkpoint to continue")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN from its last checkpoint (optimiser states, epoch and step)")
    p.add_argument("--device", help="torch device: cuda or cpu (default: one GPU per process when there are GPUs)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--max-steps", type=positive_int, metavar="N", help="stop once the run has made N steps")
    p.add_argument("--epochs", type=positive_int, metavar="N", help="number of epochs instead of the config's")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="global batch size instead of the config's (shared by the processes)")
    p.add_argument("--num-repeats", type=positive_int, metavar="N", help="passes over the videos per epoch")
    p.add_argument("--workers", type=non_negative_int, default=2, metavar="N",
                   help="data-loading processes per training process (default 2; 0: load in the main process)")
    p.add_argument("--visualize-every", type=non_negative_int, default=500, metavar="N",
                   help="a picture every N steps (and after every epoch; 0: epochs only; default 500)")
    p.add_argument("--checkpoint-every", type=non_negative_int, default=1000, metavar="N",
                   help="rewrite RUN/last-checkpoint.pth.tar every N steps (default 1000; 0: epochs only)")
    p.add_argument("--vgg19", type=Path, metavar="FILE",
                   help="VGG19 weights for the perceptual loss (default: the registry's vgg19, downloaded once)")
    p.add_argument("--avd", action="store_true",
                   help="TPSMM's second stage: train the AVD network (train_avd_params) on the frozen networks of "
                        "--checkpoint (the first stage's), or --resume such a run")
    _cache_dir(p)
    p.set_defaults(command="train")

    p = sub.add_parser("reconstruct", parents=[common], help="evaluate a model: reconstruct the test videos",
                       description="Reconstruct every test video from its first frame and write the per-video and "
                                   "mean L1 (as the paper reports) to DIR/reconstruction.csv; optionally ground "
                                   "truth | reconstruction videos and the keypoint distance to face-alignment's "
                                   "landmarks (AKD).")
    p.add_argument("--config", required=True, help="the model's config (shipped name or yaml)")
    p.add_argument("--checkpoint", required=True, metavar="FILE|NAME", help="the model's checkpoint")
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="the test videos: DIR/test, or a dataset folder (its test/ is used)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the CSV and the videos")
    p.add_argument("--side-by-side", action="store_true", help="also write DIR/NAME.mp4: ground truth | reconstruction")
    p.add_argument("--akd", action="store_true",
                   help="also measure the average keypoint distance to face-alignment's landmarks (faces)")
    p.add_argument("--download-face-weights", action="store_true", help="let face-alignment download its weights")
    p.add_argument("--max-videos", type=positive_int, metavar="N", help="only the first N test videos")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                   help="frames per forward pass (default 8)")
    p.add_argument("--device", help="torch device: cuda, mps or cpu (default: the best available)")
    _cache_dir(p)
    p.set_defaults(command="reconstruct")

    p = sub.add_parser("animate-pairs", parents=[common], help="animate many source/driving pairs",
                       description="Animate every (source, driving) pair of a CSV with one model (the paper's "
                                   "animate mode). The CSV's first row names the columns source,driving[,output]; "
                                   "paths are relative to the CSV. Pairs already done are skipped; a failed pair "
                                   "does not stop the others (exit status 1 when any failed).")
    p.add_argument("--pairs", required=True, type=Path, metavar="PAIRS.csv")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder of the results (SOURCE-DRIVING.mp4)")
    p.add_argument("--config", default="vox",
                   help="model: a registry name, a shipped config name or a yaml file (default: vox)")
    p.add_argument("--checkpoint", metavar="FILE|NAME", help="weights (needed with a yaml --config)")
    _cache_dir(p)
    p.add_argument("--absolute", action="store_true",
                   help="absolute keypoint positions instead of motion relative to the first driving frame")
    p.add_argument("--no-adapt-scale", action="store_true",
                   help="do not scale the motion by the ratio of the objects' sizes")
    p.add_argument("--crop", action=argparse.BooleanOptionalAction, default=None,
                   help="crop the faces of sources and drivings (default: yes for face models)")
    _detector(p)
    p.add_argument("--no-audio", action="store_true", help="write the results without sound")
    p.add_argument("--device", help="torch device: cuda, cuda:1, mps or cpu (default: the best available)")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="compute precision (as for animate)")
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                   help="driving frames per forward pass (default 1)")
    p.set_defaults(command="animate_pairs")
