"""Face enhancers around the networks: the pre- and post-processing of the reference applications.

- :class:`GPENEnhancer`: PaddleGAN 2.1.0's ``FaceEnhancement.enhance_from_batch`` as the First Order Motion
  app calls it, plus the app's ``astype(uint8)``: resize (INTER_AREA, short side 512) and centre crop,
  ``(x/255 - 0.5)/0.5``, GPEN, ``uint8(clip(y*0.5 + 0.5, 0, 1) * 255)`` (truncated), then the blend
  ``u8 * mask + (1 - mask) * face`` with PaddleGAN's soft rectangular mask, truncated again.
- :class:`GFPGANEnhancer`: GFPGANer's ``enhance(img, has_aligned=True, paste_back=False)`` on an aligned
  face: ``cv2.resize`` to 512 (INTER_LINEAR), ``(x/255 - 0.5)/0.5``, GFPGAN, ``clamp(-1, 1)``,
  ``round((y + 1)/2 * 255)``. Frames are RGB here (GFPGANer takes and returns BGR; the values are the same).
  Noise: the checkpoint's buffers (deterministic, the default) or seeded random noise drawn as GFPGANer
  draws it, one face after the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .gfpgan import GFPGANv1Clean, noise_shapes
from .gpen import GPEN

__all__ = [
    "FACE_SIZE", "FaceEnhancer", "GFPGANEnhancer", "GPENEnhancer", "gfpgan_postprocess", "gpen_postprocess",
    "paddle_mask", "resize_and_crop",
]

FACE_SIZE = 512
"""Both applications work on 512 x 512 faces."""


def paddle_mask(size: int = FACE_SIZE) -> np.ndarray:
    """PaddleGAN's blend mask, (size, size) float32: an anti-aliased filled rectangle (26 .. 486) blurred twice
    with a 101 x 101 Gaussian of sigma 11. It stays inside (0, 1): 0.0102 at the corners, 0.99999988 inside."""
    mask = np.zeros((size, size), np.float32)
    cv2.rectangle(mask, (26, 26), (486, 486), (1, 1, 1), -1, cv2.LINE_AA)
    blurred = cv2.GaussianBlur(mask, (101, 101), 11)
    return cv2.GaussianBlur(blurred, (101, 101), 11)


def resize_and_crop(frame: np.ndarray, dim: int = FACE_SIZE) -> np.ndarray:
    """PaddleGAN's ``resize_and_crop_image``: INTER_AREA resize so the short side is ``dim`` (the long one
    ``int(long * dim / short)``), then a centre crop to ``dim`` x ``dim``. frame: (H, W, C)."""
    height, width = frame.shape[:2]
    if height > width:
        resized = cv2.resize(frame, (dim, int(height * (dim / float(width)))), interpolation=cv2.INTER_AREA)
        top = (resized.shape[0] - resized.shape[1]) // 2
        return resized[top:top + dim]
    resized = cv2.resize(frame, (int(width * (dim / float(height))), dim), interpolation=cv2.INTER_AREA)
    left = (resized.shape[1] - resized.shape[0]) // 2
    return resized[:, left:left + dim]


def gpen_postprocess(output: np.ndarray, faces: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PaddleGAN's output step and the app's cast, in numpy float32 and in the reference's order.

    output: GPEN's image (N, 3, 512, 512) float32; faces: the network's input faces (N, 512, 512, 3) float32 in
    [0, 255]; mask: (512, 512) float32. Returns (N, 512, 512, 3) uint8.
    """
    image = np.clip(output.transpose(0, 2, 3, 1) * np.float32(0.5) + np.float32(0.5), 0, 1) * np.float32(255.0)
    u8 = image.astype(np.uint8)  # Paddle's cast truncates
    weight = mask[None, :, :, None]
    blended = u8 * weight + (1 - weight) * faces
    return np.clip(blended, 0, 255).astype(np.uint8)  # the app's astype truncates (clip only guards overflow)


