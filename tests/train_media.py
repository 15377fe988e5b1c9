"""Real face media for the training tests, made on the fly.

* :func:`astronaut_video`: a folder of PNG frames, each a square crop of ``skimage.data.astronaut()`` around the
  face, the crop window moving and zooming along a smooth path (a real face, really moving in the frame).
* :func:`make_tiny_dataset`: a dataset in the official layout at 64x64 -- frame folders made that way and,
  with ``clips``, face tracks cut by ``fomm-lab prepare-data``'s code from ``tests/clips.make_face_clip``.
* :func:`random_vgg19`: a VGG19 weights file with the published names and random weights (torchvision's VGG
  initialisation), since the ImageNet file cannot be downloaded in the tests.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from clips import FACE_BOX_IN_ASTRONAUT

TINY_CONFIG = Path(__file__).resolve().parent / "fixtures" / "train-tiny" / "tiny-train.yaml"


def astronaut_frames(frames: int = 12, size: int = 64, phase: float = 0.0, amplitude: float = 14.0,
                     zoom: float = 0.12) -> list[np.ndarray]:
    """uint8 (size, size, 3) crops of the astronaut photo around the face, moving on an ellipse and zooming."""
    from skimage import data

    photo = data.astronaut()
    x0, y0, x1, y1 = FACE_BOX_IN_ASTRONAUT
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 1.7 * (x1 - x0)
    out = []
    for i in range(frames):
        t = phase + 2 * math.pi * i / max(frames, 2)
        s = side * (1 + zoom * math.sin(t))
        x, y = cx + amplitude * math.cos(t), cy + 0.6 * amplitude * math.sin(2 * t)
        box = np.float32([[x - s / 2, y - s / 2], [x + s / 2, y - s / 2], [x - s / 2, y + s / 2]])
        target = np.float32([[0, 0], [size, 0], [0, size]])
        matrix = cv2.getAffineTransform(box, target)
        out.append(cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
    return out


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def astronaut_video(folder: Path, frames: int = 12, size: int = 64, phase: float = 0.0) -> Path:
    return write_frames(folder, astronaut_frames(frames, size, phase))


def make_tiny_dataset(root: Path, *, train: int = 4, test: int = 2, frames: int = 12, size: int = 64,
                      clips: bool = False) -> Path:
    """``root/train`` and ``root/test`` of astronaut frame folders (``face#K`` names: two identities); with
    ``clips`` one more training video and one test video are face crops of moving-face mp4 clips, written
    by :func:`fomm_lab.train.prepare.prepare_data` with OpenCV's detector."""
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    for k in range(train):
        astronaut_video(root / "train" / f"face{k % 2}#{k}", frames, size, phase=0.7 * k)
    for k in range(test):
        astronaut_video(root / "test" / f"held-out{k}", frames + 4, size, phase=0.35 + 1.1 * k)
    if clips:
        from clips import make_face_clip

        from fomm_lab.faces.detect import HaarDetector  # noqa: F401  (the detector prepare_data builds)
        from fomm_lab.train.prepare import PrepareOptions, prepare_data

        raw = root.parent / f"{root.name}-raw"
        raw.mkdir()
        videos = [make_face_clip(raw / "clip-a.mp4", seconds=0.8, size=(320, 240), audio=False),
                  make_face_clip(raw / "clip-b.mp4", seconds=0.8, size=(240, 240), audio=False)]
        result = prepare_data(videos, root, PrepareOptions(size=size, test_fraction=0.5, detector="haar",
                                                           progress=False, min_frames=5))
        assert not result.failed, result.failed
    return root


def random_vgg19(path: Path, seed: int = 0, upto: int = 36) -> Path:
    """A VGG19 ``features.*`` state dict (the layers up to index ``upto``; 36: all 16 convolutions) with random
    weights: kaiming-normal (fan out, ReLU) weights and zero biases, as torchvision initialises VGG."""
    import torch
    from torch import nn

    from fomm_lab.train.vgg import feature_layout

    torch.manual_seed(seed)
    features = nn.Sequential(*feature_layout()[: upto + 1])
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path
