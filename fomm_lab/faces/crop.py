"""Square face crops of a photo at the model's size (:func:`crop_photo`).

One numbering of a photo's faces everywhere (CLI, notebook, figures, printed lines, API): **0, 1, 2 ... from left
to right** (by the left edge of the detected face box). ``--face-index 1``, ``CropOptions(faces=[1])``,
``crop_photo(..., face_index=1)``, the figures' "face 1" and the pipeline's "face 1 at ..." lines all name the
same face; :attr:`PhotoCrop.index` carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BOX, CropError, FaceIndexError, NoFaceError, Remedy
from ..geometry import Box, Size
from ..io.resize import resize_image
from .detect import FaceDetector, get_detector

DEFAULT_PADDING = (0.4, 0.5, 0.4, 0.35)
"""Photo-crop padding (left, top, right, bottom) as fractions of the face box width/height: more room
above for hair and forehead, as in the VoxCeleb crops the face models were trained on."""


def _square_size(size: int | tuple[int, int]) -> int:
    w, h = (size, size) if isinstance(size, int) else size
    if w != h or w <= 0:
        raise CropError(f"crop size must be square and positive (the models take square frames), got {size}")
    return int(w)


@dataclass(frozen=True)
class PhotoCrop:
    """A face crop of a photo.

    image: RGB uint8 (size, size, 3). box: the square cropped region in the full photo's pixels (integer
    corners, inside the photo) -- paste results back there. face: the detected face box. index: the face's number
    among the photo's faces, from 0 left to right (None for a face box given by hand).
    """

    image: np.ndarray
    box: Box
    face: Box
    index: int | None = None

    @property
    def label(self) -> str:
        """``face 0``, ``face 1`` ... (the one numbering), or ``face (given box)``."""
        return "face (given box)" if self.index is None else f"face {self.index}"


FACE_ORDERS = ("largest", "left-to-right")


def find_faces(img: np.ndarray, detector: FaceDetector, order: str = "left-to-right") -> list[Box]:
    """The faces of ``img``, left to right (the faces' numbering: index 0 is the leftmost) or largest first."""
    if order not in FACE_ORDERS:
        raise CropError(f"face order {order!r} is not one of {', '.join(FACE_ORDERS)}")
    faces = detector.detect(img)
    return sorted(faces, key=(lambda b: -b.area) if order == "largest" else (lambda b: b.x0))


def crop_at(img: np.ndarray, face: Box, size: int | tuple[int, int],
            padding: tuple[float, float, float, float] = DEFAULT_PADDING, index: int | None = None) -> PhotoCrop:
    """The padded square around ``face`` (see :func:`crop_photo`), resized to ``size``; ``index``: the face's
    number (0 = leftmost)."""
    side = _square_size(size)
    h, w = img.shape[:2]
    box = face.pad(*padding).square_in(w, h)
    x0, y0, x1, y1 = box.as_ints()
    return PhotoCrop(image=resize_image(img[y0:y1, x0:x1], Size.square(side)), box=box, face=face, index=index)


def _auto_detector() -> FaceDetector:
    """``get_detector("auto")``, its offline warning worded for :func:`crop_photo`'s own ``detector=`` argument."""
    import warnings

    from .detect import FaceAlignmentUnavailable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FaceAlignmentUnavailable)
        detector = get_detector("auto")
    if any(isinstance(w.message, FaceAlignmentUnavailable) for w in caught):
        warnings.warn("face-alignment's weights are not cached, so OpenCV's Haar cascades find the faces (no "
                      "landmarks): pass detector=get_detector('face_alignment', download=True) to fetch them once, "
                      "or detector=get_detector('haar') to choose Haar (fomm_lab.faces.get_detector)",
                      UserWarning, stacklevel=3)
    return detector


def crop_photo(img: np.ndarray | str | Path, size: int | tuple[int, int], face_index: int | None = None,
               padding: tuple[float, float, float, float] = DEFAULT_PADDING,
               detector: FaceDetector | None = None, box: tuple[float, float, float, float] | None = None,
               ) -> PhotoCrop:
    """Crop a face out of a photo as a padded square, resized to ``size``.

    Args:
        img: RGB uint8 HxWx3 array, or an image file path (read with :func:`fomm_lab.io.read_image`).
        size: output side in pixels (the model's frame size; square).
        face_index: None for the largest face, else the face's number: 0, 1 ... from left to right.
        padding: (left, top, right, bottom) growth of the face box, fractions of its width/height. The
            padded box is then made square around its centre, shifted into the photo, and shrunk to the
            photo's shorter side if larger.
        detector: a :mod:`fomm_lab.faces` detector; None picks ``get_detector("auto")``.
        box: the face's (x0, y0, x1, y1) in pixels, to skip detection (padding still applies).

    Raises NoFaceError when no face is found, FaceIndexError when ``face_index`` is out of range.
    """
    return crop_faces(img, size, faces=[face_index] if face_index is not None else "largest", padding=padding,
                      detector=detector, box=box)[0]


def crop_faces(img: np.ndarray | str | Path, size: int | tuple[int, int],
               faces: str | list[int] = "largest", padding: tuple[float, float, float, float] = DEFAULT_PADDING,
               detector: FaceDetector | None = None, box: tuple[float, float, float, float] | None = None,
               name: str | None = None) -> list[PhotoCrop]:
    """Crops of several faces of a photo (see :func:`crop_photo`).

    faces: ``"largest"`` (one crop), ``"all"`` (every face, left to right) or a list of face numbers (0 = the
    leftmost; negative numbers count from the right), cropped in the order given. Each crop carries its number
    (:attr:`PhotoCrop.index`). name: the photo's name in error messages.
    """
    name = name or "the image"
    if isinstance(img, (str, Path)):
        from ..io.image import read_image

        name, img = str(img), read_image(img)
    _square_size(size)
    h, w = img.shape[:2]
    if box is not None:
        manual = Box(*map(float, box))
        if not (0 <= manual.x0 < manual.x1 <= w and 0 <= manual.y0 < manual.y1 <= h):
            raise CropError(f"face box {tuple(box)} is not inside the {w}x{h} photo {name}; give x0 y0 x1 y1 "
                            "pixels with x0 < x1 <= width and y0 < y1 <= height")
        return [crop_at(img, manual, size, padding)]
    detector = detector or _auto_detector()
    found = find_faces(img, detector, "left-to-right")
    if not found:
        raise NoFaceError(f"no face was found in {name} by the {detector.name} detector", remedies=[
            Remedy("give the face box ({})", "crop.source_box", BOX),
            Remedy("animate the whole photo ({})", "crop.source", False)])
    if isinstance(faces, str):
        if faces not in ("largest", "all"):
            raise CropError(f"faces={faces!r}: give 'largest', 'all' or face numbers (0 = leftmost)")
        numbers = list(range(len(found)))
        chosen = [max(numbers, key=lambda i: found[i].area)] if faces == "largest" else numbers
    else:
        bad = [i for i in faces if not -len(found) <= i < len(found)]
        if bad:
            raise FaceIndexError(f"face index {bad[0]} asked for, but {name} has {len(found)} face(s), numbered "
                                 f"0 to {len(found) - 1} from left to right")
        chosen = [i % len(found) for i in faces]
    return [crop_at(img, found[i], size, padding, index=i) for i in chosen]