def gfpgan_postprocess(output: np.ndarray) -> np.ndarray:
    """basicsr's ``tensor2img(min_max=(-1, 1))`` without the colour swap: (N, 3, H, W) float32 -> (N, H, W, 3)
    uint8, ``round((clip(y, -1, 1) + 1) / 2 * 255)`` with numpy's round-half-to-even."""
    image = (np.clip(output, -1, 1) + np.float32(1)) / np.float32(2)
    return np.round(image.transpose(0, 2, 3, 1) * np.float32(255.0)).astype(np.uint8)


def _frames(frames: np.ndarray) -> np.ndarray:
    """Validate (N, H, W, 3) RGB frames, uint8 or float in [0, 255]."""
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy array (N, H, W, 3), not {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have the shape (N, H, W, 3) (RGB), not {frames.shape}")
    if frames.dtype != np.uint8 and frames.dtype.kind != "f":
        raise ValueError(f"frames must be uint8 or floating point in [0, 255], not {frames.dtype}")
    return frames


def _batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def _target_size(size: int | tuple[int, int] | None) -> tuple[int, int]:
    if size is None:
        return FACE_SIZE, FACE_SIZE
    width, height = (size, size) if isinstance(size, int) else size
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, not {size}")
    return int(width), int(height)


class FaceEnhancer:
    """A face enhancer on a device. Use :func:`fomm_lab.enhance.load_enhancer` to make one.

    ``enhance(frames)`` is the reference application's output; ``enhance_faces`` adds a strength and an
    output size. ``dtype`` bfloat16 runs the network under autocast (worth it only on hardware with native
    bfloat16: see :func:`fomm_lab.device.cpu_has_native_bfloat16`).
    """

    kind = ""

    def __init__(self, network: nn.Module, checkpoint: str | Path, *, device: torch.device,
                 dtype: torch.dtype = torch.float32, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, not {dtype}")
        self.network = network.to(device)
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.checkpoint)!r}, device={self.device}, dtype={self.dtype}, "
                f"batch_size={self.batch_size})")

    def enhance(self, frames: np.ndarray) -> np.ndarray:
        """Enhance (N, H, W, 3) RGB frames (uint8, or float in [0, 255]); returns (N, 512, 512, 3) uint8 RGB."""
        return self._enhance(_frames(frames))[0]

    def enhance_faces(self, frames: np.ndarray, size: int | tuple[int, int] | None = None,
                      strength: float = 1.0) -> np.ndarray:
        """Enhanced faces blended with the un-enhanced ones and resized.

        strength: 1 = :meth:`enhance` exactly, 0 = the input face as the enhancer sees it (resized to 512),
        in between ``round(s * enhanced + (1 - s) * face)``. size: the output's side (int) or (width,
        height); None keeps 512. Shrinking uses INTER_AREA, enlarging INTER_CUBIC. Returns (N, h, w, 3) uint8.
        """
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], not {strength}")
        width, height = _target_size(size)
        enhanced, faces = self._enhance(_frames(frames))
        if strength < 1.0:
            mixed = np.float32(strength) * enhanced + np.float32(1.0 - strength) * faces.astype(np.float32)
            enhanced = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        if (width, height) == (FACE_SIZE, FACE_SIZE):
            return enhanced
        interpolation = cv2.INTER_AREA if width <= FACE_SIZE and height <= FACE_SIZE else cv2.INTER_CUBIC
        out = np.empty((len(enhanced), height, width, 3), np.uint8)
        for index, face in enumerate(enhanced):
            out[index] = cv2.resize(face, (width, height), interpolation=interpolation)
        return out

    def _enhance(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(enhanced (N, 512, 512, 3) uint8, the input faces at 512 (N, 512, 512, 3) float32 or uint8)."""
        raise NotImplementedError

    def _forward(self, x: np.ndarray, noise: Sequence[torch.Tensor] | None = None) -> np.ndarray:
        """The network on normalised faces (N, 3, 512, 512) float32 -> its image, float32 numpy."""
        tensor = torch.from_numpy(x).to(self.device)
        autocast = self.dtype != torch.float32
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            out = self._image(tensor, noise)
        return out.float().cpu().numpy()

    def _image(self, x: torch.Tensor, noise: Sequence[torch.Tensor] | None) -> torch.Tensor:
        return self.network(x)


class GPENEnhancer(FaceEnhancer):
    """GPEN as PaddleGAN's First Order Motion app runs it (see the module's description)."""

    kind = "gpen"

    def __init__(self, network: GPEN, checkpoint: str | Path, *, device: torch.device,
                 dtype: torch.dtype = torch.float32, batch_size: int = 1) -> None:
        super().__init__(network, checkpoint, device=device, dtype=dtype, batch_size=batch_size)
        self.mask = paddle_mask()

    def _enhance(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = len(frames)
        enhanced = np.empty((count, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        faces = np.empty((count, FACE_SIZE, FACE_SIZE, 3), np.float32)
        for part in _batches(count, self.batch_size):
            faces[part] = [resize_and_crop(frame.astype(np.float32, copy=False)) for frame in frames[part]]
            x = (faces[part].transpose(0, 3, 1, 2) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
            enhanced[part] = gpen_postprocess(self._forward(np.ascontiguousarray(x)), faces[part], self.mask)
        return enhanced, faces


class GFPGANEnhancer(FaceEnhancer):
    """GFPGAN v1.3/v1.4 as GFPGANer runs it on an aligned face (see the module's description).

    noise: ``"fixed"`` (the checkpoint's noise buffers, deterministic) or ``"random"`` (drawn from a generator
    seeded with ``seed``, or from fresh entropy when it is None). Random noise is drawn per face in order,
    layer by layer, as consecutive GFPGANer calls draw it after ``torch.manual_seed(seed)``.
    """

    kind = "gfpgan"

    def __init__(self, network: GFPGANv1Clean, checkpoint: str | Path, *, device: torch.device,
                 dtype: torch.dtype = torch.float32, batch_size: int = 1, noise: str = "fixed",
                 seed: int | None = None) -> None:
        if noise not in ("fixed", "random"):
            raise ValueError(f"noise must be 'fixed' or 'random', not {noise!r}")
        super().__init__(network, checkpoint, device=device, dtype=dtype, batch_size=batch_size)
        self.config = network.config
        self.noise = noise
        self.generator: torch.Generator | None = None
        if noise == "random":
            self.generator = torch.Generator()
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(seed)

    def _draw_noise(self, count: int) -> list[torch.Tensor] | None:
        """One noise tensor per decoder layer, (count, 1, r, r): each face's 2L-3 draws, face after face."""
        if self.generator is None:
            return None
        shapes = noise_shapes(self.config)
        draws = [[torch.empty(shape).normal_(generator=self.generator) for shape in shapes] for _ in range(count)]
        return [torch.cat([face[layer] for face in draws]).to(self.device) for layer in range(len(shapes))]

    def _enhance(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = len(frames)
        enhanced = np.empty((count, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        faces = np.empty((count, FACE_SIZE, FACE_SIZE, 3), frames.dtype if frames.dtype == np.uint8 else np.float32)
        for part in _batches(count, self.batch_size):
            for index, frame in zip(range(part.start, part.stop), frames[part]):
                if frame.dtype != np.uint8:
                    frame = frame.astype(np.float32, copy=False)
                faces[index] = frame if frame.shape[:2] == (FACE_SIZE, FACE_SIZE) else \
                    cv2.resize(frame, (FACE_SIZE, FACE_SIZE))
            x = (faces[part].astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0) - np.float32(0.5)) \
                / np.float32(0.5)
            noise = self._draw_noise(part.stop - part.start)
            enhanced[part] = gfpgan_postprocess(self._forward(np.ascontiguousarray(x), noise))
        return enhanced, faces

    def _image(self, x: torch.Tensor, noise: Sequence[torch.Tensor] | None) -> torch.Tensor:
        return self.network(x, noise=noise)[0]
