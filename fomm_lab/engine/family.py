"""The small interface a motion-model family implements, and what the Animator runs.

A *family* is one published kind of image-animation model: the First Order Motion Model (FOMM, Siarohin et al.,
NeurIPS 2019, with PaddleGAN's variants) and the Thin-Plate Spline Motion Model (TPSMM, Zhao & Zhang, CVPR 2022).
Each animates a source image S with a driving frame D the same way:

1. ``detect``: motion descriptors of a frame (FOMM: K keypoints with local jacobians; TPSMM: K groups of
   5 thin-plate-spline control points), as :class:`~fomm_lab.engine.keypoints.Keypoints`;
2. ``transfer``: the descriptors that move S like D moves relative to a reference driving frame D1 (the
   family's relative / absolute / adapt-scale rules; TPSMM's AVD network);
3. ``prepare`` once per source, then ``generate`` per driving frame: the next frame from S and the
   transferred descriptors.

The streaming :class:`~fomm_lab.engine.animator.Animator`, the live loop, smoothing (on the descriptors), the
pipeline and the benchmarks are written against this interface only.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..geometry import Size
from .keypoints import Keypoints
from .motion import movement_scale, normalize_keypoints


@dataclass(frozen=True)
class MotionMode:
    """One way of transferring motion, as a family offers it.

    label: how shells name it (``relative``, ``absolute+adapt``, ``avd`` ...); the three flags are the
    :class:`~fomm_lab.engine.animator.Animator`'s arguments that select it.
    """

    label: str
    relative: bool
    adapt_scale: bool
    avd: bool = False


@dataclass(frozen=True, kw_only=True)
class InferenceNetworks(abc.ABC):
    """What the Animator runs for one model in one precision (torch networks, or another backend's graphs).

    kp_detector: (N, 3, H, W) float32 in [0, 1] -> Keypoints (N, K, .), per driving frame.
    prepare:     (source (1, 3, H, W), its Keypoints) -> the family's per-source state, once per source.
    generate:    (that state, transferred Keypoints (N, K, .)) -> prediction (N, 3, H, W) in [0, 1].
    dtype:       precision of prepare/generate (run under autocast when not float32 and ``autocast``);
    keypoint_dtype: that of kp_detector. channels_last: inputs are given in channels-last layout.
    """

    kp_detector: Callable
    dtype: torch.dtype = torch.float32
    keypoint_dtype: torch.dtype = torch.float32
    channels_last: bool = False
    autocast: bool = True
    backend: str = "torch"

    def autocast_to(self, device_type: str, dtype: torch.dtype | None = None) -> AbstractContextManager:
        """torch.autocast to ``dtype`` (default the networks' precision), or nothing for float32."""
        dtype = self.dtype if dtype is None else dtype
        if dtype == torch.float32 or not self.autocast:
            return nullcontext()
        return torch.autocast(device_type=device_type, dtype=dtype)

    @abc.abstractmethod
    def prepare(self, source: torch.Tensor, keypoints: Keypoints) -> Any:
        """The per-source state ``generate`` needs (computed once per source image)."""

    @abc.abstractmethod
    def generate(self, state: Any, keypoints: Keypoints) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1]: the source moved to the transferred keypoints (call under ``autocast_to``)."""


class MotionModel(abc.ABC):
    """A loaded model of one family, in eval mode on one device (implementations are dataclasses).

    family: the family's name (``fomm``, ``tpsmm``); modes: the motion modes it offers (the notebook animates each).
    config: the family's parsed config; name: the registry name or the config's stem; checkpoint: the weights
    file (None: random weights); ``_inference``: the cache of inference variants (:meth:`variant`).
    """

    family: ClassVar[str]
    modes: ClassVar[tuple[MotionMode, ...]]

    config: Any
    device: torch.device
    name: str
    checkpoint: Path | None
    _inference: dict

    @property
    @abc.abstractmethod
    def frame_size(self) -> Size:
        """The frame size the model works at; every input is brought to it."""

    @abc.abstractmethod
    def inference_networks(self, *, dtype: torch.dtype = torch.float32, compile: bool = False) -> InferenceNetworks:
        """The networks in their inference form for ``dtype`` (built once per variant, shared by Animators)."""

    def variant(self, key: object, build: Callable[[], InferenceNetworks]) -> InferenceNetworks:
        """The inference networks cached under ``key`` (a backend's or a precision's), built the first time."""
        if key not in self._inference:
            self._inference[key] = build()
        return self._inference[key]

    def mode(self, *, relative: bool, adapt_scale: bool, avd: bool = False) -> MotionMode:
        """The offered mode these flags select; ValueError naming the offered ones otherwise."""
        for mode in self.modes:
            if (mode.relative, mode.avd) == (relative, avd) and (mode.adapt_scale == adapt_scale or not relative):
                return mode
        offered = ", ".join(m.label for m in self.modes)
        raise ValueError(f"{self.family} models have no mode relative={relative}, adapt_scale={adapt_scale}, "
                         f"avd={avd}; they offer: {offered}")

    def movement_scale(self, source: Keypoints, reference: Keypoints, *, adapt_scale: bool) -> float:
        """The factor s of relative motion: sqrt(hull area of the source's keypoints / the reference's) when
        adapting the scale (paper Sec. 3.4), else 1."""
        return movement_scale(source, reference) if adapt_scale else 1.0

    def transfer(self, source: Keypoints, driving: Keypoints, reference: Keypoints | None, *, relative: bool,
                 scale: float, avd: bool = False) -> Keypoints:
        """Driving keypoints (N, K, .) moved onto the source (1, K, .): relative to ``reference`` (1, K, .) and
        scaled by ``scale``, or absolute. The default is FOMM's rule (Eq. 9-10, jacobians included when the
        keypoints have them); families with other rules override it."""
        if avd:
            raise ValueError(f"{self.family} models have no AVD network")
        return normalize_keypoints(source, driving, reference, relative=relative, scale=scale)
