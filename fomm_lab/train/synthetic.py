"""A synthetic motion dataset with known motion, made from real photographs (``fomm-lab prepare-data --synthetic``).

Each clip shows one *object* -- a square window of a real photo (the images that ship with scikit-image:
astronaut, chelsea, coffee ...) inside a soft elliptical mask -- moving over a still textured background (brick,
grass or gravel from scikit-image, tinted). The object's motion is smooth and random, and known exactly per
frame:

* a similarity transform from object to frame, in normalised coordinates ([-1, 1] across the frame, x to the
  right, y down): ``p = s R(theta) q + t`` for an object point ``q`` (object radius 1 is ``radius`` of the
  frame's half-side), stored as the 2x3 matrix ``affine[f] = [s R | t]``;
* a mild thin-plate-spline warp of the object's texture (Bookstein 1989): the texture is sampled at
  ``q + d_f(q)``, where ``d_f`` is the thin-plate spline through ``tps_points`` (object coordinates) with the
  displacements ``tps_offsets[f]`` (zero at frame 0's warp-free reference is not required).

With ``recolour``, each training clip also colours its photo at random (:func:`recolour`); held-out clips keep their
photos' colours.

Each parameter follows a sum of a few sinusoids of random frequency (0.3 to 1.5 cycles per clip) and phase, so
the paths are smooth. Clips go to ``DIR/train/NAME`` (training photos) and ``DIR/test/NAME`` (held-out photos:
images never seen in training) as folders of PNG frames -- the official layout :mod:`fomm_lab.train.data`
reads -- each with ``motion.json`` beside its frames (ignored by the trainer: not an image) holding the true
transforms. Everything follows from ``seed``.

:func:`random_vgg19` writes VGG19 feature weights with random values, the perceptual loss's stand-in where
the ImageNet weights cannot be downloaded (the proof-of-learning run of docs/training.md uses it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError

TRAIN_IMAGES = ("chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "stereo_motorcycle",
                "retina", "camera", "coins", "clock", "cell", "page")
"""scikit-image photos whose clips are the training split."""
TEST_IMAGES = ("astronaut", "moon", "colorwheel")
"""scikit-image photos held out: their clips are the test split."""
BACKGROUNDS = ("brick", "grass", "gravel")
"""scikit-image textures the objects move over."""
MOTION_FILE = "motion.json"


@dataclass(frozen=True, kw_only=True)
class SyntheticOptions:
    """size: side of the square frames. frames: frames per clip. train_clips / test_clips: clips per training /
    held-out photo. radius: the object's radius as a share of the frame's half-side. shift: largest translation
    (normalised, 1 = half the frame). rotation: largest rotation (degrees). zoom: largest log scale change.
    warp: largest thin-plate-spline displacement (object units). aspect: the range of the mask ellipse's aspect
    (short over long axis), drawn per clip; (a, a) gives every clip the same shape, an orientation cue that the
    objects of a real dataset share (faces). recolour: give each training clip's photo a
    random colouring (:func:`recolour`). seed: every random draw. splits: the splits written (the others' clips
    are skipped, each written clip staying the same)."""

    size: int = 64
    frames: int = 32
    train_clips: int = 6
    test_clips: int = 2
    radius: float = 0.55
    shift: float = 0.3
    rotation: float = 35.0
    zoom: float = 0.2
    warp: float = 0.06
    aspect: tuple[float, float] = (0.7, 1.0)
    recolour: bool = False
    seed: int = 0
    train_images: tuple[str, ...] = TRAIN_IMAGES
    test_images: tuple[str, ...] = TEST_IMAGES
    splits: tuple[str, ...] = ("train", "test")
    progress: bool = True


@dataclass
class ClipMotion:
    """The true motion of one clip: ``affine`` (F, 2, 3) object -> frame similarity transforms (normalised
    coordinates), ``tps_points`` (P, 2) control points and ``tps_offsets`` (F, P, 2) their texture displacements
    (object coordinates), ``radius`` (object radius in normalised frame units at scale 1), ``image`` (the photo's
    name), ``size`` (frame side in pixels)."""

    affine: np.ndarray
    tps_points: np.ndarray
    tps_offsets: np.ndarray
    radius: float
    image: str
    size: int

    def to_json(self) -> dict:
        return {"image": self.image, "size": self.size, "radius": self.radius,
                "affine": np.round(self.affine, 6).tolist(), "tps_points": np.round(self.tps_points, 6).tolist(),
                "tps_offsets": np.round(self.tps_offsets, 6).tolist(),
                "convention": "frame point p = affine[:, :2] @ q + affine[:, 2] for object point q; normalised "
                              "coordinates in [-1, 1] (x right, y down); texture sampled at q + tps(q)"}

    @classmethod
    def from_json(cls, data: dict) -> ClipMotion:
        return cls(affine=np.asarray(data["affine"], np.float64), tps_points=np.asarray(data["tps_points"], np.float64),
                   tps_offsets=np.asarray(data["tps_offsets"], np.float64), radius=float(data["radius"]),
                   image=str(data["image"]), size=int(data["size"]))

    def to_pixels(self, points: np.ndarray, frame: int) -> np.ndarray:
        """Object points (N, 2) -> their pixel coordinates (N, 2) in ``frame`` (similarity part only)."""
        normalised = points @ self.affine[frame, :, :2].T + self.affine[frame, :, 2]
        return (normalised + 1) * self.size / 2 - 0.5


def read_motion(clip: str | Path) -> ClipMotion:
    """The true motion stored with a synthetic clip (DatasetError when it has none)."""
    path = Path(clip) / MOTION_FILE
    if not path.is_file():
        raise DatasetError(f"{clip} has no {MOTION_FILE}: it is not a clip of `fomm-lab prepare-data --synthetic`")
    return ClipMotion.from_json(json.loads(path.read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------------------ photos

def _photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a scikit-image sample image (grey ones tinted to colour by a fixed hue)."""
    from skimage import data

    loader = getattr(data, name, None)
    if loader is None:
        raise DatasetError(f"scikit-image has no sample image {name!r}; choose among its data module's images")
    image = loader()
    if isinstance(image, tuple):  # stereo pairs: the left view
        image = image[0]
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        tint = np.array([0.55, 0.75, 1.0]) if sum(map(ord, name)) % 2 else np.array([1.0, 0.8, 0.55])
        image = (image[..., None] * tint).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


