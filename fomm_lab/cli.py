"""The ``fomm-lab`` command line: a thin layer over the package.

Subcommands: ``animate`` (a photo driven by a video, in one line), ``crop`` (face tracks of a video as
256x256 clips), ``download`` and ``models`` (pretrained checkpoints), ``lab`` (JupyterLab on the demo
notebook). Every command returns an exit status; errors the package raises on purpose
(:class:`~fomm_lab.errors.FommLabError`) and file errors become one ``fomm-lab: error: ...`` line on
stderr (the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

from .errors import FommLabError

PROG = "fomm-lab"
DTYPES = ("float32", "bfloat16", "float16")

log = logging.getLogger(PROG)


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


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (1-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (each sets ``func``, the function that runs it)."""
    from . import cli_commands as commands

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log what is being done (device chosen, files read)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars")

    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common],
        description="Animate a still image with the First Order Motion Model (Siarohin et al., NeurIPS 2019).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("animate", parents=[common], help="animate a photo from a driving video",
                       description="Animate SOURCE (a photo) with the motion of DRIVING (a video) and "
                                   "write the result as an H.264 mp4 with the driving video's sound.")
    p.add_argument("--source", required=True, type=Path, metavar="IMG", help="the photo to animate")
    p.add_argument("--driving", required=True, type=Path, metavar="VIDEO",
                   help="the video whose motion is transferred (a file or a folder of frames)")
    p.add_argument("--output", required=True, type=Path, metavar="OUT.mp4",
                   help="result video (.mp4, .mov, .mkv), or a new folder (a name without extension) "
                        "to get lossless PNG frames")
    p.add_argument("--config", default="vox",
                   help="model: a registry name (see `fomm-lab models`; its checkpoint is downloaded "
                        "once), a shipped config name (vox-256, ...) or a yaml file (default: vox)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE.pth.tar",
                   help="weights to use instead of the registry's (needed with a yaml --config)")
    p.add_argument("--cache-dir", type=Path, help="checkpoint cache (default: $FOMM_LAB_HOME or ~/.cache/fomm-lab)")
    p.add_argument("--absolute", action="store_true",
                   help="absolute keypoint positions instead of motion relative to the first frame")
    p.add_argument("--no-adapt-scale", action="store_true",
                   help="do not scale the motion by the ratio of the faces' sizes")
    best = p.add_mutually_exclusive_group()
    best.add_argument("--find-best-frame", action="store_true",
                      help="start the relative motion from the driving frame whose face pose is "
                           "closest to the photo's (needs face-alignment's weights)")
    best.add_argument("--best-frame", type=_non_negative_int, metavar="N",
                      help="start the relative motion from driving frame N (0-based)")
    p.add_argument("--download-face-weights", action="store_true",
                   help="let --find-best-frame and face cropping download face-alignment's weights")
    p.add_argument("--crop-source", action="store_true",
                   help="crop the photo to its largest face instead of using the whole picture")
    p.add_argument("--crop-padding", type=_fraction, nargs=4, metavar=("L", "T", "R", "B"),
                   help="with --crop-source: extra margin around the face, as fractions of its size")
    p.add_argument("--crop-driving", action="store_true",
                   help="crop the driving video to its longest face track first")
    p.add_argument("--no-audio", action="store_true", help="write the result without sound")
    p.add_argument("--side-by-side", type=Path, metavar="OUT.mp4",
                   help="also write source | driving | result next to each other")
    p.add_argument("--gif", type=Path, metavar="OUT.gif", help="also write the result as a GIF")
    p.add_argument("--paste-back", action="store_true",
                   help="composite the animated face into the full-size photo (implies --crop-source)")
    p.add_argument("--device", help="torch device: cuda, cuda:1, mps or cpu (default: the best available)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="compute precision (bfloat16: several times faster on recent CPUs and GPUs, "
                        "float16: GPUs; both slightly less exact)")
    p.add_argument("--batch-size", type=_positive_int, default=1, metavar="N",
                   help="driving frames per forward pass (default 1)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks with frozen weights: faster per frame after a compilation "
                        "of a minute or more (worth it for long clips)")
    p.set_defaults(func=commands.animate)

    p = sub.add_parser("crop", parents=[common], help="cut a video's face tracks into 256x256 clips",
                       description="Find the faces in VIDEO, print the plan, and write the longest face "
                                   "track as a 256x256 clip with its sound (or every track).")
    p.add_argument("video", type=Path, metavar="VIDEO")
    p.add_argument("--output", required=True, type=Path, metavar="OUT.mp4",
                   help="the clip; with --all-tracks, OUT-1.mp4, OUT-2.mp4, ...")
    p.add_argument("--all-tracks", action="store_true", help="write one clip per face track")
    p.add_argument("--increase", type=_fraction, default=0.1,
                   help="margin added around the face box, as a fraction of its size (default 0.1)")
    p.add_argument("--min-frames", type=_positive_int, default=None, metavar="N",
                   help="ignore face tracks shorter than N frames")
    p.add_argument("--no-audio", action="store_true", help="write the clips without sound")
    p.add_argument("--download-face-weights", action="store_true",
                   help="allow downloading face-alignment's weights (else OpenCV's detector is used)")
    p.set_defaults(func=commands.crop)

    p = sub.add_parser("download", parents=[common], help="download and verify a pretrained checkpoint",
                       description="Download a checkpoint of the registry (see `fomm-lab models`) into the cache.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--url", help="fetch from this address instead of the registry's mirrors")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the file")
    p.add_argument("--cache-dir", type=Path, help="checkpoint cache (default: $FOMM_LAB_HOME or ~/.cache/fomm-lab)")
    p.set_defaults(func=commands.download)

    p = sub.add_parser("models", parents=[common], help="list the pretrained checkpoints and the cache",
                       description="List the registry's checkpoints: name, file, whether cached, path.")
    p.add_argument("--cache-dir", type=Path, help="checkpoint cache (default: $FOMM_LAB_HOME or ~/.cache/fomm-lab)")
    p.set_defaults(func=commands.models)

    p = sub.add_parser("lab", parents=[common], help="start JupyterLab on the demo notebook",
                       description="Start JupyterLab on notebooks/demo.ipynb at 127.0.0.1 with a random "
                                   "token (or $JUPYTER_TOKEN) and print the URL to open.")
    p.add_argument("--port", type=_port, default=None,
                   help="port (default: $FOMM_LAB_PORT or 8888); an error if it is taken")
    p.add_argument("--ip", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; the Docker image uses 0.0.0.0 inside "
                        "its container, published on the host's 127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--allow-root", action="store_true",
                   help="let JupyterLab run as root (it refuses to by default)")
    p.add_argument("--notebook", type=Path, help="notebook to open (default: notebooks/demo.ipynb)")
    p.set_defaults(func=commands.lab)
    return parser


def _one_line(exc: BaseException) -> str:
    """The error as one line: an OSError as 'FILE: reason', anything else as its message."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        text = f"{where}{exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format=f"{PROG}: %(message)s", force=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``fomm-lab: warning: ...`` line (no source file and line)."""
    print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _interrupt(signum, frame) -> None:
    """SIGTERM (``docker stop``, ``kill``) unwinds like Ctrl-C, so half-written outputs are removed."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fomm-lab`` command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    0: success; 1: an error, reported as one line on stderr; 2: bad command-line arguments;
    130: interrupted (Ctrl-C).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "animate" and args.crop_padding and not (args.crop_source or args.paste_back):
            parser.error("--crop-padding needs --crop-source (or --paste-back)")
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    debug = getattr(args, "debug", False)
    args.progress = not getattr(args, "quiet", False)
    _setup_logging(getattr(args, "verbose", False) or debug)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_term = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (FommLabError, OSError) as exc:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def default_port() -> int:
    """``$FOMM_LAB_PORT`` when set (the Docker image's port), else 8888."""
    text = os.environ.get("FOMM_LAB_PORT", "")
    try:
        return _port(text) if text else 8888
    except argparse.ArgumentTypeError as exc:
        raise FommLabError(f"FOMM_LAB_PORT={text!r} is not usable: {exc}; unset it or give a port.") from None
