"""Media in and out: ffmpeg, probing, streaming video, images, resizing, exports, atomic writes.

The main names are importable from here: ``from fomm_lab.io import read_image, read_video, write_video``.
"""

from .export import make_gif, save_png_frames, side_by_side
from .image import read_image
from .probe import VideoInfo, probe_video
from .resize import resize_image, resize_to_model
from .video import VideoReader, VideoWriter, mux_audio, read_video, write_video

__all__ = [
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "make_gif",
    "mux_audio",
    "probe_video",
    "read_image",
    "read_video",
    "resize_image",
    "resize_to_model",
    "save_png_frames",
    "side_by_side",
    "write_video",
]
