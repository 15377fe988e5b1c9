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

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ..errors import ConfigError, DownloadError, MediaError, Remedy
from ..geometry import Box
from ..hub.registry import FACE_ALIGNMENT_WEIGHTS, RemoteFile


class FaceAlignmentUnavailable(UserWarning):
    """face-alignment's weights are missing or cannot be fetched; Haar cascades are used instead.

    Made from the DownloadError that says why (``.error``), so each shell can word its remedies.
    """

    def __init__(self, error: DownloadError) -> None:
        self.error = error
        super().__init__(f"using OpenCV's Haar cascades for face boxes (no landmarks, no best frame): "
                         f"{error.first_line()}")


class FaceDetector(Protocol):
    """What every detector offers: boxes of the faces in an RGB uint8 HxWx3 image."""

    name: str

    def detect(self, img: np.ndarray) -> list[Box]: ...


def _check_image(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise MediaError(f"face detection needs an RGB uint8 image of shape HxWx3, got dtype {img.dtype} and "
                         f"shape {img.shape}; read files with fomm_lab.io.read_image().")
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
        root = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
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


def face_alignment_weights_cached(entries: Sequence[RemoteFile] = FACE_ALIGNMENT_WEIGHTS) -> bool:
    """True when S3FD and 2D-FAN weights are both in torch hub's cache (no network, no heavy import)."""
    folder = face_alignment_cache_dir()
    return all((folder / entry.filename).is_file() for entry in entries)


def download_face_alignment_weights(entries: Sequence[RemoteFile] = FACE_ALIGNMENT_WEIGHTS,
                                    progress: bool = True) -> Path:
    """Fetch the missing face-alignment weights into torch hub's cache with the one downloader (each
    checked against the sha256 prefix in its name); returns the folder. DownloadError names the URL and
    the manual way out."""
    from ..hub.download import fetch

    folder = face_alignment_cache_dir()
    for entry in entries:
        if not (folder / entry.filename).is_file():
            fetch(entry, folder / entry.filename, progress=progress)
    return folder


MISSING_WEIGHTS_REMEDIES = (
    Remedy("allow their download ({})", "crop.download_face_weights", True),
    Remedy("use OpenCV's face boxes ({})", "crop.detector", "haar"),
)


def _torch_device(device) -> str:
    if device is not None:
        return str(device)
    from ..device import pick_device

    picked = str(pick_device())
    return picked if picked.startswith(("cuda", "cpu")) else "cpu"  # face_alignment supports cuda/cpu


class FaceAlignmentDetector:
    """face-alignment's S3FD boxes and 68-point 2D FAN landmarks.

    Raises DownloadError when the weights are not cached and ``download`` is False or the download fails.
    ``device`` None picks CUDA when available, else CPU. Runs eagerly (``compile=False``): torch.compile's
    one-time cost is minutes, more than a crop or a best-frame search takes.
    """

    name = "face_alignment"

    def __init__(self, device=None, download: bool = False):
        if not face_alignment_weights_cached():
            if not download:
                raise DownloadError(
                    f"face-alignment's weights are not in {face_alignment_cache_dir()}",
                    details=[f"files: {', '.join(e.filename for e in FACE_ALIGNMENT_WEIGHTS)} (or put them there "
                             "by hand)"],
                    remedies=MISSING_WEIGHTS_REMEDIES)
            download_face_alignment_weights()
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
    fetched), else a :class:`FaceAlignmentUnavailable` warning and Haar. ``"face_alignment"``: that one
    or DownloadError. ``"haar"``: OpenCV's cascades.
    """
    if name == "haar":
        return HaarDetector()
    if name == "face_alignment":
        return FaceAlignmentDetector(device=device, download=download)
    if name != "auto":
        raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
    try:
        return FaceAlignmentDetector(device=device, download=download)
    except DownloadError as exc:
        warnings.warn(FaceAlignmentUnavailable(exc), stacklevel=2)
        return HaarDetector()


def get_landmarker(device=None, download: bool = False) -> Callable[[np.ndarray], np.ndarray | None]:
    """A callable ``img (RGB uint8 HxWx3) -> (68, 2) float32 pixel xy | None`` for
    ``fomm_lab.find_best_frame``. Raises DownloadError when face-alignment's weights are unavailable
    (Haar has no landmarks; animate without ``best_frame`` then)."""
    return FaceAlignmentDetector(device=device, download=download).landmarks
