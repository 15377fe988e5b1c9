"""Faces: detection (face-alignment or OpenCV), photo crops, video face tracks and crops, paste-back."""

from .crop import DEFAULT_PADDING, PhotoCrop, crop_photo
from .detect import FaceAlignmentDetector, FaceDetector, HaarDetector, get_detector, get_landmarker
from .paste import paste_back
from .track import CropPlan, FaceTracker, Track, plan_video_crop

__all__ = [
    "DEFAULT_PADDING",
    "CropPlan",
    "FaceAlignmentDetector",
    "FaceDetector",
    "FaceTracker",
    "HaarDetector",
    "PhotoCrop",
    "Track",
    "crop_photo",
    "get_detector",
    "get_landmarker",
    "paste_back",
    "plan_video_crop",
]
