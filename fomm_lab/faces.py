"""Face detection behind one small protocol, with an offline fallback.

Two backends:

* :class:`FaceAlignmentDetector` -- the ``face_alignment`` package: S3FD face boxes plus 68-point FAN
  landmarks (used by the engine's ``find_best_frame``). Its weights are fetched from the internet on
  first use; this module never lets that hang: it looks in torch hub's cache first and only downloads,
  with a bounded timeout, when asked to.
* :class:`HaarDetector` -- OpenCV's bundled Haar cascades (frontal, optionally profile). Always
  available offline; boxes only.

``get_detector("auto")`` picks face-alignment when its weights are cached (or could be downloaded when
``download=True``) and otherwise warns once and falls back to Haar.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from fomm_lab.errors import ConfigError, DownloadError, MediaError

# face_alignment 1.x stores its weights under torch hub's checkpoints folder, named after these URLs.
FACE_ALIGNMENT_WEIGHTS = {
    "s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
    "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
}


class FaceAlignmentUnavailable(UserWarning):
    """face-alignment's weights are missing; Haar cascades are used instead."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates: x0,y0 top-left, x1,y1 bottom-right (exclusive)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0, self.x1, self.y1

    def iou(self, other: Box) -> float:
        """Intersection over union, in [0, 1]."""
        inter = Box(max(self.x0, other.x0), max(self.y0, other.y0),
                    min(self.x1, other.x1), min(self.y1, other.y1))
        if inter.width <= 0 or inter.height <= 0:
            return 0.0
        return inter.area / (self.area + other.area - inter.area)

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        return Box(min(self.x0, other.x0), min(self.y0, other.y0),
                   max(self.x1, other.x1), max(self.y1, other.y1), max(self.score, other.score))

    def scaled(self, factor: float) -> Box:
        """The box scaled by ``factor`` around its centre."""
        cx, cy = self.center
        hw, hh = self.width * factor / 2, self.height * factor / 2
        return Box(cx - hw, cy - hh, cx + hw, cy + hh, self.score)

    def pad(self, left: float, top: float, right: float, bottom: float) -> Box:
        """Grow each side by a fraction of the box width (left/right) or height (top/bottom)."""
        w, h = self.width, self.height
        return Box(self.x0 - left * w, self.y0 - top * h, self.x1 + right * w, self.y1 + bottom * h, self.score)

    def square_in(self, width: int, height: int, increase: float = 0.0) -> Box:
        """A square with integer corners around this box's centre, inside a ``width`` x ``height`` frame.

        The side is the longer box side grown by ``increase`` on each side (``increase=0.1`` adds 10 %
        left and right, i.e. 1.2x). If the square would leave the frame it is shifted back in; if it is
        larger than the frame it shrinks to the frame's shorter side.
        """
        side = max(self.width, self.height) * (1 + 2 * increase)
        side = int(round(min(side, width, height)))
        cx, cy = self.center
        x0 = int(round(min(max(cx - side / 2, 0), width - side)))
        y0 = int(round(min(max(cy - side / 2, 0), height - side)))
        return Box(x0, y0, x0 + side, y0 + side, self.score)


class FaceDetector(Protocol):
    """What every detector offers: boxes of the faces in an RGB uint8 HxWx3 image."""

    name: str

    def detect(self, img: np.ndarray) -> list[Box]: ...


