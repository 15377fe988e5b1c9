"""Bilinear sampling of channels-last feature maps in their own precision, as a weighted gather.

``F.grid_sample`` on the CPU samples NCHW float32 maps: a bfloat16 channels-last map has to be copied to float32,
sampled, and the result copied back to its dtype and layout, two transposing copies as costly as the sampling
itself. In channels-last memory a map of (N, C, H, W) is a table of N*H*W rows of C values, and bilinear sampling
at a point is the sum of four of its rows, weighted by the bilinear weights: one ``embedding_bag`` over bags of
four rows, whose output rows are the sampled map in channels-last layout. A per-point factor (an occlusion mask)
multiplies the weights, so warping and masking are one pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gather_applies(features: torch.Tensor) -> bool:
    """True for the maps :func:`sample_channels_last` is meant for: (N, C, H, W) in a reduced precision, in
    channels-last layout, on the CPU (float32 maps keep ``grid_sample``, bit for bit)."""
    return (features.device.type == "cpu" and features.dim() == 4 and features.dtype in (torch.bfloat16, torch.float16)
            and features.is_contiguous(memory_format=torch.channels_last))


def sample_channels_last(features: torch.Tensor, grid: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True) * scale`` up to
    rounding, computed in ``features``' dtype and layout.

    features: (1 or N, C, H, W) channels-last; grid: (N, h, w, 2) float32, x then y in [-1, 1] (-1 the centre of the
    first pixel, 1 that of the last: align_corners=True); scale: None or (N, 1, h, w), a factor per output point.
    Returns (N, C, h, w) in ``features``' dtype, channels-last. The bilinear weights (times ``scale``) are computed in
    float32 and rounded to ``features``' dtype; corners outside the map weigh zero (zero padding).
    """
    batch, channels, height, width = features.shape
    count, out_h, out_w = grid.shape[:3]
    if batch not in (1, count):
        raise ValueError(f"sample_channels_last: {batch} feature maps for {count} grids (give 1 or {count})")
    grid = grid.float()
    # align_corners=True: -1 -> 0, 1 -> size - 1, the same arithmetic as grid_sample's
    x = (grid[..., 0] + 1) / 2 * (width - 1)
    y = (grid[..., 1] + 1) / 2 * (height - 1)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    base = (torch.arange(count, device=grid.device) * (height * width if batch > 1 else 0)).view(count, 1, 1)
    rows, weights = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            rows.append(base + yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1))
            weights.append(wx * wy * inside)
    weight = torch.stack(weights, dim=-1)
    if scale is not None:
        weight = weight * scale.float().reshape(count, out_h, out_w, 1)
    table = features.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    sampled = F.embedding_bag(torch.stack(rows, dim=-1).reshape(-1, 4), table, mode="sum",
                              per_sample_weights=weight.reshape(-1, 4).to(features.dtype))
    return sampled.view(count, out_h, out_w, channels).permute(0, 3, 1, 2)
