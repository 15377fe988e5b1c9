"""What each ``fomm-lab`` subcommand does, given its parsed arguments (see :mod:`fomm_lab.cli.parser`).

Each function takes the ``argparse.Namespace`` (plus ``progress``: show progress bars) and returns the exit
status. No flow logic lives here: ``animate`` builds an :class:`~fomm_lab.pipeline.AnimateJob` and hands it to
the pipeline. Heavy parts (torch, ffmpeg, face detection, JupyterLab) are imported only when needed, after
every check that needs no model has passed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

WORDS: dict[str, dict[str, str | None]] = {
    "crop": {"crop.driving_box": "--box X0 Y0 X1 Y1", "crop.driving": None, "crop.min_track_frames": "--min-frames N"},
    "train": {"train.resume": "--resume", "train.out": "--out RUN"},
    "prepare_data": {"crop.driving_box": None, "crop.driving": "--no-crop"},
    "animate_pairs": {"crop.source": "--no-crop", "crop.driving": "--no-crop", "crop.source_box": None,
                      "crop.driving_box": None, "motion.best_frame": None},
    "swap": {"crop.source": None, "crop.driving": None, "crop.driving_box": "--target-box X0 Y0 X1 Y1",
             "swap.face_index": "without --face-index"},
}
"""Per-command wording of remedies where it differs from the common flags (None: not offered)."""


def _say(args: argparse.Namespace):
    def say(text: str) -> None:
        if args.progress or getattr(args, "verbose", False):
            print(text, flush=True)

    return say


def _table_parts(args: argparse.Namespace, command: str) -> dict[str, dict[str, Any]]:
    """The flags of ``command`` that were given (generated from the table of options), as keyword arguments per
    part of the job (``""`` for the job's own fields, ``"crop"``, ``"output"`` ...); the others are left out, so
    the job's dataclasses give the table's defaults. The outputs are checked: one at least, and no GIF as video."""
    from ..errors import FommLabError
    from ..options import options_of
    from .parser import dest

    parts: dict[str, dict[str, Any]] = {}
    for opt in options_of(command):
        if hasattr(args, dest(opt)):
            value = getattr(args, dest(opt))
            parts.setdefault(opt.owner, {})[opt.name] = tuple(value) if opt.nargs else value
    output = parts.get("output", {})
    if not any(output.get(name) is not None for name in ("video", "side_by_side", "gif")):
        raise FommLabError("nothing to write: give --output (and/or --side-by-side, --gif)")
    video = output.get("video")
    if video is not None and Path(video).suffix.lower() == ".gif":
        raise FommLabError(f"--output {video} is a GIF: --output writes a video (.mp4, .mov, .mkv) or PNG frames; "
                           f"for a GIF give --gif {video} (with or without --output)")
    return parts


def animate_job(args: argparse.Namespace):
    """The :class:`~fomm_lab.pipeline.AnimateJob` the ``animate`` arguments describe."""
    from .. import pipeline

    parts = _table_parts(args, "animate")
    driving = args.driving[0] if len(args.driving) == 1 else tuple(args.driving)
    return pipeline.AnimateJob(source=args.source, driving=driving,
                               motion=pipeline.MotionOptions(**parts.get("motion", {})),
                               crop=pipeline.CropOptions(**parts.get("crop", {})),
                               output=pipeline.OutputOptions(**parts.get("output", {})),
                               runtime=pipeline.RuntimeOptions(**parts.get("runtime", {})), **parts.get("", {}))


def animate(args: argparse.Namespace) -> int:
    """``fomm-lab animate``: photo + driving video -> animated video (streamed frame by frame), through the one
    :class:`~fomm_lab.pipeline.Animation` session."""
    from .. import pipeline

    job = animate_job(args)
    with pipeline.Animation(job, progress=args.progress, say=_say(args)) as session:
        session.check()  # everything that needs no model, before torch is imported
        from ..device import dtype_name

        model = session.model
        animator = session.animator()
        print(f"model {model.name} ({model.family}, {model.frame_size} frames) on {model.device}, "
              f"{dtype_name(animator.dtype)}" + (" (auto)" if job.runtime.dtype == "auto" else "")
              + (f", {job.runtime.backend} backend" if job.runtime.backend != "torch" else ""), flush=True)
        session.prepare()
        result = session.animate()
    for kind, path in result.outputs.items():
        what = f" ({result.frames} frames at {result.fps:g} fps)" if kind == "video" else ""
        print(f"wrote {path}{what}")
    return 0


def swap_job(args: argparse.Namespace):
    """The :class:`~fomm_lab.pipeline.SwapJob` the ``swap`` arguments describe."""
    from .. import pipeline

    parts = _table_parts(args, "swap")
    return pipeline.SwapJob(source=args.source, target=args.target,
                            swap=pipeline.FaceSwapOptions(**parts.get("swap", {})),
                            crop=pipeline.CropOptions(**parts.get("crop", {})),
                            output=pipeline.OutputOptions(**parts.get("output", {})),
                            runtime=pipeline.RuntimeOptions(**parts.get("runtime", {})), **parts.get("", {}))


def swap(args: argparse.Namespace) -> int:
    """``fomm-lab swap``: photo + target video -> the target with the photo's face (streamed frame by frame, pasted
    back at full resolution, with the target's sound), through the one :class:`~fomm_lab.pipeline.Swap` session."""
    from .. import pipeline

    job = swap_job(args)
    with pipeline.Swap(job, progress=args.progress, say=_say(args)) as session:
        checked = session.check()  # everything that needs no weights, before any is read
        from ..device import dtype_name

        swapper = session.swapper
        mode = "supervised (face parser)" if job.swap.supervised else "unsupervised (segments)"
        print(f"segment model {checked.config.name} ({checked.config.num_segments} parts) on {swapper.device}, "
              f"{dtype_name(swapper.dtype)}" + (" (auto)" if job.runtime.dtype == "auto" else "")
              + f"; {mode}, parts {','.join(map(str, job.swap.chosen_parts))}", flush=True)
        session.prepare()
        result = session.swap()
    for kind, path in result.outputs.items():
        what = f" ({result.frames} frames at {result.fps:g} fps, {result.swapped} swapped)" if kind == "video" else ""
        print(f"wrote {path}{what}")
    return 0


def export(args: argparse.Namespace) -> int:
    """``fomm-lab export --format onnx``: the model's ONNX graphs and manifest into a new folder (FOMM and TPSMM
    models; :mod:`fomm_lab.engine.fast.onnx`)."""
    from ..engine.families import load_model
    from ..engine.fast.onnx import export_onnx
    from ..errors import FommLabError
    from ..io.atomic import check_output_folder

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FommLabError(f"cannot export into {out}: it exists and is not an empty folder; give a new folder name")
    check_output_folder(out)
    if args.checkpoint is not None and not args.checkpoint.is_file():
        from ..errors import CheckpointError

        raise CheckpointError(f"checkpoint {args.checkpoint} does not exist; check the path")
    model = load_model(args.config, args.checkpoint, device="cpu", cache_dir=args.cache_dir, progress=args.progress)
    exported = export_onnx(model, out, opset=args.opset)
    for name in exported.graphs:
        print(f"wrote {exported.path(name)}")
    points = "thin-plate-spline control points" if exported.family == "tpsmm" else "keypoints"
    print(f"wrote {out / 'manifest.json'} ({model.name}, {model.family}, {model.frame_size} frames, "
          f"{exported.num_kp} {points}; modes {', '.join(exported.modes)})")
    return 0


def crop(args: argparse.Namespace) -> int:
    """``fomm-lab crop``: print the face-track plan of a video (exactly what runs) and write its crop(s)."""
    from ..errors import MediaError
    from ..faces.track import MIN_TRACK_FRAMES, plan_video_crop
    from ..io.atomic import check_output_folder
    from ..io.image import IMAGE_SUFFIXES
    from ..io.video import OUTPUT_FORMATS, read_video
    from ..pipeline import CropOptions, model_config
    from ..pipeline.prepare import get_detector_for

    if Path(args.video).suffix.lower() in IMAGE_SUFFIXES:
        raise MediaError(f"{args.video} is a photo: `fomm-lab crop` cuts a driving video to its face track. A "
                         "photo's face is cropped by `fomm-lab animate` itself (Python: "
                         "fomm_lab.faces.crop_photo); to see the crop, run the notebook's photo cell")
    if args.output.suffix.lower() not in OUTPUT_FORMATS:
        raise MediaError(f"cannot write {args.output}: give a file name ending in {', '.join(OUTPUT_FORMATS)}")
    check_output_folder(args.output)
    read_video(args.video).close()
    size = args.size or model_config(args.config).frame_size.width
    options = CropOptions(detector=args.detector, download_face_weights=args.download_face_weights)
    plan = plan_video_crop(args.video, size, increase=args.increase,
                           min_frames=args.min_frames or MIN_TRACK_FRAMES,
                           detector=None if args.box else get_detector_for(options),
                           box=tuple(args.box) if args.box else None, mode=args.mode, progress=args.progress)
    audio = not args.no_audio
    print(plan.describe(args.output, args.all_tracks, audio), flush=True)
    for track, output in plan.outputs(args.output, args.all_tracks):
        plan.write(output, track=track, audio=audio)
        print(f"wrote {output}")
    return 0


def download(args: argparse.Namespace) -> int:
    """``fomm-lab download NAME``: fetch and verify one registry file (a checkpoint, an enhancer's, a segment
    model's or the face parser's weights) into the cache."""
    from ..pipeline.weights import download

    print(download(args.name, cache_dir=args.cache_dir, url=args.url, sha256=args.sha256, progress=args.progress))
    return 0


def _size_text(size: int | None) -> str:
    if not size:
        return "-"
    return f"{size / 1e6:.0f}MB" if size >= 1e6 else f"{max(size / 1e3, 1):.0f}kB"


def models(args: argparse.Namespace) -> int:
    """``fomm-lab models``: the registry's checkpoints (resolution, size) and their state in the cache. The
    size is the cached file's (the publishers give none before the download; "-" when not cached)."""
    from ..hub.download import cache_status
    from ..hub.registry import cache_dir, downloadable

    entries = downloadable()
    rows = [("NAME", "KIND", "RESOLUTION", "SIZE", "CACHED", "PATH")]
    for entry in cache_status(args.cache_dir):
        info = entries[entry.name]
        side = info.frame_size
        rows.append((entry.name, info.family or "-", f"{side}x{side}" if side else "-",
                     _size_text(entry.size or info.size), "yes" if entry.cached else "no", str(entry.path)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    print(f"\ncache: {cache_dir(args.cache_dir, create=False)}  (fomm-lab download NAME fetches one; SIZE is the "
          "cached file's: the publishers give no size before the download)")
    return 0


def lab(args: argparse.Namespace) -> int:
    """``fomm-lab lab``: JupyterLab on the demo notebook, token-protected; runs until Ctrl-C."""
    from .lab import run_lab

    return run_lab(args)


def tune(args: argparse.Namespace) -> int:
    """``fomm-lab tune``: measure each convolution layer's exact forms on this CPU for a model (random weights),
    print the per-layer table and write the tuning cache (:mod:`fomm_lab.engine.fast.tune`)."""
    import logging

    import torch

    from ..device import DTYPES, auto_dtype, cpu_has_native_bfloat16, cpu_info, dtype_name
    from ..engine.families import config_and_family
    from ..engine.fast.tune import measured_rates, tune_networks
    from ..engine.fast.variants import inference_networks
    from ..hub.registry import resolve_model

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    reference, _ = resolve_model(args.config)
    config, family = config_and_family(reference)
    quiet = logging.getLogger("fomm_lab.engine")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "random weights": on purpose here
    try:
        model = family.load(config, None, device="cpu", fuse=True)
    finally:
        quiet.setLevel(level)
    if args.dtype == "auto":  # bfloat16 only where it can beat float32: natively
        dtypes = [torch.float32, *([torch.bfloat16] if cpu_has_native_bfloat16() else [])]
    else:
        dtypes = [DTYPES[args.dtype]]
    print(f"CPU {cpu_info().describe()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
          f"model {model.name} ({model.family}, {model.frame_size} frames, random weights), batch {args.batch_size}",
          flush=True)
    for dtype in dtypes:
        print(f"\n{dtype_name(dtype)}: timing each layer's forms ...", flush=True)
        nets = inference_networks(model, dtype=dtype, tune=False)
        tuning = tune_networks(model, nets, dtype, batch_size=args.batch_size)
        print("\n".join(tuning.table()))
        print(f"wrote {tuning.path}")
    if args.dtype == "auto":
        rates = measured_rates("cpu")
        chosen = auto_dtype(torch.device("cpu"), rates)
        known = ", ".join(f"{dtype_name(d)} {r:.1f} GFLOP/s" for d, r in rates.items())
        print(f"\n--dtype auto chooses {dtype_name(chosen)} on this CPU at {torch.get_num_threads()} thread(s)"
              + (f" (measured: {known})" if known else ""))
    return 0


# ------------------------------------------------------------------------- training (fomm_lab.train)


def _registry_or_path(value: str, cache_dir: Path | None, progress: bool) -> Path:
    from ..train.trainer import resolve_checkpoint

    return resolve_checkpoint(value, cache_dir, progress)


def prepare_data(args: argparse.Namespace) -> int:
    """``fomm-lab prepare-data``: raw videos -> a dataset in the official layout (face crops)."""
    from ..errors import FommLabError
    from ..pipeline import model_config
    from ..train.prepare import PrepareOptions
    from ..train.prepare import prepare_data as run

    if args.synthetic:
        return _synthetic_data(args)
    if not args.videos:
        raise FommLabError("prepare-data needs the videos to cut (VIDEO ...), or --synthetic for the synthetic "
                           "motion dataset")
    if not 0 <= args.test_fraction < 1:
        raise FommLabError(f"--test-fraction {args.test_fraction} must be from 0 to less than 1")
    size = args.size or model_config(args.config).frame_size.width
    options = PrepareOptions(size=size, test_fraction=args.test_fraction, format=args.format, crop=not args.no_crop,
                             detector=args.detector, download_face_weights=args.download_face_weights,
                             increase=args.increase, mode=args.mode, min_frames=args.min_frames,
                             all_tracks=args.all_tracks, progress=args.progress)
    result = run(args.videos, args.out, options, say=_say(args))
    print(f"{args.out}: {len(result.written)} video(s) written, {len(result.kept)} kept, {len(result.failed)} failed")
    for path, error in result.failed:
        from .render import render_error

        print(render_error(error, WORDS["prepare_data"]).replace("fomm-lab: error: ", f"fomm-lab: error: {path}: ", 1),
              file=sys.stderr)
    return 1 if result.failed else 0


def _synthetic_data(args: argparse.Namespace) -> int:
    """``fomm-lab prepare-data --synthetic``: the synthetic motion dataset and its random VGG19 file."""
    from ..errors import FommLabError
    from ..train.synthetic import SyntheticOptions, make_synthetic_dataset, random_vgg19

    if args.videos:
        raise FommLabError("--synthetic makes its own clips: give no VIDEO with it")
    options = SyntheticOptions(size=args.size or 64, seed=args.seed, recolour=args.recolour, progress=args.progress)
    if args.aspect is not None:
        options = dataclasses.replace(options, aspect=(args.aspect, args.aspect))
    if args.rotation is not None:
        options = dataclasses.replace(options, rotation=args.rotation)
    result = make_synthetic_dataset(args.out, options, say=_say(args))
    vgg = random_vgg19(args.out / "vgg19-random.pth")
    print(f"{args.out}: {len(result.train)} training and {len(result.test)} held-out clips; random VGG19 features "
          f"for the perceptual loss: {vgg} (fomm-lab train --vgg19 {vgg})")
    return 0


def train(args: argparse.Namespace) -> int:
    """``fomm-lab train``: one training run (or this process's share of a torchrun one)."""
    from ..train.trainer import TrainOptions
    from ..train.trainer import train as run

    options = TrainOptions(config=args.config, data=args.data, out=args.out, checkpoint=args.checkpoint,
                           resume=args.resume, device=args.device, seed=args.seed, max_steps=args.max_steps,
                           epochs=args.epochs, batch_size=args.batch_size, num_repeats=args.num_repeats,
                           num_workers=args.workers, visualize_every=args.visualize_every,
                           checkpoint_every=args.checkpoint_every, cache_dir=args.cache_dir,
                           perceptual_weights=args.vgg19, progress=args.progress, avd=args.avd)
    result = run(options, say=_say(args))
    if result.main:
        print(f"wrote {result.checkpoint} (step {result.step}, {result.epoch} epoch(s) done); log: {result.log}")
    return 0


def reconstruct(args: argparse.Namespace) -> int:
    """``fomm-lab reconstruct``: per-video and mean L1 (and AKD) of the test videos' reconstructions."""
    from ..engine.families import load_model
    from ..train.evaluate import ReconstructOptions, check_model
    from ..train.evaluate import reconstruct as run

    check_model(args.config)
    landmarks = None
    if args.akd:
        from ..faces.detect import get_landmarker

        landmarks = get_landmarker(device=args.device, download=args.download_face_weights)
    checkpoint = _registry_or_path(args.checkpoint, args.cache_dir, args.progress)
    model = load_model(args.config, checkpoint, device=args.device, cache_dir=args.cache_dir, progress=args.progress)
    args.out.mkdir(parents=True, exist_ok=True)
    options = ReconstructOptions(side_by_side=args.out if args.side_by_side else None, max_videos=args.max_videos,
                                 batch_size=args.batch_size, progress=args.progress)
    result = run(model, args.data, args.out / "reconstruction.csv", options, landmarks=landmarks, say=_say(args))
    summary = f"mean L1 {result.mean_l1:.4f} over {len(result.per_frame_l1)} frames of {len(result.videos)} video(s)"
    if result.keypoints is not None:
        summary += f", AKD {result.keypoints.akd:.3f} px (missing {100 * result.keypoints.missing:.1f} %)"
    print(f"{summary}; wrote {result.csv}")
    return 0


def animate_pairs(args: argparse.Namespace) -> int:
    """``fomm-lab animate-pairs``: every pair of a CSV with one model; failures reported at the end."""
    from ..engine.families import load_model
    from ..pipeline import CropOptions, MotionOptions, RuntimeOptions
    from ..pipeline.pairs import animate_pairs as run
    from ..pipeline.pairs import read_pairs

    pairs = read_pairs(args.pairs, args.out)
    checkpoint = _registry_or_path(args.checkpoint, args.cache_dir, args.progress) if args.checkpoint else None
    model = load_model(args.config, checkpoint, device=args.device, cache_dir=args.cache_dir, progress=args.progress)
    crop = CropOptions(source=args.crop, driving=args.crop, detector=args.detector,
                       download_face_weights=args.download_face_weights)
    motion = MotionOptions(relative=not args.absolute, adapt_scale=not args.no_adapt_scale)
    runtime = RuntimeOptions(device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    result = run(pairs, model, motion=motion, crop=crop, runtime=runtime, audio=not args.no_audio,
                 progress=args.progress, say=_say(args))
    print(f"{args.out}: {len(result.written)} written, {len(result.skipped)} already there, "
          f"{len(result.failed)} failed")
    if result.failed:
        from .render import render_error

        for pair, error in result.failed:
            print(render_error(error, WORDS["animate_pairs"]).replace(
                "fomm-lab: error: ", f"fomm-lab: error: line {pair.line} ({pair.source} + {pair.driving}): ", 1),
                file=sys.stderr)
    return 1 if result.failed else 0