def _texture(rng: np.random.Generator, size: int, textures: dict[str, np.ndarray]) -> np.ndarray:
    """float32 (size, size, 3) background in [0, 1]: a random window of a tinted texture, magnified."""
    import cv2

    name = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    texture = textures[name]
    side = int(rng.integers(size // 2, size * 3 // 2 + 1))  # magnified 2/3 to 2 times: a visible, smooth texture
    y, x = (int(rng.integers(0, d - side + 1)) for d in texture.shape[:2])
    window = cv2.resize(texture[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_CUBIC)
    grey = window.astype(np.float32)[..., None] / 255.0
    tint = rng.uniform(0.35, 1.0, size=3).astype(np.float32)
    return np.clip(0.2 + 0.6 * grey * tint, 0, 1)


def _object_texture(rng: np.random.Generator, photo: np.ndarray, side: int) -> np.ndarray:
    """float32 (side, side, 3) in [0, 1]: a random square window of the photo (40-80 % of its short side)."""
    import cv2

    short = min(photo.shape[:2])
    window = int(short * rng.uniform(0.4, 0.8))
    y, x = (int(rng.integers(0, d - window + 1)) for d in photo.shape[:2])
    crop = cv2.resize(photo[y:y + window, x:x + window], (side, side), interpolation=cv2.INTER_AREA)
    return crop.astype(np.float32) / 255.0


YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
"""RGB -> YIQ (luma, then two chroma axes)."""


def recolour(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random colouring of an object texture (float32 (S, S, 3) in [0, 1]): a grey photo becomes a duotone (its
    brightness mapped from a random dark colour to a random light one), a colour photo has its chroma turned by a
    random angle about the grey axis (brightness kept): the training photos are partly grey, so colour jitter alone
    leaves the generator few colours to learn (docs/training.md)."""
    luma = texture.mean(axis=-1, keepdims=True)
    if np.abs(texture - luma).max() < 0.02:
        dark, light = rng.uniform(0, 0.5, 3), rng.uniform(0.5, 1, 3)
        return (dark + (light - dark) * luma).astype(np.float32)
    yiq = texture @ YIQ.T
    angle = rng.uniform(0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    i, q = yiq[..., 1] * cos - yiq[..., 2] * sin, yiq[..., 1] * sin + yiq[..., 2] * cos
    turned = np.stack([yiq[..., 0], i, q], axis=-1) @ np.linalg.inv(YIQ).T
    return np.clip(turned, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------------ motion

def smooth_path(rng: np.random.Generator, frames: int, amplitude: float, waves: int = 3) -> np.ndarray:
    """(frames,) a smooth random signal within [-amplitude, amplitude]: a sum of ``waves`` sinusoids of random
    frequency (0.3 to 1.5 cycles over the clip), phase and weight, scaled so its largest value is ``amplitude``
    times a random share in [0.5, 1]."""
    t = np.arange(frames) / max(frames - 1, 1)
    signal = np.zeros(frames)
    for _ in range(waves):
        signal += rng.uniform(0.2, 1.0) * np.sin(2 * math.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 2 * math.pi))
    peak = np.abs(signal).max()
    return signal / peak * amplitude * rng.uniform(0.5, 1.0) if peak > 0 else signal


def similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    """The 2x3 matrix [s R(angle) | t] (angle in radians, counter-clockwise on screen is negative with y down)."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def tps_displacement(points: np.ndarray, control: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Thin-plate spline through ``control`` (P, 2) with values ``offsets`` (P, 2), evaluated at ``points``
    (N, 2): d(x) = a0 + A x + sum_i w_i U(|x - c_i|), U(r) = r^2 log r^2 (Bookstein 1989, Eq. 1-2)."""
    def kernel(r2: np.ndarray) -> np.ndarray:
        return np.where(r2 > 0, r2 * np.log(np.maximum(r2, 1e-12)), 0.0)

    p = len(control)
    k = kernel(((control[:, None] - control[None]) ** 2).sum(-1))
    affine = np.hstack([np.ones((p, 1)), control])
    system = np.zeros((p + 3, p + 3))
    system[:p, :p], system[:p, p:], system[p:, :p] = k, affine, affine.T
    rhs = np.zeros((p + 3, 2))
    rhs[:p] = offsets
    coef = np.linalg.solve(system, rhs)
    u = kernel(((points[:, None] - control[None]) ** 2).sum(-1))
    return u @ coef[:p] + np.hstack([np.ones((len(points), 1)), points]) @ coef[p:]


def random_motion(rng: np.random.Generator, options: SyntheticOptions, image: str) -> ClipMotion:
    """A clip's smooth random motion (see the module's description)."""
    n = options.frames
    scale = np.exp(smooth_path(rng, n, options.zoom))
    angle = np.radians(smooth_path(rng, n, options.rotation))
    tx, ty = smooth_path(rng, n, options.shift), smooth_path(rng, n, options.shift)
    affine = np.stack([similarity(options.radius * s, a, x, y) for s, a, x, y in zip(scale, angle, tx, ty)])
    grid = np.linspace(-0.6, 0.6, 3)
    control = np.array([(x, y) for y in grid for x in grid])
    offsets = np.stack([np.stack([smooth_path(rng, n, options.warp) for _ in range(2)], axis=-1)
                        for _ in range(len(control))], axis=1)
    return ClipMotion(affine=affine, tps_points=control, tps_offsets=offsets, radius=options.radius, image=image,
                      size=options.size)


# --------------------------------------------------------------------------------------------- rendering

def render_frame(motion: ClipMotion, frame: int, texture: np.ndarray, background: np.ndarray,
                 aspect: float = 0.8) -> np.ndarray:
    """uint8 (size, size, 3): the object of ``texture`` ((S, S, 3) float in [0, 1], covering object coordinates
    [-1, 1]^2) at its pose in ``frame`` over ``background`` ((size, size, 3) float), inside an elliptical mask of
    semi-axes 1 and ``aspect`` with a soft edge. Each frame pixel p is mapped back to the object, q = M^-1 (p - t),
    and the texture is sampled at q + tps(q)."""
    import cv2

    size = motion.size
    coords = (np.arange(size) + 0.5) * 2 / size - 1
    px, py = np.meshgrid(coords, coords)
    points = np.stack([px.ravel(), py.ravel()], axis=-1)
    matrix, shift = motion.affine[frame, :, :2], motion.affine[frame, :, 2]
    q = (points - shift) @ np.linalg.inv(matrix).T
    warped = q + tps_displacement(q, motion.tps_points, motion.tps_offsets[frame])
    side = texture.shape[0]
    map_xy = ((warped + 1) * side / 2 - 0.5).astype(np.float32).reshape(size, size, 2)
    sample = cv2.remap(texture, map_xy[..., 0], map_xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    ellipse = np.sqrt(q[:, 0] ** 2 + (q[:, 1] / aspect) ** 2).reshape(size, size)
    edge = 2.0 / (size * motion.radius)  # about one pixel of soft edge
    alpha = np.clip((1 - ellipse) / edge + 0.5, 0, 1)[..., None].astype(np.float32)
    out = alpha * sample + (1 - alpha) * background
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class SyntheticClip:
    """A clip in memory: uint8 (size, size, 3) frames and their true motion."""

    name: str
    frames: list[np.ndarray]
    motion: ClipMotion


class ClipMaker:
    """Renders clips of photos; the photos and textures are loaded once. ``make(image, rng)`` draws a motion,
    an object window and a background from ``rng``; ``render(motion, rng)`` renders a given motion (tests build
    motions of their own: a pure translation, a jittered path)."""

    def __init__(self, options: SyntheticOptions) -> None:
        self.options = options
        self._photos: dict[str, np.ndarray] = {}
        self._textures = {name: _photo(name)[..., 0] for name in BACKGROUNDS}

    def photo(self, name: str) -> np.ndarray:
        if name not in self._photos:
            self._photos[name] = _photo(name)
        return self._photos[name]

    def appearance(self, image: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
        """(object texture, background, mask aspect) drawn from ``rng``."""
        side = 2 * self.options.size
        return (_object_texture(rng, self.photo(image), side), _texture(rng, self.options.size, self._textures),
                float(rng.uniform(*self.options.aspect)))

    def render(self, motion: ClipMotion, appearance: tuple[np.ndarray, np.ndarray, float]) -> list[np.ndarray]:
        texture, background, aspect = appearance
        return [render_frame(motion, f, texture, background, aspect) for f in range(len(motion.affine))]

    def make(self, name: str, image: str, rng: np.random.Generator) -> SyntheticClip:
        motion = random_motion(rng, self.options, image)
        texture, background, aspect = self.appearance(image, rng)
        if self.options.recolour and image in self.options.train_images:
            texture = recolour(texture, rng)
        return SyntheticClip(name, self.render(motion, (texture, background, aspect)), motion)


@dataclass
class SyntheticResult:
    """The dataset folder and the clips written per split."""

    out: Path
    train: list[Path] = field(default_factory=list)
    test: list[Path] = field(default_factory=list)


def _plan(options: SyntheticOptions) -> list[tuple[str, str, int]]:
    """(split, image, clip number) of every clip, in writing order."""
    plan = [("train", image, k) for image in options.train_images for k in range(options.train_clips)]
    return plan + [("test", image, k) for image in options.test_images for k in range(options.test_clips)]


def _write_clip(clip: SyntheticClip, destination: Path) -> None:
    """The clip's PNG frames and motion.json into ``destination``, published only when complete."""
    from ..io.atomic import atomic_output
    from ..io.image import save_png

    with atomic_output(destination, directory=True) as partial:
        for i, frame in enumerate(clip.frames):
            save_png(partial / f"{i:04d}.png", frame)
        (partial / MOTION_FILE).write_text(json.dumps(clip.motion.to_json()), encoding="utf-8")


def make_synthetic_dataset(out: str | Path, options: SyntheticOptions = SyntheticOptions(),
                           say: Callable[[str], None] = lambda text: None) -> SyntheticResult:
    """Write the dataset into ``out`` (``out/train/IMAGE-K``, ``out/test/IMAGE-K``; see the module's description).

    Each clip's randomness is ``numpy.random.default_rng((seed, index))`` (its place in the plan), so the same
    options give the same files. Clips that exist already are kept (a stopped run can be re-run)."""
    from tqdm.auto import tqdm

    if options.size < 16 or options.frames < 2:
        raise DatasetError(f"a synthetic dataset needs frames of 16 pixels or more and 2 frames or more per clip, "
                           f"got size {options.size}, {options.frames} frames")
    if not 0 <= options.rotation <= 90:
        raise DatasetError(f"a synthetic dataset's largest rotation must lie in [0, 90] degrees, "
                           f"got {options.rotation}")
    low, high = options.aspect
    if not 0.2 <= low <= high <= 1:
        raise DatasetError("a synthetic dataset's mask aspect must lie in [0.2, 1] (short over long axis, "
                           f"low <= high), got {low} to {high}")
    out = Path(out)
    maker = ClipMaker(options)
    result = SyntheticResult(out)
    plan = _plan(options)
    for index, (split, image, k) in enumerate(tqdm(plan, desc="synthetic clips", unit="clip",
                                                    disable=not options.progress)):
        if split not in options.splits:
            continue
        destination = out / split / f"{image}-{k}"
        if not destination.exists():
            _write_clip(maker.make(destination.name, image, np.random.default_rng((options.seed, index))), destination)
        getattr(result, split).append(destination)
    say(f"{out}: {len(result.train)} training clips ({len(options.train_images)} photos), {len(result.test)} "
        f"held-out clips ({', '.join(options.test_images)}), {options.frames} frames of {options.size}x{options.size}")
    return result


def iter_clips(folder: str | Path) -> Iterator[Path]:
    """The clip folders of a split folder that carry a motion file, in name order."""
    yield from sorted(p for p in Path(folder).iterdir() if (p / MOTION_FILE).is_file())


def random_vgg19(path: str | Path, layers: int = 1, seed: int = 0) -> Path:
    """Write a VGG19 ``features.*`` state dict (the convolutions up to relu``layers``_1) with random weights --
    He-normal (fan out) weights and zero biases -- loadable by :func:`fomm_lab.train.vgg.load_vgg19` (``--vgg19``).
    A perceptual loss on random convolution features still compares local structure at each pyramid scale; it is
    what the synthetic proof uses where the ImageNet file cannot be downloaded. Written atomically."""
    import torch
    from torch import nn

    from ..io.atomic import atomic_output
    from .vgg import FEATURE_LAYERS, feature_layout

    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(feature_layout()[: FEATURE_LAYERS[layers - 1] + 1]):
        if isinstance(layer, nn.Conv2d):
            fan_out = layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
            weight = torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2.0 / fan_out)
            state[f"features.{index}.weight"] = weight
            state[f"features.{index}.bias"] = torch.zeros(layer.out_channels)
    with atomic_output(Path(path)) as tmp:
        torch.save(state, tmp)
    return Path(path)


def names(paths: Sequence[Path]) -> list[str]:
    return [p.name for p in paths]
