"""Datasets in the official layout: ``DIR/train/VIDEO`` and ``DIR/test/VIDEO``.

Each VIDEO is a folder of frames (PNG/JPG, read in natural order: ``2.png`` before ``10.png``) or a video
file (mp4, gif, mov, ... anything ffmpeg reads). Every frame must have the config's
``dataset_params.frame_shape``. Names starting with a dot are ignored (hidden files, unfinished writes).

Training samples (:class:`PairDataset`) are two frames of one video, drawn with replacement and in time
order, then augmented alike (:mod:`fomm_lab.train.augment`): the first is the source, the second the
driving frame. With ``id_sampling`` the videos are grouped by identity -- the part of the name before the
first ``#`` (``id10001#clip#3.mp4`` is identity ``id10001``) -- and each item picks one video of its identity,
so identities with many clips are not over-represented. ``num_repeats`` makes one epoch that many passes
over the items.

Frames are decoded on demand: a frame folder reads just the two files; a video file is decoded as a stream up
to the later of the two frames, keeping only those two, so memory stays flat however long the video.

Randomness comes from ``numpy.random.default_rng((seed, epoch, index))``: a sample depends only on the seed,
the epoch (:meth:`PairDataset.set_epoch`) and its index, whichever process or data-loader worker draws it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, MediaError, shorten
from ..geometry import Size
from ..io.image import IMAGE_SUFFIXES, read_image
from .augment import Augmentation

VIDEO_SUFFIXES = (".mp4", ".gif", ".mov", ".mkv", ".avi", ".webm", ".m4v")
"""Video files read as dataset videos (besides folders of frames)."""

SPLITS = ("train", "test")

_PREPARE = "fomm-lab prepare-data VIDEOS... --out DIR writes that layout from your videos"


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def identity(name: str) -> str:
    """The identity of a video for ``id_sampling``: its name up to the first ``#`` (file suffix removed)."""
    return name.split("#", 1)[0] if "#" in name else Path(name).stem


@dataclass(frozen=True)
class DatasetLayout:
    """The videos of a dataset folder: ``train`` and ``test`` lists, sorted by name."""

    root: Path
    train: list[Path]
    test: list[Path]


def list_videos(folder: Path) -> list[Path]:
    """The videos of one split folder, sorted; DatasetError naming the first entry that is not a video."""
    entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=_natural_key)
    for entry in entries:
        if entry.is_file() and entry.suffix.lower() not in VIDEO_SUFFIXES:
            hint = (" (a frame belongs in a folder of its video's frames)" if entry.suffix.lower() in IMAGE_SUFFIXES
                    else "")
            raise DatasetError(f"{entry} is neither a folder of frames nor a video file ({', '.join(VIDEO_SUFFIXES)})"
                               f"{hint}; move it out of {folder}")
    return entries


def dataset_layout(root: str | Path, need_test: bool = False) -> DatasetLayout:
    """Find the train and test videos of ``root`` (see the module's description).

    ``root`` may also be a split folder itself (``DIR/test``): its videos are then the ``test`` list (and the
    ``train`` list is empty). Raises DatasetError when the folder is missing, has no ``train``/``test``
    folders, or a split it needs is empty (``need_test``: the test split; the train split always, unless
    ``root`` is a split folder).
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist; {_PREPARE}")
    if not root.is_dir():
        raise DatasetError(f"dataset {root} is a file, not a folder holding train/ and test/; {_PREPARE}")
    if root.name in SPLITS and not (root / "train").is_dir():
        videos = list_videos(root)
        if not videos:
            raise DatasetError(f"{root} holds no videos (folders of frames or video files); {_PREPARE}")
        return DatasetLayout(root.parent, videos if root.name == "train" else [],
                             videos if root.name == "test" else [])
    missing = [split for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise DatasetError(f"dataset folder {root} has no {' or '.join(s + '/' for s in missing)} folder: a dataset "
                           f"holds DIR/train/VIDEO and DIR/test/VIDEO (each VIDEO a folder of frames or a video file); "
                           f"{_PREPARE}")
    train, test = list_videos(root / "train"), list_videos(root / "test")
    if not train:
        raise DatasetError(f"{root / 'train'} holds no videos (folders of frames or video files); {_PREPARE}")
    if need_test and not test:
        raise DatasetError(f"{root / 'test'} holds no videos: the test videos are what is reconstructed; put some "
                           "there (videos not used for training)")
    return DatasetLayout(root, train, test)


class VideoFrames:
    """One dataset video: its frame count and random access to frames, checked against ``size``.

    Raises DatasetError naming the file when the video cannot be read, holds no frame, or a frame is not
    ``size`` (width x height).
    """

    def __init__(self, path: Path, size: Size) -> None:
        self.path = Path(path)
        self.size = size
        self.files: list[Path] = []
        if self.path.is_dir():
            self.files = sorted((p for p in self.path.iterdir()
                                 if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")),
                                key=_natural_key)
            if not self.files:
                raise DatasetError(f"video folder {self.path} holds no frames ({', '.join(IMAGE_SUFFIXES)}); put the "
                                   "video's frames in it as numbered image files, or remove it")
            self.frame_count = len(self.files)
            self._check_header(self.files[0])
        else:
            from ..io.probe import count_frames, probe_video

            try:
                info = probe_video(self.path)
                self.frame_count = count_frames(self.path)[0]
            except MediaError as exc:
                raise DatasetError(f"dataset video {self.path} cannot be read: {exc.first_line()}",
                                   details=exc.details) from exc
            if self.frame_count == 0:
                raise DatasetError(f"dataset video {self.path} holds no frames; remove it or export it again")
            if info.size != size:
                raise self._shape_error(self.path, info.size)

    @property
    def name(self) -> str:
        return self.path.name

    def _shape_error(self, where: Path, got: Size) -> DatasetError:
        return DatasetError(f"frame size of {where} is {got} but the config's dataset_params.frame_shape is "
                            f"{self.size}: every frame must be that size; crop and scale the videos to it "
                            f"(fomm-lab prepare-data --size {self.size.width}) or set frame_shape")

    def _check_header(self, file: Path) -> None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as img:
                got = Size(*img.size)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"frame {file} is not an image that can be read; remove it or export it again") from exc
        if got != self.size:
            raise self._shape_error(file, got)

    def _checked(self, frame: np.ndarray, where: Path) -> np.ndarray:
        if Size.of(frame) != self.size:
            raise self._shape_error(where, Size.of(frame))
        return frame

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        """uint8 (H, W, 3) frames at ``indices`` (any order, repeats allowed)."""
        if not indices:
            return []
        if self.files:
            out = []
            for i in indices:
                try:
                    frame = read_image(self.files[i], max_size=None)
                except MediaError as exc:
                    raise DatasetError(f"frame {self.files[i]} cannot be read: {exc.first_line()}") from exc
                out.append(self._checked(frame, self.files[i]))
            return out
        wanted = set(indices)
        found: dict[int, np.ndarray] = {}
        for i, frame in enumerate(itertools.islice(self.frames(), max(wanted) + 1)):
            if i in wanted:
                found[i] = frame
        if len(found) < len(wanted):  # the decode ended early: use the last frames there are
            last = max(found) if found else None
            if last is None:
                raise DatasetError(f"dataset video {self.path} gave no frame; export it again")
            return [found.get(i, found[last]) for i in indices]
        return [found[i] for i in indices]

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame in order, decoded as a stream (uint8 (H, W, 3))."""
        if self.files:
            for i in range(len(self.files)):
                yield self.read([i])[0]
            return
        from ..io.video import read_video

        try:
            with read_video(self.path) as reader:
                for frame in reader:
                    yield self._checked(frame, self.path)
        except MediaError as exc:
            raise DatasetError(f"dataset video {self.path} cannot be decoded: {exc.first_line()}",
                               details=exc.details) from exc


