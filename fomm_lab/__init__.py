"""fomm_lab: the First Order Motion Model (Siarohin et al., NeurIPS 2019) as a library, a CLI and a lab.

Main entry points::

    from fomm_lab import load_model, Animator
    model = load_model("vox")                      # downloads + verifies the checkpoint once
    frames = Animator(model).animate(source, driving_frames)   # yields uint8 HxWx3 frames

Names are imported on first use, so ``import fomm_lab`` (and ``fomm-lab --help``) does not load torch.
"""

from __future__ import annotations

import importlib

from .errors import CheckpointError, ConfigError, DownloadError, FommLabError, MediaError, NoFaceError

__version__ = "0.1.0"

_LAZY = {
    "Animator": "animate",
    "find_best_frame": "best_frame",
    "available_configs": "config",
    "load_config": "config",
    "pick_device": "device",
    "Keypoints": "keypoints",
    "normalize_keypoints": "keypoints",
    "FommModel": "model",
    "load_model": "model",
    "available_models": "registry",
}

__all__ = [
    "Animator",
    "CheckpointError",
    "ConfigError",
    "DownloadError",
    "FommLabError",
    "FommModel",
    "Keypoints",
    "MediaError",
    "NoFaceError",
    "available_configs",
    "available_models",
    "find_best_frame",
    "load_config",
    "load_model",
    "normalize_keypoints",
    "pick_device",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fomm_lab' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
