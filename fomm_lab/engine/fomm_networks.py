"""FOMM's inference networks as the Animator runs them: the family's :class:`~.family.InferenceNetworks`, made
by the torch variants (:mod:`fomm_lab.engine.fast.variants`) and OpenVINO (:mod:`fomm_lab.engine.fast.openvino`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .family import InferenceNetworks
from .keypoints import Keypoints
from .nets import SourceMotionCache


@dataclass(frozen=True, kw_only=True)
class FommNetworks(InferenceNetworks):
    """FOMM's networks as the Animator runs them (the torch networks, or another backend's graphs).

    kp_detector:    (N, 3, H, W) float32 in [0, 1] -> Keypoints (N, K, .), per driving frame.
    encode:         source (1, 3, H, W) -> generator features (1, F, h', w'), once per source.
    prepare_motion: (source (1, 3, H, W), its Keypoints) -> SourceMotionCache, once per source.
    dense_motion:   (SourceMotionCache, Keypoints (N, K, .)) -> (deformation (N, h, w, 2), occlusion (N, 1, h, w)
                    or None), per driving frame (Eq. 4-8).
    decode:         (features, deformation, occlusion) -> prediction (N, 3, H, W) in [0, 1], per driving frame.
    """

    encode: Callable
    prepare_motion: Callable
    dense_motion: Callable
    decode: Callable

    def prepare(self, source: torch.Tensor, keypoints: Keypoints) -> FommSource:
        motion = self.prepare_motion(source, keypoints)
        with self.autocast_to(source.device.type):
            features = self.encode(source)
        return FommSource(features, motion)

    def generate(self, state: FommSource, keypoints: Keypoints) -> torch.Tensor:
        deformation, occlusion = self.dense_motion(state.motion, keypoints)
        return self.decode(state.features, deformation, occlusion)


@dataclass(frozen=True)
class FommSource:
    """What FOMM computes once per source image: the generator encoder's features (1, F, h', w') and the dense
    motion network's source-side inputs."""

    features: torch.Tensor
    motion: SourceMotionCache
