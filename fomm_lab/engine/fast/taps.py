"""A k x k convolution with few output channels as one matrix product and k^2 shifted sums.

For a stride-1 convolution with "same" zero padding p = (k - 1) / 2,

    out[o, y, x] = b[o] + sum_{dy, dx} P[(o, dy, dx), y + dy - p, x + dx - p],   P = W' X,

where W' (Cout * k * k, Cin) is the weight with its taps as rows and X (Cin, H * W) the input: every input pixel's
contribution to every tap is one matrix product, and the output is the sum of the k^2 tap planes of P, each
shifted by its offset (zero outside the map). The products are the convolution's own and the order of the sums
changes; the tap sums run in float32, but in bfloat16 / float16 each tap's product is rounded to that precision
once (the matrix product's output), so the error is up to twice that of oneDNN's convolution, which rounds only
its output (tests/engine/test_taps.py).

oneDNN's direct convolution vectorises over output channels, so a layer with one to a few of them (the occlusion
masks' 7x7 convolutions to 1 channel, the generators' final 7x7 convolution to 3) leaves most of each vector
empty; the matrix product is fully dense, and the shifted sums are k^2 passes over maps of Cout channels.
docs/performance.md measures it.
"""

from __future__ import annotations

import torch

TAPS_MAX_OUT_CHANNELS = 4
"""Convolutions with at most this many output channels can run by taps (:func:`taps_shape_applies`)."""

BAND_BYTES = 8 << 20
"""Rows of the input go through the product and the shifted sums in bands whose tap planes P take about this
many bytes, so that each band's planes are summed while still in cache (and the whole P of a large map is never
held)."""


def taps_shape_applies(weight_shape: tuple[int, ...], padding: object, stride: object, dilation: object,
                       groups: int) -> bool:
    """True for a convolution :func:`conv_by_taps` computes: square odd k x k kernel (k >= 3), padding (k - 1) / 2,
    stride 1, no dilation, no groups, at most :data:`TAPS_MAX_OUT_CHANNELS` output channels."""
    cout, _, kh, kw = weight_shape
    same = padding == kh // 2 or padding == (kh // 2, kh // 2)
    plain = stride in (1, (1, 1)) and dilation in (1, (1, 1)) and groups == 1
    return kh == kw and kh % 2 == 1 and kh >= 3 and same and plain and cout <= TAPS_MAX_OUT_CHANNELS


def tap_rows(weight: torch.Tensor) -> torch.Tensor:
    """W' of a (Cout, Cin, k, k) weight: (Cout * k * k, Cin), row (o, dy, dx) the tap's weights."""
    cout, cin, kh, kw = weight.shape
    return weight.permute(0, 2, 3, 1).reshape(cout * kh * kw, cin)


def conv_by_taps(x: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor, kernel: int) -> torch.Tensor:
    """The "same" convolution of (N, Cin, H, W) ``x`` (either memory layout) with the weight whose
    :func:`tap_rows` are ``rows`` (in x's dtype) and ``bias`` (Cout,) -> (N, Cout, H, W) in x's dtype and layout.
    """
    n, cin, h, w = x.shape
    cout, k, p = bias.shape[0], kernel, kernel // 2
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    full = bias.float().view(1, cout, 1, 1).expand(n, cout, h + 2 * p, w + 2 * p).contiguous()
    band = max(1, BAND_BYTES // (rows.shape[0] * n * w * x.element_size()))
    for top in range(0, h, band):
        r = min(band, h - top)
        part = x[:, :, top:top + r]
        if channels_last:  # (N*r*W, Cin) rows are the pixels: P as (T, N, r, W)
            taps = (rows @ part.permute(0, 2, 3, 1).reshape(n * r * w, cin).t()).view(cout, k, k, n, r, w)
            taps = taps.permute(3, 0, 1, 2, 4, 5)
        else:
            taps = torch.matmul(rows, part.reshape(n, cin, r * w)).view(n, cout, k, k, r, w)
        for dy in range(k):
            for dx in range(k):  # input row top + i feeds output row top + i + p - dy (full row top + i + 2p - dy)
                full[:, :, top + 2 * p - dy:top + 2 * p - dy + r, 2 * p - dx:2 * p - dx + w].add_(taps[:, :, dy, dx])
    out = torch.empty((n, cout, h, w), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return out.copy_(full[:, :, p:p + h, p:p + w])
