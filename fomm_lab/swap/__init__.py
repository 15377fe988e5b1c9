"""Part swap (face swap) with the motion-supervised co-part segmentation model (Siarohin et al., ICPR 2020)
and, for supervised masks, zllrunning's BiSeNet face parser.

``load_swapper(config, checkpoint, parser=None, motion_checkpoint=None)`` builds a :class:`Swapper`;
``Swapper.swap(source, target, parts=[...], supervised=..., hard=..., source_segmentation=...)`` yields the
swapped 256x256 frames (before any paste-back).
"""

from .config import SegmentConfig, load_segment_config
from .loader import load_parser, load_swapper
from .nets.bisenet import PARSER_CLASSES
from .swapper import SwapOptions, Swapper, SwapResult

__all__ = [
    "PARSER_CLASSES",
    "SegmentConfig",
    "SwapOptions",
    "SwapResult",
    "Swapper",
    "load_parser",
    "load_segment_config",
    "load_swapper",
]
