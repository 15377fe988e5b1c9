"""The networks of the part swap: the co-part segmentation module, the reconstruction module (with the part
swap's blending) and the BiSeNet face parser. Parameter names follow the published checkpoints."""

from .bisenet import PARSER_CLASSES, BiSeNet, BiSeNetWidths
from .reconstruction import PartSwapGenerator, ReconstructionModule, segment_deformation, segment_visibility
from .segmentation import SegmentationModule, Segments

__all__ = [
    "PARSER_CLASSES",
    "BiSeNet",
    "BiSeNetWidths",
    "PartSwapGenerator",
    "ReconstructionModule",
    "SegmentationModule",
    "Segments",
    "segment_deformation",
    "segment_visibility",
]