def open_videos(paths: Sequence[Path], size: Size, progress: bool = True, what: str = "videos") -> list[VideoFrames]:
    """Check every video (readable, frames of ``size``) with a progress bar; DatasetError on the first bad one."""
    from tqdm.auto import tqdm

    return [VideoFrames(p, size) for p in tqdm(paths, desc=f"checking {what}", unit="video", disable=not progress)]


def to_tensor_layout(frame: np.ndarray) -> np.ndarray:
    """uint8 or float (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    if frame.dtype == np.uint8:
        frame = frame.astype(np.float32) / 255.0
    return np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.float32)


class PairDataset:
    """Training samples: ``{"source": (3, H, W), "driving": (3, H, W), "name": str}`` float32 in [0, 1].

    A ``torch.utils.data.Dataset`` by protocol (``len``, ``[index]``). ``len`` is the number of items (videos,
    or identities with ``id_sampling``) times ``num_repeats``.
    """

    def __init__(self, videos: Sequence[VideoFrames], *, size: Size, augmentation: Augmentation | None = None,
                 id_sampling: bool = False, num_repeats: int = 1, seed: int = 0) -> None:
        if not videos:
            raise DatasetError("the training set holds no videos; " + _PREPARE)
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be 1 or more, got {num_repeats}")
        self.size = size
        self.augmentation = augmentation
        self.num_repeats = num_repeats
        self.seed = seed
        self.epoch = 0
        if id_sampling:
            groups: dict[str, list[VideoFrames]] = {}
            for video in videos:
                groups.setdefault(identity(video.name), []).append(video)
            self.items = [groups[key] for key in sorted(groups)]
        else:
            self.items = [[video] for video in videos]
        if augmentation is not None and augmentation.crop_size not in (None, (size.height, size.width)):
            raise DatasetError(f"dataset_params.augmentation_params.crop_param.size {augmentation.crop_size} differs "
                               f"from frame_shape {size.height}x{size.width} (height x width); make them equal")
        if augmentation is not None and augmentation.params.resize is not None and augmentation.crop_size is None:
            raise DatasetError("dataset_params.augmentation_params has resize_param without crop_param: resized "
                               "frames must be cropped back to frame_shape; add crop_param with size "
                               f"[{size.height}, {size.width}]")

    @property
    def identities(self) -> list[str]:
        return [identity(group[0].name) for group in self.items]

    def set_epoch(self, epoch: int) -> None:
        """Draw the samples of ``epoch`` (call before iterating a loader over this dataset)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items) * self.num_repeats

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of a dataset of {len(self)}")
        rng = self.rng(index)
        group = self.items[index % len(self.items)]
        video = group[int(rng.integers(len(group)))] if len(group) > 1 else group[0]
        chosen = np.sort(rng.choice(video.frame_count, size=2, replace=True))
        clip = [f.astype(np.float32) / 255.0 for f in video.read([int(i) for i in chosen])]
        if self.augmentation is not None:
            clip = self.augmentation(clip, rng)
        source, driving = (to_tensor_layout(frame) for frame in clip)
        return {"source": source, "driving": driving, "name": video.name}


def describe(videos: Sequence[VideoFrames]) -> str:
    frames = sum(v.frame_count for v in videos)
    return f"{len(videos)} video(s), {frames} frames ({shorten([v.name for v in videos], 3)})"
