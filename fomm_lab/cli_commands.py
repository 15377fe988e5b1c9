"""What each ``fomm-lab`` subcommand does, given its parsed arguments (see :mod:`fomm_lab.cli`).

Each function takes the ``argparse.Namespace`` built by :func:`fomm_lab.cli.build_parser` (plus
``progress``: show progress bars) and returns the exit status. The package's heavy parts (torch,
ffmpeg, face detection, JupyterLab) are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import FommLabError, MediaError

log = logging.getLogger("fomm-lab")


# --------------------------------------------------------------------------------------- animate


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse before any work: outputs that would overwrite an input or each other, or land in a
    folder that does not exist."""
    inputs = {p.resolve() for p in (args.source, args.driving, args.checkpoint) if p is not None}
    outputs = [p for p in (args.output, args.side_by_side, args.gif) if p is not None]
    seen: set[Path] = set()
    for path in outputs:
        resolved = path.resolve()
        if resolved in inputs:
            raise FommLabError(f"output {path} is also an input file; choose another output name")
        if resolved in seen:
            raise FommLabError(f"{path} is given as two different outputs; give each output its own name")
        seen.add(resolved)
        if not resolved.parent.is_dir():
            raise FommLabError(f"cannot write {path}: folder {path.parent} does not exist; create it first")


def _landmarker(args: argparse.Namespace):
    """face-alignment's landmark function for --find-best-frame, with the CLI's way out in the error."""
    from .errors import DownloadError
    from .faces import get_landmarker

    try:
        return get_landmarker(device=args.device, download=args.download_face_weights)
    except DownloadError as exc:
        raise DownloadError(
            f"--find-best-frame needs face-alignment's landmark model: {exc} From the command line: add "
            "--download-face-weights, or give the reference frame with --best-frame N."
        ) from None


def _face_detector(download: bool):
    from .faces import get_detector

    return get_detector("auto", download=download)


def _is_folder_output(path: Path) -> bool:
    """An output name without an extension is a folder of lossless PNG frames."""
    return path.suffix == ""


def _write_result(output: Path, frames: Iterator[np.ndarray], fps: float, audio: Path | None) -> int:
    """Stream ``frames`` into ``output`` (a video, or a folder of PNG frames); returns the frame count."""
    from .export import save_png_frames
    from .media import VideoWriter

    if _is_folder_output(output):
        save_png_frames(frames, output, progress=False)
        return sum(1 for _ in output.glob("*.png"))
    with VideoWriter(output, fps, audio_from=audio) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames_written


def animate(args: argparse.Namespace) -> int:
    """``fomm-lab animate``: photo + driving video -> animated video (streamed frame by frame)."""
    from . import Animator, find_best_frame, load_model
    from .media import read_image, read_video
    from .resize import paste_back, resize_to_model

    _check_outputs(args)
    photo = read_image(args.source)
    read_video(args.driving).close()  # fails early, before the model loads, on a bad video
    model = load_model(args.config, checkpoint=args.checkpoint, device=args.device,
                       cache_dir=args.cache_dir, progress=args.progress)
    width_height = (model.frame_size[1], model.frame_size[0])
    print(f"model {model.name} on {model.device} ({args.dtype})")

    if args.crop_source or args.paste_back:
        from .crop import DEFAULT_PADDING, crop_photo

        padding = tuple(args.crop_padding) if args.crop_padding else DEFAULT_PADDING
        crop = crop_photo(photo, padding=padding, size=width_height,
                          detector=_face_detector(args.download_face_weights))
        source, box = crop.image, crop.box.as_tuple()
        log.info("source face crop: x0=%d y0=%d x1=%d y1=%d", *box)
    else:
        source = resize_to_model(photo, width_height, mode="crop")

    with tempfile.TemporaryDirectory(prefix="fomm-lab-") as tmp:
        driving_path = args.driving
        if args.crop_driving:
            from .crop import plan_video_crop

            # The longest face track is used however short it is.
            plan = plan_video_crop(args.driving, min_frames=1,
                                   detector=_face_detector(args.download_face_weights), progress=args.progress)
            log.info("%s", plan)
            driving_path = plan.write(Path(tmp) / "driving.mp4", audio=not args.no_audio)
        reader = read_video(driving_path)
        fps = reader.info.fps

        def driving() -> Iterator[np.ndarray]:
            return (resize_to_model(frame, width_height, mode="crop") for frame in reader)

        best = args.best_frame
        if args.find_best_frame:
            from tqdm.auto import tqdm

            landmarks = _landmarker(args)
            frames = tqdm(driving(), total=reader.info.frame_count, desc="finding the best frame",
                          unit="frame", disable=not args.progress)
            best = find_best_frame(source, frames, landmarks)
            print(f"best frame: {best}")

        animator = Animator(model, relative=not args.absolute, adapt_scale=not args.no_adapt_scale,
                            batch_size=args.batch_size, dtype=args.dtype, compile=args.compile)
        results = animator.animate(source, driving(), best_frame=best, progress=args.progress,
                                   total=reader.info.frame_count)
        if args.paste_back:
            results = (paste_back(photo, frame, box) for frame in results)
        audio = None if args.no_audio else driving_path
        with reader:
            count = _write_result(args.output, results, fps, audio)
        print(f"wrote {args.output} ({count} frames at {fps:g} fps)")

        if args.side_by_side is not None:
            from .export import side_by_side

            with read_video(args.output, folder_fps=fps) as result:
                side_by_side(args.side_by_side, [source, driving(), result],
                             captions=["source", "driving", "result"], fps=fps, audio_from=audio,
                             progress=args.progress, total=count)
            print(f"wrote {args.side_by_side}")
    if args.gif is not None:
        from .export import make_gif

        with read_video(args.output, folder_fps=fps) as result:
            make_gif(result if _is_folder_output(args.output) else args.output, args.gif,
                     source_fps=fps, progress=args.progress)
        print(f"wrote {args.gif}")
    return 0


