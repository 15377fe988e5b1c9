"""Winograd minimal filtering F(m x m, r x r) for stride-1 convolutions on the CPU (Lavin & Gray, CVPR 2016).

An r x r convolution is computed on n x n input tiles (n = m + r - 1) taken every m pixels. Per tile and
channel pair the m x m outputs are A^T [(G w G^T) * (B^T d B)] A; summed over the input channels this is
one batched matrix product over the n^2 tile positions,

    M[t] = U[t] @ V[t],   U = G w G^T (Cout, Cin) per position t, from the weights,
                          V = B^T d B (Cin, tiles), the input transform,

so the multiplications drop from m^2 r^2 to n^2 per tile: F(4x4, 3x3) does 36 instead of 144 (4x),
F(3x3, 2x2) 16 instead of 36 (2.25x). In exact arithmetic the result is the convolution; in float32 its
rounding error is a few times that of a direct convolution (tests/engine/test_winograd.py bounds it), far inside
the 1e-4 the golden fixtures allow.

The transforms are built here from the interpolation points (0, 1, -1, 2, -2): A^T and G are Vandermonde
matrices (plus the point at infinity) and B^T is solved from the bilinear identity
sum_j A^T[i, j] G[j, k] B^T[j, l] = [l == i + k] in float64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
"""Interpolation points, in the order they are used (n - 1 of them for tiles of n)."""

TILE_FOR_KERNEL = {3: 4, 2: 3}
"""Output tile m used for each kernel size r: F(4x4, 3x3) and F(3x3, 2x2) (points 0, +-1, +-2 only)."""


def winograd_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T (m, n), G (n, r), B^T (n, n)) in float64 for F(m, r), n = m + r - 1.

    Rows of B^T are scaled so that their smallest non-zero entry is +-1 (G's rows take the inverse
    scale), which gives the familiar small-integer matrices, e.g. B^T row [4, 0, -5, 0, 1, 0] for F(4, 3).
    """
    n = m + r - 1
    if not 2 <= n <= len(POINTS) + 1:
        raise ValueError(f"no Winograd points for F({m}, {r})")
    points = POINTS[: n - 1]
    at = np.zeros((m, n))
    g = np.zeros((n, r))
    for j, p in enumerate(points):
        at[:, j] = [p**i for i in range(m)]
        g[j] = [p**k for k in range(r)]
    at[m - 1, n - 1] = 1.0
    g[n - 1, r - 1] = 1.0
    products = np.einsum("ij,jk->ikj", at, g).reshape(m * r, n)
    target = np.zeros((m * r, n))
    for i in range(m):
        for k in range(r):
            target[i * r + k, i + k] = 1.0
    bt = np.linalg.lstsq(products, target, rcond=None)[0]
    if np.abs(products @ bt - target).max() > 1e-9:
        raise ValueError(f"F({m}, {r}) has no exact transform with points {points}")
    bt[np.abs(bt) < 1e-12] = 0.0
    scale = np.array([np.abs(row[row != 0]).min() for row in bt])
    return at, g * scale[:, None], bt / scale[:, None]


BAND_TILES = {3: 64, 2: 128}
"""Tiles (N x tile columns x tile rows) that an eager call transforms and multiplies together, per kernel size: a
band whose transformed tiles and products stay in a core's cache, while each band reads the transformed kernels
again (the 2x2 phase kernels of the up-blocks are the widest, hence their larger bands). docs/performance.md
measures it."""


TILE_MAJOR_BAND_TILES = 32
"""Tiles per band of :meth:`WinogradPlan.tile_major`'s transforms (its products take the whole map at once): 16 to
64 measured within a few percent of each other (docs/performance.md)."""