def _check_image(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise MediaError(f"face detection needs an RGB uint8 image of shape HxWx3, got dtype {img.dtype} and "
                         f"shape {img.shape}; read files with fomm_lab.media.read_image().")
    return img


def _nms(boxes: list[Box], threshold: float = 0.3) -> list[Box]:
    """Drop boxes overlapping a higher-scored one by more than ``threshold`` IoU."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b.score, reverse=True):
        if all(box.iou(k) <= threshold for k in kept):
            kept.append(box)
    return kept


class HaarDetector:
    """OpenCV Haar cascade face detector (offline, CPU, boxes only).

    Args:
        profile: also run the profile-face cascade (both directions) -- finds turned heads, but adds
            false positives.
        max_side: images are shrunk so the longer side is at most this many pixels before detection
            (speed); boxes are returned in the original image's pixels.
        min_face: smallest face side to report, as a fraction of the shorter image side.
        min_score: drop detections whose cascade level weight is below this (faces score about 3-10,
            background false positives mostly below 2.5).
    """

    name = "haar"

    def __init__(self, profile: bool = False, max_side: int = 640, min_face: float = 0.08,
                 min_score: float = 2.5):
        self.profile = profile
        self.min_score = min_score
        self.max_side = max_side
        self.min_face = min_face
        root = Path(cv2.data.haarcascades)
        self._frontal = self._load(root / "haarcascade_frontalface_default.xml")
        self._profile = self._load(root / "haarcascade_profileface.xml") if profile else None

    @staticmethod
    def _load(path: Path) -> cv2.CascadeClassifier:
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise MediaError(f"OpenCV's Haar cascade {path} is missing or unreadable; reinstall opencv-python "
                             "(4.x ships the cascades).")
        return cascade

    def _run(self, cascade: cv2.CascadeClassifier, gray: np.ndarray, min_side: int) -> list[tuple]:
        rects, _, weights = cascade.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5,
                                                      minSize=(min_side, min_side), outputRejectLevels=True)
        return [(*r, float(w)) for r, w in zip(np.reshape(rects, (-1, 4)), np.ravel(weights))]

    def detect(self, img: np.ndarray) -> list[Box]:
        """Face boxes in ``img`` (RGB uint8 HxWx3), best first; score is the cascade's level weight."""
        img = _check_image(img)
        h, w = img.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if scale < 1:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        min_side = max(20, int(self.min_face * min(gray.shape)))
        found = self._run(self._frontal, gray, min_side)
        if self._profile is not None:
            found += self._run(self._profile, gray, min_side)
            gw = gray.shape[1]
            found += [(gw - x - bw, y, bw, bh, s)
                      for x, y, bw, bh, s in self._run(self._profile, gray[:, ::-1].copy(), min_side)]
        boxes = [Box(float(x / scale), float(y / scale), float((x + bw) / scale), float((y + bh) / scale), s)
                 for x, y, bw, bh, s in found if s >= self.min_score]
        return _nms(boxes)


def face_alignment_cache_dir() -> Path:
    """Where face-alignment keeps its weights: torch hub's ``checkpoints`` folder (honours TORCH_HOME)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def face_alignment_weights_cached() -> bool:
    """True when S3FD and 2D-FAN weights are both in torch hub's cache (no network, no heavy import)."""
    folder = face_alignment_cache_dir()
    return all((folder / name).is_file() for name in FACE_ALIGNMENT_WEIGHTS)


def download_face_alignment_weights(timeout: float = 10.0, progress: bool = True) -> Path:
    """Fetch the missing face-alignment weights into torch hub's cache; bounded by ``timeout`` seconds
    per connect/read so an offline machine fails fast instead of hanging.

    Returns the cache folder. Raises DownloadError naming the URL and the manual way out.
    """
    import requests
    from tqdm.auto import tqdm

    folder = face_alignment_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name, url in FACE_ALIGNMENT_WEIGHTS.items():
        target = folder / name
        if target.is_file():
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, requests.get(url, stream=True, timeout=timeout) as resp:
                resp.raise_for_status()
                total = int(resp.headers.get("content-length", 0)) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
                    for chunk in resp.iter_content(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
            os.replace(tmp, target)
        except (OSError, requests.RequestException) as exc:
            Path(tmp).unlink(missing_ok=True)
            raise DownloadError(
                f"could not download face-alignment weights {url} to {target}: {exc}. Download the file "
                f"by hand into {folder} (keep its name), or use the Haar detector (detector='haar')."
            ) from exc
    return folder


def _torch_device(device) -> str:
    if device is not None:
        return str(device)
    from fomm_lab.device import pick_device

    picked = str(pick_device())
    return picked if picked.startswith(("cuda", "cpu")) else "cpu"  # face_alignment supports cuda/cpu


class FaceAlignmentDetector:
    """face-alignment's S3FD boxes and 68-point 2D FAN landmarks.

    Raises DownloadError when the weights are not cached and ``download`` is False or the download fails.
    ``device`` None picks CUDA when available, else CPU. Runs eagerly (``compile=False``): torch.compile's
    one-time cost is minutes, more than a crop or a best-frame search takes.
    """

    name = "face_alignment"

    def __init__(self, device=None, download: bool = False, timeout: float = 10.0):
        if not face_alignment_weights_cached():
            if not download:
                raise DownloadError(
                    f"face-alignment weights ({', '.join(FACE_ALIGNMENT_WEIGHTS)}) are not in "
                    f"{face_alignment_cache_dir()}; allow the download (download=True) or put the files "
                    "there by hand, or use the Haar detector (detector='haar')."
                )
            download_face_alignment_weights(timeout=timeout)
        import face_alignment

        self.device = _torch_device(device)
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=self.device, flip_input=False,
            face_detector="sfd", compile=False,
        )

    def detect(self, img: np.ndarray) -> list[Box]:
        """Face boxes in ``img`` (RGB uint8 HxWx3), best first; score is S3FD's confidence in [0, 1]."""
        img = _check_image(img)
        found = self._fa.face_detector.detect_from_image(img.copy())
        boxes = [Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])) for b in found]
        return sorted(boxes, key=lambda b: b.score, reverse=True)

    def landmarks(self, img: np.ndarray) -> np.ndarray | None:
        """68 (x, y) landmark pixel coordinates, float32 (68, 2), of the largest face; None when no face."""
        img = _check_image(img)
        boxes = self.detect(img)
        if not boxes:
            return None
        largest = max(boxes, key=lambda b: b.area)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            points = self._fa.get_landmarks_from_image(img, detected_faces=[np.array(largest.as_tuple())])
        return None if not points else np.asarray(points[0][:, :2], dtype=np.float32)


DETECTORS = ("auto", "face_alignment", "haar")


def get_detector(name: str = "auto", device=None, download: bool = False) -> FaceDetector:
    """A face detector by name.

    ``"auto"``: face-alignment when its weights are cached (or, with ``download=True``, could be
    fetched), else a warning (once) and Haar. ``"face_alignment"``: that one or DownloadError.
    ``"haar"``: OpenCV's cascades.
    """
    if name == "haar":
        return HaarDetector()
    if name == "face_alignment":
        return FaceAlignmentDetector(device=device, download=download)
    if name != "auto":
        raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}.")
    try:
        return FaceAlignmentDetector(device=device, download=download)
    except DownloadError as exc:
        warnings.warn(f"face-alignment is unavailable, using OpenCV Haar cascades for face boxes: {exc}",
                      FaceAlignmentUnavailable, stacklevel=2)
        return HaarDetector()


def get_landmarker(device=None, download: bool = False) -> Callable[[np.ndarray], np.ndarray | None]:
    """A callable ``img (RGB uint8 HxWx3) -> (68, 2) float32 pixel xy | None`` for
    ``fomm_lab.find_best_frame``. Raises DownloadError when face-alignment's weights are unavailable
    (Haar has no landmarks; animate without ``best_frame`` then)."""
    return FaceAlignmentDetector(device=device, download=download).landmarks