# ------------------------------------------------------------------------------------------ crop


def crop(args: argparse.Namespace) -> int:
    """``fomm-lab crop``: print the face-track plan of a video and write its crop(s)."""
    from .crop import plan_video_crop

    options = {} if args.min_frames is None else {"min_frames": args.min_frames}
    if args.output.suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv"):
        raise MediaError(f"cannot write {args.output}: give an .mp4, .m4v, .mov or .mkv file name")
    plan = plan_video_crop(args.video, increase=args.increase,
                           detector=_face_detector(args.download_face_weights), progress=args.progress,
                           **options)
    print(plan)
    if args.all_tracks:
        stem, suffix = args.output.stem, args.output.suffix
        outputs = [(i, args.output.with_name(f"{stem}-{i + 1}{suffix}")) for i in range(len(plan.tracks))]
    else:
        outputs = [(None, args.output)]
    for track, output in outputs:
        plan.write(output, track=track, audio=not args.no_audio)
        print(f"wrote {output}")
    return 0


# --------------------------------------------------------------------------------- checkpoints


def download(args: argparse.Namespace) -> int:
    """``fomm-lab download NAME``: fetch and verify one checkpoint into the cache."""
    from .download import download_checkpoint

    path = download_checkpoint(args.name, cache_dir=args.cache_dir, url=args.url, sha256=args.sha256,
                               progress=args.progress)
    print(path)
    return 0


def models(args: argparse.Namespace) -> int:
    """``fomm-lab models``: the registry's checkpoints and their state in the cache, as a table."""
    from .download import cache_status
    from .registry import cache_dir

    rows = [("NAME", "FILE", "CACHED", "PATH")]
    rows += [(e.name, e.filename, "yes" if e.cached else "no", str(e.path)) for e in cache_status(args.cache_dir)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    print(f"\ncache: {cache_dir(args.cache_dir, create=False)}  (fomm-lab download NAME fetches one)")
    return 0


# ------------------------------------------------------------------------------------------- lab


def find_notebook(given: Path | None) -> Path:
    """The notebook to open: ``given``, else notebooks/demo.ipynb in the current folder or in the
    checkout this package runs from."""
    if given is not None:
        if not given.is_file():
            raise FommLabError(f"notebook {given} does not exist; give the path of an .ipynb file")
        return given.resolve()
    candidates = [Path.cwd() / "notebooks" / "demo.ipynb",
                  Path(__file__).resolve().parents[1] / "notebooks" / "demo.ipynb"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FommLabError(
        f"notebooks/demo.ipynb not found (looked in {' and '.join(str(c.parent) for c in candidates)}); "
        "run `fomm-lab lab` in the fomm-lab checkout or pass --notebook PATH"
    )


def _wait_for_server(proc, port: int, timeout_s: float = 120.0) -> None:
    """Return once JupyterLab answers on ``port``; FommLabError if it exits or never answers."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FommLabError(f"JupyterLab stopped (exit code {proc.returncode}) before it was ready; "
                               f"see its messages above (port {port} taken? pick another with --port)")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    raise FommLabError(f"JupyterLab did not answer on port {port} within {timeout_s:.0f} s")


def lab(args: argparse.Namespace) -> int:
    """``fomm-lab lab``: JupyterLab on the demo notebook, token-protected; runs until Ctrl-C."""
    import secrets
    import subprocess
    import webbrowser

    from .cli import default_port

    notebook = find_notebook(args.notebook)
    root = notebook.parent.parent if notebook.parent.name == "notebooks" else notebook.parent
    port = args.port or default_port()
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={args.ip}",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"]
    if args.allow_root:
        command.append("--allow-root")
    # The token goes through the environment, where other users cannot read it (unlike argv).
    proc = subprocess.Popen(command, env={**os.environ, "JUPYTER_TOKEN": token})
    try:
        _wait_for_server(proc, port)
        url = f"http://127.0.0.1:{port}/lab/tree/{notebook.relative_to(root).as_posix()}?token={token}"
        print(f"\nfomm-lab: JupyterLab is ready; open\n    {url}\n(Ctrl-C stops it)\n", flush=True)
        if not args.no_browser:
            webbrowser.open(url)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
