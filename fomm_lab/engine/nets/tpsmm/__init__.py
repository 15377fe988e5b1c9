"""The networks of the Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022), with the authors' parameter
names so that their checkpoints load with ``strict=True``."""

from .avd import AVDNetwork
from .bg_motion import BGMotionPredictor
from .dense_motion import DenseMotion, DenseMotionNetwork, SourceMotion, dropout_softmax
from .inpainting import InpaintingNetwork
from .keypoint_detector import KPDetector
from .tps import POINTS_PER_TPS, ThinPlateSpline

__all__ = [
    "AVDNetwork",
    "BGMotionPredictor",
    "DenseMotion",
    "DenseMotionNetwork",
    "InpaintingNetwork",
    "KPDetector",
    "POINTS_PER_TPS",
    "SourceMotion",
    "ThinPlateSpline",
    "dropout_softmax",
]
