"""The three FOMM networks (keypoint detector, dense motion network, occlusion-aware generator).

Parameter and buffer names follow the official checkpoints, so their state dicts load with
``strict=True``.
"""

from .dense_motion import DenseMotionNetwork, SourceMotionCache
from .generator import OcclusionAwareGenerator
from .keypoint_detector import KPDetector

__all__ = ["DenseMotionNetwork", "KPDetector", "OcclusionAwareGenerator", "SourceMotionCache"]
