"""Winograd's F(2x2, 3x3) for 3x3 convolutions in bfloat16, channels-last, on the CPU.

Lavin & Gray (CVPR 2016): each 2x2 output tile of a 3x3 convolution is A^T [(G w G^T) * (B^T d B)] A over the
4x4 input tile d around it, with

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]],
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]],

so per tile and channel pair 16 multiplications replace 36 (2.25x fewer); summed over the input channels they
are one batched matrix product over the 16 tile positions, M[t] = V[t] @ U[t] with V = B^T d B (tiles, Cin) and
U = G w G^T (Cin, Cout).

B^T and A^T hold only 0 and +-1, so the transforms here are sums and differences of strided views of the
channels-last map (whole channel vectors, at memory speed) instead of matrix products, which the float32
Winograd of :mod:`.winograd` uses and which in bfloat16 cost as much as the convolution itself. The
transformed tiles and their products are rounded to the map's precision: the result is within a few rounding
steps of the direct convolution (tests/engine/test_winograd_f2.py bounds it). Where it pays depends on the
CPU: the untuned rule runs it on wide layers of CPUs with AVX512-BF16 and no AMX
(:func:`~.conv.winograd_f2_by_default`), the tuner per layer on any (:mod:`.tune`; docs/performance.md measures it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BAND_TILES = 256
"""Tiles (N x tile columns x tile rows) transformed and multiplied together, a band of tile rows at a time (at
least one row): the band's intermediates take 16 x BAND_TILES x channels values (4 MB at 512 channels) instead of
growing with the map; bands of 128 to 1024 tiles run within 10 % of each other (docs/performance.md), and the
smaller ones keep the peak memory lower."""

KERNEL_TRANSFORM = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
                                dtype=torch.float64)
"""G of F(2, 3): (4, 3)."""


def f2_kernels(weight: torch.Tensor) -> torch.Tensor:
    """U = G w G^T of a (Cout, Cin, 3, 3) weight -> (16, Cin, Cout) in the weight's dtype (computed in float64,
    rounded once); position t = 4 i + j of the 4x4 transformed tile."""
    cout, cin = weight.shape[:2]
    g = KERNEL_TRANSFORM.to(weight.device)
    u = torch.einsum("ia,jb,ocab->ijco", g, g, weight.double())
    return u.reshape(16, cin, cout).to(weight.dtype)


def _pair_sums(even: torch.Tensor, odd: torch.Tensor, out: torch.Tensor, dim: int) -> None:
    """B^T along ``dim`` for tiles every 2 pixels: from the even and odd pixels (e_k = p_2k, o_k = p_2k+1; tile k
    reads p_2k .. p_2k+3 = e_k, o_k, e_k+1, o_k+1) the 4 rows e_k - e_k+1, o_k + e_k+1, e_k+1 - o_k, o_k - o_k+1,
    written to ``out``[0..3]."""
    n = even.shape[dim] - 1
    e0, e1 = even.narrow(dim, 0, n), even.narrow(dim, 1, n)
    o0, o1 = odd.narrow(dim, 0, n), odd.narrow(dim, 1, n)
    torch.sub(e0, e1, out=out[0])
    torch.add(o0, e1, out=out[1])
    torch.sub(e1, o0, out=out[2])
    torch.sub(o0, o1, out=out[3])


def conv3x3_f2(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None,
               band_tiles: int | None = None) -> torch.Tensor:
    """The stride-1, padding-1 3x3 convolution of a (N, Cin, H, W) map by F(2x2, 3x3), with ``kernels`` from
    :func:`f2_kernels` (16, Cin, Cout) and ``bias`` (Cout,) or None -> (N, Cout, H, W), channels-last, in the
    kernels' dtype (the input is converted to it and to channels-last first). Odd sizes: tiles past the edge
    read zeros and their extra outputs are dropped. The tiles go through the steps in bands of about
    ``band_tiles`` (None: :data:`BAND_TILES`); every output is the same sum whatever the band."""
    x = x.to(kernels.dtype).contiguous(memory_format=torch.channels_last)
    n, cin, h, w = x.shape
    cout = kernels.shape[2]
    th, tw = -(-h // 2), -(-w // 2)
    # (N, 2 th + 2, 2 tw + 2, Cin): the zero padding of 1, plus 1 more on an odd side
    padded = F.pad(x, (1, 1 + 2 * tw - w, 1, 1 + 2 * th - h)).permute(0, 2, 3, 1)
    out = torch.empty(n, 2 * th, 2 * tw, cout, dtype=x.dtype, device=x.device)
    tiled = out.view(n, th, 2, tw, 2, cout)
    band = max(1, min(th, (band_tiles or BAND_TILES) // (n * tw)))
    for start in range(0, th, band):
        stop = min(th, start + band)
        _band(padded[:, 2 * start: 2 * stop + 2], kernels, tiled[:, start:stop])
    if bias is not None:
        out.add_(bias.to(out.dtype))
    out = out.permute(0, 3, 1, 2)
    return out if (h, w) == (2 * th, 2 * tw) else out[:, :, :h, :w].contiguous(memory_format=torch.channels_last)


def _band(padded: torch.Tensor, kernels: torch.Tensor, tiled: torch.Tensor) -> None:
    """One band of tile rows: padded input rows (N, 2 b + 2, 2 tw + 2, Cin) -> output tiles ``tiled``
    (N, b, 2, tw, 2, Cout), written in place."""
    n, rows_in, _, cin = padded.shape
    b, tw, cout = rows_in // 2 - 1, tiled.shape[3], kernels.shape[2]
    rows = torch.empty(4, n, rows_in, tw, cin, dtype=padded.dtype, device=padded.device)
    _pair_sums(padded[:, :, 0::2], padded[:, :, 1::2], rows, dim=2)  # B^T along the width
    tiles = torch.empty(4, 4, n, b, tw, cin, dtype=padded.dtype, device=padded.device)
    _pair_sums(rows[:, :, 0::2], rows[:, :, 1::2], tiles, dim=2)  # along the height: tiles[i][j] = V[4 i + j]
    products = torch.bmm(tiles.view(16, n * b * tw, cin), kernels).view(4, 4, n, b, tw, cout)
    # A^T along the height (i): rows 0 + 1 + 2 and 1 - 2 - 3, then along the width (j) likewise, into the output
    half = torch.empty(2, 4, n, b, tw, cout, dtype=padded.dtype, device=padded.device)
    torch.add(products[0], products[1], out=half[0]).add_(products[2])
    torch.sub(products[1], products[2], out=half[1]).sub_(products[3])
    for a in range(2):
        torch.add(half[a, 0], half[a, 1], out=tiled[:, :, a, :, 0]).add_(half[a, 2])
        torch.sub(half[a, 1], half[a, 2], out=tiled[:, :, a, :, 1]).sub_(half[a, 3])
