"""Building a :class:`~fomm_lab.swap.swapper.Swapper` from the segment model's yaml and weight files."""

from __future__ import annotations

from pathlib import Path

import torch

from ..device import pick_device, resolve_dtype
from ..errors import CheckpointError
from .config import SegmentConfig, load_segment_config
from .nets.bisenet import PARSER_CLASSES, BiSeNet, BiSeNetWidths
from .nets.reconstruction import PartSwapGenerator
from .nets.segmentation import SegmentationModule
from .swapper import PARSER_SIZE, FommAlignment, Swapper
from .weights import (
    dense_motion_params,
    fomm_states,
    load_state,
    parser_state,
    read_weights_file,
    segment_states,
)


def build_segmentation_module(config: SegmentConfig, *, segmentation: bool = True, num_segments: int | None = None,
                              estimate_affine_part: bool | None = None) -> SegmentationModule:
    """The segmentation module the yaml describes (``segmentation=False``: without its segmentation head, the
    keypoint part that runs a FOMM keypoint detector's weights)."""
    params = config.segmentation
    return SegmentationModule(
        block_expansion=params.block_expansion, num_segments=num_segments or config.num_segments,
        num_channels=config.common.num_channels, max_features=params.max_features, num_blocks=params.num_blocks,
        temperature=params.temperature, scale_factor=params.scale_factor, segmentation=segmentation,
        estimate_affine_part=(config.common.estimate_affine_part if estimate_affine_part is None
                              else estimate_affine_part))


def build_generator(config: SegmentConfig, *, dense_motion: dict | None = None) -> PartSwapGenerator:
    """The reconstruction module the yaml describes, with the part swap's blend downscaling of the parser's
    512x512 masks (scale feature_size / 512: 0.125 at 256x256) and, with ``dense_motion``, FOMM's dense
    motion network."""
    params = config.reconstruction
    return PartSwapGenerator(
        num_channels=config.common.num_channels, block_expansion=params.block_expansion,
        max_features=params.max_features, num_down_blocks=params.num_down_blocks,
        num_bottleneck_blocks=params.num_bottleneck_blocks, estimate_visibility=params.estimate_visibility,
        blend_scale=config.feature_size / PARSER_SIZE, dense_motion=dense_motion)


def load_parser(path: str | Path) -> BiSeNet:
    """The BiSeNet face parser with the weights of ``path`` (``79999_iter.pth``), in eval mode; its widths are
    read from the file. CheckpointError when the file is not the 19-class parser."""
    path = Path(path)
    state = parser_state(path, read_weights_file(path, "face parser weights"))
    try:
        widths = BiSeNetWidths.from_state(state)
    except KeyError as exc:
        raise CheckpointError(f"face parser weights {path} lack {exc.args[0]}: the file is not a complete BiSeNet; "
                              "download 79999_iter.pth again") from exc
    classes = int(state["conv_out.conv_out.weight"].shape[0])
    if classes != len(PARSER_CLASSES):
        raise CheckpointError(f"face parser weights {path} predict {classes} classes, not the {len(PARSER_CLASSES)} "
                              "CelebAMask-HQ classes of 79999_iter.pth; use that file")
    parser = BiSeNet(classes, widths)
    load_state(parser, state, path, "face parser")
    return parser.eval()


def load_fomm_alignment(config: SegmentConfig, path: str | Path) -> FommAlignment:
    """The FOMM-aligned mode's networks from a First Order Motion Model checkpoint: its keypoint detector in a
    segmentation module without segmentation head (the yaml's widths, 10 keypoints), its generator's
    encoder-decoder (the yaml's widths) and its dense motion network (widths read from the file)."""
    path = Path(path)
    kp_state, generator_state = fomm_states(path, read_weights_file(path, "motion checkpoint"))
    num_kp = int(kp_state["shift.weight"].shape[0])
    keypoints = build_segmentation_module(config, segmentation=False, num_segments=num_kp,
                                          estimate_affine_part="affine.weight" in kp_state)
    load_state(keypoints, kp_state, path, "kp_detector")
    generator = build_generator(config, dense_motion=dense_motion_params(generator_state, path))
    load_state(generator, generator_state, path, "generator")
    return FommAlignment(keypoints.eval(), generator.eval(), path)


def load_swapper(config: str | Path, checkpoint: str | Path, parser: str | Path | None = None,
                 motion_checkpoint: str | Path | None = None, *, device: str | torch.device | None = "cpu",
                 dtype: str | torch.dtype = "float32", batch_size: int = 1) -> Swapper:
    """A :class:`~fomm_lab.swap.swapper.Swapper` ready to swap parts.

    config: the segment model's yaml in the authors' layout (``vox-256-sem-10segments.yaml`` ...);
    checkpoint: its weights (``vox-10segments.pth.tar`` ...) in train.py's layout (reconstruction_module,
    segmentation_module) or FOMM's (generator, kp_detector with semantic_seg); parser: the BiSeNet face
    parser's ``79999_iter.pth``, needed for supervised swaps; motion_checkpoint: a 10-keypoint First Order
    Motion Model checkpoint (``vox-cpk.pth.tar``) for the FOMM-aligned mode. device: a torch device (None:
    the best available); dtype: "float32", "bfloat16" (autocast) or "auto"; batch_size: target frames per
    forward pass. ConfigError / CheckpointError say which file is wrong and what to give instead.
    """
    segment_config = load_segment_config(config)
    path = Path(checkpoint)
    segmentation_state, reconstruction_state = segment_states(path, read_weights_file(path, "segment checkpoint"))
    segmenter = build_segmentation_module(segment_config)
    load_state(segmenter, segmentation_state, path, "segmentation module")
    generator = build_generator(segment_config)
    load_state(generator, reconstruction_state, path, "reconstruction module", ignore=("dense_motion_network.",))
    face_parser = load_parser(parser) if parser is not None else None
    fomm = load_fomm_alignment(segment_config, motion_checkpoint) if motion_checkpoint is not None else None
    chosen = pick_device(device)
    if fomm is not None:
        fomm = FommAlignment(fomm.keypoints.to(chosen), fomm.generator.to(chosen), fomm.checkpoint)
    return Swapper(segment_config, segmenter.eval().to(chosen), generator.eval().to(chosen),
                   parser=face_parser.to(chosen) if face_parser is not None else None, fomm=fomm, device=chosen,
                   dtype=resolve_dtype(dtype, chosen), batch_size=batch_size, checkpoint=path)
