"""fomm_lab: the First Order Motion Model (Siarohin et al., NeurIPS 2019) as a library, a CLI and a lab.

Main entry points::

    from fomm_lab import load_model, Animator
    model = load_model("vox")                      # downloads + verifies the checkpoint once
    frames = Animator(model).animate(source, driving_frames)   # yields uint8 HxWx3 frames

    from fomm_lab import AnimateJob, Animation, OutputOptions   # the whole flow, as every shell runs it
    Animation(AnimateJob(source=photo_path, driving=clip_path, output=OutputOptions(video=out_path))).run()

The stages, in the order a job runs them: ``io`` (ffmpeg, media) -> ``faces`` (detect, crop, track) ->
``engine`` (networks, Animator) -> ``pipeline`` (the job) -> shells: ``cli``, ``lab`` (widgets), ``live``.

Names are imported on first use, so ``import fomm_lab`` (and ``fomm-lab --help``) does not load torch.
"""

from __future__ import annotations

import importlib

from .errors import (
    CheckpointError,
    ConfigError,
    CropError,
    DownloadError,
    FommLabError,
    InferenceError,
    MediaError,
    NoFaceError,
)

__version__ = "0.2.0"

_LAZY = {
    "Animator": "engine.animator",
    "find_best_frame": "engine.best_frame",
    "ModelConfig": "engine.config",
    "available_configs": "engine.config",
    "load_config": "engine.config",
    "Keypoints": "engine.keypoints",
    "FommModel": "engine.model",
    "load_model": "engine.families",
    "MotionModel": "engine.family",
    "normalize_keypoints": "engine.motion",
    "pick_device": "device",
    "Size": "geometry",
    "Box": "geometry",
    "available_models": "hub.registry",
    "Animation": "pipeline",
    "AnimateJob": "pipeline",
    "CropOptions": "pipeline",
    "MotionOptions": "pipeline",
    "OutputOptions": "pipeline",
    "RuntimeOptions": "pipeline",
    "run_job": "pipeline",
    "Swap": "pipeline",
    "SwapJob": "pipeline",
    "FaceSwapOptions": "pipeline",
    "LiveSession": "live",
}

__all__ = [
    "AnimateJob",
    "Animation",
    "Animator",
    "Box",
    "CheckpointError",
    "ConfigError",
    "CropError",
    "CropOptions",
    "DownloadError",
    "FommLabError",
    "FaceSwapOptions",
    "FommModel",
    "InferenceError",
    "Keypoints",
    "LiveSession",
    "MediaError",
    "ModelConfig",
    "MotionModel",
    "MotionOptions",
    "NoFaceError",
    "OutputOptions",
    "RuntimeOptions",
    "Size",
    "Swap",
    "SwapJob",
    "available_configs",
    "available_models",
    "find_best_frame",
    "load_config",
    "load_model",
    "normalize_keypoints",
    "pick_device",
    "run_job",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fomm_lab' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