class WinogradPlan:
    """The transforms of F(m x m, r x r), for r x r kernels (float32, on ``device``).

    The 2-D tile transforms are Kronecker products (B^T (x) B^T: (n*n, n*n), A^T (x) A^T: (m*m, n*n), and for
    the kernels G (x) G: (n*n, r*r)), so each transform is one matrix product over all tiles and channels.
    """

    def __init__(self, r: int, m: int | None = None, device: str | torch.device = "cpu"):
        self.r = r
        self.m = m or TILE_FOR_KERNEL[r]
        self.n = self.m + r - 1
        at, g, bt = (torch.from_numpy(a) for a in winograd_matrices(self.m, r))
        self.kernel_transform = torch.kron(g, g).to(torch.float32).to(device)
        self.input_transform = torch.kron(bt, bt).to(torch.float32).to(device)
        self.output_transform = torch.kron(at, at).to(torch.float32).to(device)

    def kernels(self, weight: torch.Tensor) -> torch.Tensor:
        """U = G w G^T of a (Cout, Cin, r, r) float32 weight -> (n*n, Cout, Cin): (n/r)^2 times the weight's size,
        one matrix product, cheap next to the convolutions it serves."""
        cout, cin, r, r2 = weight.shape
        if (r, r2) != (self.r, self.r):
            raise ValueError(f"this plan is for {self.r}x{self.r} kernels, got {r}x{r2}")
        return (self.kernel_transform @ weight.reshape(cout * cin, r * r).t()).view(self.n * self.n, cout, cin)

    def __call__(self, x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None,
                 padding: int, band_tiles: int | None = None) -> torch.Tensor:
        """The stride-1 convolution of (N, Cin, H, W) float32 ``x`` with zero ``padding`` and the kernel
        transform ``kernels`` (:meth:`kernels`) -> (N, Cout, H + 2p - r + 1, W + 2p - r + 1), plus ``bias``
        (Cout,) when given.

        Eagerly, the tiles go through the three steps a band of tile rows at a time (about ``band_tiles`` tiles,
        at least one row; None: :data:`BAND_TILES`), so that each band's transformed tiles and products stay in
        the CPU's cache instead of making three round trips through memory; every output pixel is the same sum
        either way."""
        m = self.m
        batch, _, ho, wo, tiles = self._tiles(x, padding)
        th, tw = tiles.shape[2:4]
        cout = kernels.shape[1]
        if torch.compiler.is_compiling():  # functional form, in one piece, for the compiler to fuse
            spatial = self._band(tiles, kernels)
            out = spatial if bias is None else spatial + bias.view(1, -1, 1, 1, 1, 1)
            return out.reshape(batch, cout, th * m, tw * m)[:, :, :ho, :wo]
        out = torch.empty(batch, cout, th, m, tw, m, dtype=x.dtype, device=x.device)
        rows = self._band_rows(tiles, band_tiles)
        for start in range(0, th, rows):
            _interleave(self._band(tiles[:, :, start:start + rows], kernels), bias, out[:, :, start:start + rows])
        return out.view(batch, cout, th * m, tw * m)[:, :, :ho, :wo]

    def tile_major(self, x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None, padding: int,
                   band_tiles: int | None = None) -> torch.Tensor:
        """The same convolution as :meth:`__call__` (eager, float32 CPU input, oneDNN available), laid out for the
        products instead of the cache: the input transform V of every tile goes, a band at a time, into one
        tile-major (n*n, tiles, Cin) buffer; the products are one oneDNN inner product per tile position,
        V[t] (tiles, Cin) @ U[t]^T -> M[t] (tiles, Cout), with all of the map's tiles as the rows; the output
        transform and interleaving go a band at a time again. On wide layers this pays: MKL's batched products run
        slowly on AMD CPUs, worst with the few tiles of a band as their columns (docs/performance.md, "Winograd's
        products by oneDNN")."""
        m, n = self.m, self.n
        batch, cin, ho, wo, tiles = self._tiles(x, padding)
        th, tw = tiles.shape[2:4]
        cout, count = kernels.shape[1], batch * th * tw
        rows = self._band_rows(tiles, band_tiles or TILE_MAJOR_BAND_TILES)
        transformed = torch.empty(n * n, count, cin, dtype=x.dtype, device=x.device)
        flat = transformed.view(n * n, count * cin)
        for start in range(0, th, rows):
            stop = min(th, start + rows)
            band = tiles[:, :, start:stop].permute(4, 5, 0, 2, 3, 1).reshape(n * n, -1)  # (n*n, N*rows*tw*Cin)
            torch.mm(self.input_transform, band, out=flat[:, batch * start * tw * cin:batch * stop * tw * cin])
        per_position = [torch.ops.mkldnn._linear_pointwise(transformed[t], kernels[t], None, "none", [], "")
                        for t in range(n * n)]
        del transformed, flat  # freed before the stacking copy: two maps of products' size alive at a time, not three
        products = torch.stack(per_position).view(n * n, count * cout)
        del per_position
        out = torch.empty(batch, cout, th, m, tw, m, dtype=x.dtype, device=x.device)
        for start in range(0, th, rows):
            stop = min(th, start + rows)
            band = products[:, batch * start * tw * cout:batch * stop * tw * cout]
            spatial = (self.output_transform @ band).view(m, m, batch, stop - start, tw, cout)
            _interleave(spatial.permute(2, 5, 3, 0, 4, 1), bias, out[:, :, start:stop])
        return out.view(batch, cout, th * m, tw * m)[:, :, :ho, :wo]

    def _tiles(self, x: torch.Tensor, padding: int) -> tuple[int, int, int, int, torch.Tensor]:
        """(N, Cin, H, W) ``x`` -> N, Cin, the output's height and width, and the (N, Cin, tile rows, tile
        columns, n, n) view of its zero-padded copy (the last tiles overhang the output, padded with zeros)."""
        m, n, r = self.m, self.n, self.r
        batch, cin, h, w = x.shape
        ho, wo = h + 2 * padding - r + 1, w + 2 * padding - r + 1
        th, tw = -(-ho // m), -(-wo // m)
        padded = F.pad(x, (padding, m * tw + r - 1 - w - padding, padding, m * th + r - 1 - h - padding))
        return batch, cin, ho, wo, padded.unfold(2, n, m).unfold(3, n, m)

    def _band_rows(self, tiles: torch.Tensor, band_tiles: int | None) -> int:
        """Tile rows per band: about ``band_tiles`` tiles (None: :data:`BAND_TILES`), at least one row."""
        batch, _, th, tw = tiles.shape[:4]
        return max(1, min(th, (band_tiles or BAND_TILES[self.r]) // (batch * tw)))

    def _band(self, tiles: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """(N, Cin, rows, tw, n, n) input tiles -> (N, Cout, rows, m, tw, m) output tiles (a permuted view)."""
        m, n = self.m, self.n
        batch, cin, rows, tw = tiles.shape[:4]
        flat = tiles.permute(4, 5, 1, 0, 2, 3).reshape(n * n, -1)  # (n*n, Cin * N*rows*tw), one copy
        transformed = (self.input_transform @ flat).view(n * n, cin, -1)
        products = torch.bmm(kernels, transformed)  # (n*n, Cout, N*rows*tw)
        spatial = (self.output_transform @ products.view(n * n, -1)).view(m, m, -1, batch, rows, tw)
        return spatial.permute(3, 2, 4, 0, 5, 1)


def _interleave(spatial: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> None:
    """Copy (N, Cout, rows, m, tw, m) output tiles (a permuted view) into ``out``, their place in the output map,
    adding ``bias`` (Cout,) on the way when given."""
    if bias is not None:
        torch.add(spatial, bias.view(1, -1, 1, 1, 1, 1), out=out)
    else:
        out.copy_(spatial)
