"""The ``fomm-lab`` command line: a thin shell over the package.

Subcommands: ``animate`` (a photo driven by a video: :func:`fomm_lab.pipeline.run_job`), ``crop`` (face
tracks of a video as square clips), ``download`` and ``models`` (pretrained checkpoints), ``lab``
(JupyterLab on the demo notebook), ``export`` (the networks as ONNX graphs), and the training commands
``prepare-data``, ``train``, ``reconstruct`` and ``animate-pairs`` (:mod:`fomm_lab.train`). Errors the package
raises on purpose and file errors become one ``fomm-lab: error: ...`` line on stderr, its advice worded as
command-line flags, with any details on the lines after it (the traceback only with ``--debug``).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from ..allocator import keep_freed_blocks
from ..errors import FommLabError
from .parser import PROG, build_parser
from .render import Warnings, cli_words, render_error

__all__ = ["cli_words", "main", "render_error"]

log = logging.getLogger(PROG)

def _interrupt(signum, frame) -> None:
    """SIGTERM (``docker stop``, ``kill``) unwinds like Ctrl-C, so half-written outputs are removed."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fomm-lab`` command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    0: success; 1: an error, reported on stderr; 2: bad command-line arguments; 130: interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "animate" and hasattr(args, "crop__padding") and getattr(args, "crop__source", 1) is False:
            parser.error("--crop-padding needs face cropping; it has no effect with --no-crop-source")
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    keep_freed_blocks()  # this process's allocator: large freed blocks reused (fomm_lab.allocator)
    debug = getattr(args, "debug", False)
    args.progress = not getattr(args, "quiet", False)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) or debug else logging.WARNING,
                        format=f"{PROG}: %(message)s", force=True)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_term = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    from . import commands

    overrides = commands.WORDS.get(args.command)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = Warnings().show
            return getattr(commands, args.command)(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (FommLabError, OSError) as exc:
        if debug:
            raise
        print(render_error(exc, overrides), file=sys.stderr)
        return 1
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
