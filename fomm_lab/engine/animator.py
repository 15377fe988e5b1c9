"""Streaming animation of a source image by a driving video (paper Sec. 3.4), for any model family
(:mod:`fomm_lab.engine.family`)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..device import resolve_dtype
from ..errors import FommLabError, InferenceError, Remedy
from ..options import default
from .family import MotionModel
from .fast.backends import BACKENDS
from .fast.tune import measured_rates
from .fast.variants import inference_networks
from .frames import frames_to_tensor, tensor_to_frames
from .keypoints import Keypoints
from .smoothing import KeypointFilter


def check_finite(keypoints: Keypoints, what: str) -> Keypoints:
    """InferenceError when the keypoint detector gave NaN or infinite values (broken weights or input)."""
    bad = ~torch.isfinite(keypoints.value).all() or (
        keypoints.jacobian is not None and not torch.isfinite(keypoints.jacobian).all())
    if bad:
        raise InferenceError(f"the keypoint detector gave NaN or infinite keypoints for {what}: the checkpoint's "
                             "weights are broken (or the frame is); use another checkpoint")
    return keypoints


COMPILE_FLOAT32_CPU = ("compiling float32 on the CPU makes it no faster than eager (slower on every CPU kind measured, "
                       "docs/performance.md): it only adds a minute or more of compilation; compile pays in bfloat16 "
                       "on CPUs that have it natively, and on GPUs")
"""The warning of ``compile=True`` for float32 on the CPU."""


@dataclass(frozen=True)
class _Source:
    """Everything computed once per source image."""

    keypoints: Keypoints  # (1, K, .)
    state: object  # the family's per-source state (InferenceNetworks.prepare)


class Animator:
    """Animates one source image with the motion of driving frames, with a model of any family.

    ``Animator(model, relative=True, adapt_scale=True).animate(source, driving)`` yields one uint8
    (H, W, 3) frame per driving frame, consuming ``driving`` lazily: memory does not grow with the
    clip length. The source's keypoints and encoder features are computed once.

    relative:    transfer the driving motion relative to a reference driving frame (Eq. 9-10 of the
                 paper, the recommended mode); False uses the driving keypoints as they are (absolute;
                 TPSMM's ``standard`` mode).
    adapt_scale: scale relative motion by sqrt(area(source kp hull) / area(reference kp hull)) (TPSMM's
                 relative mode always does).
    avd:         TPSMM's ``avd`` mode: its AVD network combines the source's identity with the driving pose
                 (no reference frame; ``relative`` is ignored).
    The modes a model offers are ``model.modes``; flags that select none give a ValueError naming them.
    batch_size:  driving frames processed together (faster on GPUs).
    dtype:       ``auto`` (bfloat16 where the hardware computes it natively, float16 on other GPUs, else
                 float32; on a CPU tuned in both float32 and bfloat16 by ``fomm-lab tune``, bfloat16 only where
                 its measured rate beats float32's), float32 (exact), or bfloat16/float16 for the per-frame
                 networks (FOMM's keypoint detector too in bfloat16, its softmax and weighted sums staying
                 float32).
    smoothing:   strength of the One-Euro filter on the driving keypoints (0: off).
    Every default is the one of :data:`fomm_lab.options.OPTIONS`, as for the CLI, the notebook and jobs.
    backend:     ``torch`` (default), or ``openvino``: the networks' ONNX graphs run by OpenVINO
                 (``pip install fomm-lab[openvino]``; :mod:`fomm_lab.engine.fast.openvino`), in bfloat16
                 where the CPU supports it when ``dtype`` asks for it.
    float_output: yield float32 (H, W, 3) frames in [0, 1] instead of uint8.
    compile:     torch.compile the per-frame networks (faster after a compilation of a minute or more where it
                 pays: bfloat16 on CPUs with native bfloat16, GPUs; float32 on the CPU gains nothing and says so
                 with a warning; torch backend only).
    tune:        on the CPU, which exact form each fused convolution runs (:mod:`fomm_lab.engine.fast.tune`):
                 None (default) the forms measured fastest on this machine when ``fomm-lab tune`` (or an
                 earlier ``tune=True``) cached them for this CPU, thread count, torch version and precision, else
                 the fixed rule; True: measure what the cache lacks first (seconds), then use it; False: the
                 fixed rule. The choice belongs to the model's networks, shared by its Animators.

    The networks run in their family's inference form (``model.inference_networks``: for FOMM the exact fused
    rewrites of :mod:`fomm_lab.engine.fast`), equal to the checkpoint's networks up to float rounding.

    For a live loop use the stage methods: ``set_source(image)``, ``set_reference(frame)``,
    ``step(frame) -> frame``.
    """

    def __init__(
        self,
        model: MotionModel,
        *,
        relative: bool = default("motion.relative"),
        adapt_scale: bool = default("motion.adapt_scale"),
        avd: bool = default("motion.avd"),
        batch_size: int = default("runtime.batch_size"),
        dtype: str | torch.dtype = default("runtime.dtype"),
        float_output: bool = False,
        compile: bool = default("runtime.compile"),
        smoothing: float = default("motion.smoothing"),
        backend: str = default("runtime.backend"),
        tune: bool | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if compile and backend != "torch":
            raise ValueError("compile=True applies to the torch backend only (OpenVINO compiles its graphs itself)")
        mode = model.mode(relative=relative and not avd, adapt_scale=adapt_scale, avd=avd)
        self.model = model
        self.relative = mode.relative
        self.adapt_scale = mode.adapt_scale
        self.avd = mode.avd
        self.batch_size = batch_size
        rates = measured_rates(model.device) if dtype == "auto" and model.device.type == "cpu" else None
        self.dtype = resolve_dtype(dtype, model.device, rates)
        self.float_output = float_output
        self.smoothing = smoothing
        self.backend = backend
        self._nets = inference_networks(model, dtype=self.dtype, backend=backend, compile=compile, tune=tune,
                                        batch_size=batch_size)
        self.dtype = self._nets.dtype  # OpenVINO: float32 where the CPU has no native reduced precision
        if compile and model.device.type == "cpu" and self.dtype == torch.float32:
            warnings.warn(COMPILE_FLOAT32_CPU, stacklevel=2)
        self._compiled = compile
        self._source: _Source | None = None
        self._source_image: np.ndarray | None = None
        self._reference: Keypoints | None = None
        self._scale: float | None = None
        self._filter: KeypointFilter | None = None

    # -- tensors ---------------------------------------------------------------------------
    def _to_tensor(self, frames: list[np.ndarray]) -> torch.Tensor:
        return frames_to_tensor(frames, self.model.frame_size, self.model.device, self._nets.channels_last)

    def _keypoints(self, frames: list[np.ndarray], what: str) -> Keypoints:
        return self._detect(self._to_tensor(frames), what)

    def _detect(self, tensor: torch.Tensor, what: str) -> Keypoints:
        with self._autocast(self._nets.keypoint_dtype):
            return check_finite(self._nets.kp_detector(tensor), what)

    def _autocast(self, dtype: torch.dtype | None = None):
        return self._nets.autocast_to(self.model.device.type, dtype)

    # -- stages ----------------------------------------------------------------------------
    @torch.inference_mode()
    def set_source(self, image: np.ndarray) -> None:
        """Compute and keep the source's keypoints and features (once per source image: the same
        photo given again reuses them)."""
        image = np.asarray(image)
        if self._source is not None and self._source_image is not None and np.array_equal(image, self._source_image):
            return
        tensor = self._to_tensor([image])
        keypoints = self._detect(tensor, "the source image")
        self._source = _Source(keypoints, self._nets.prepare(tensor, keypoints))
        self._source_image = image.copy()
        self._scale = None

    @torch.inference_mode()
    def set_reference(self, frame: np.ndarray) -> None:
        """Use ``frame`` as the reference (initial) driving frame for relative motion; the keypoint
        smoothing starts afresh (the reference itself is never filtered)."""
        self._reference = self._keypoints([frame], "the reference driving frame")
        self._scale = None
        self._filter = None

    def reset_motion(self) -> None:
        """Forget the reference and the smoothing state (a new clip or camera session starts)."""
        self._reference = None
        self._scale = None
        self._filter = None

    @property
    def has_reference(self) -> bool:
        return self._reference is not None

    def _movement_scale(self) -> float:
        if self._scale is None:
            if self.relative and self._source is not None and self._reference is not None:
                self._scale = self.model.movement_scale(self._source.keypoints, self._reference,
                                                        adapt_scale=self.adapt_scale)
            else:
                self._scale = 1.0
        return self._scale

    @torch.inference_mode()
    def _predict(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        if self._source is None:
            raise ValueError("no source image: call set_source(image) first")
        if self.relative and self._reference is None:
            raise ValueError("relative motion needs a reference driving frame: call set_reference(frame) first")
        source = self._source
        kp_driving = self._smooth(self._keypoints(frames, "a driving frame"))
        kp_norm = self.model.transfer(source.keypoints, kp_driving, self._reference, relative=self.relative,
                                      scale=self._movement_scale(), avd=self.avd)
        with self._autocast():
            prediction = self._nets.generate(source.state, kp_norm)
        return tensor_to_frames(prediction, self.float_output)

    def _smooth(self, keypoints: Keypoints) -> Keypoints:
        """The driving keypoints through the temporal filter (strength ``smoothing``; 0: unchanged)."""
        if self.smoothing <= 0:
            return keypoints
        if self._filter is None:
            self._filter = KeypointFilter(self.smoothing)
        return self._filter(keypoints)

    def step(self, frame: np.ndarray) -> np.ndarray:
        """Animate the source with one driving frame (live loop). Uses the first frame as the
        reference when relative motion is on and none was set."""
        if self.relative and self._reference is None:
            self.set_reference(frame)
        return self._predict([frame])[0]

    # -- whole clip ------------------------------------------------------------------------
    def animate(
        self,
        source: np.ndarray,
        driving: Iterable[np.ndarray],
        best_frame: int | None = None,
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield the animated frames, one per driving frame, in order.

        best_frame: index of the driving frame used as the reference for relative motion (default
        the first). The paper's demo animates forward and backward from that frame; since every
        frame depends only on itself and the reference, streaming in order gives the same frames.
        Frames before ``best_frame`` are held until it arrives (memory bounded by its index).
        """
        self.set_source(source)
        self.reset_motion()
        reference_index = 0 if best_frame is None else int(best_frame)
        if reference_index < 0:
            raise ValueError(f"best_frame must be >= 0, got {best_frame}")
        frames = iter(driving)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="animating", unit="frame")
        try:
            pending: list[np.ndarray] = []
            if self.relative:
                head = list(itertools.islice(frames, reference_index + 1))
                if len(head) <= reference_index:
                    raise FommLabError(
                        f"best frame {reference_index} is past the end of the driving clip ({len(head)} frames)",
                        remedies=[Remedy(f"give a frame from 0 to {len(head) - 1} ({{}})", "motion.best_frame",
                                         len(head) - 1)])
                self.set_reference(head[reference_index])
                pending = head
            yield from self._batched(itertools.chain(pending, frames), bar)
        finally:
            if bar is not None:
                bar.close()

    def _batched(self, frames: Iterator[np.ndarray], bar) -> Iterator[np.ndarray]:
        while True:
            batch = list(itertools.islice(frames, self.batch_size))
            if not batch:
                return
            count = len(batch)
            if self._compiled and count < self.batch_size:
                batch += batch[-1:] * (self.batch_size - count)  # same shape: no second compilation
            yield from self._predict(batch)[:count]
            if bar is not None:
                bar.update(count)
