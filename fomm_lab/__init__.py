"""fomm_lab: the First Order Motion Model (Siarohin et al., NeurIPS 2019) as a library, a CLI and a lab.

Main entry points::

    from fomm_lab import load_model, Animator
    model = load_model("vox")                      # downloads + verifies the checkpoint once
    frames = Animator(model).animate(source, driving_frames)   # yields uint8 HxWx3 frames
"""

from .animate import Animator
from .best_frame import find_best_frame
from .config import available_configs, load_config
from .device import pick_device
from .errors import CheckpointError, ConfigError, DownloadError, FommLabError, MediaError, NoFaceError
from .keypoints import Keypoints, normalize_keypoints
from .model import FommModel, load_model
from .registry import available_models

__version__ = "0.1.0"

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
