"""Upsample, FIR-filter, downsample (``upfirdn2d``): StyleGAN2's anti-aliased resampling, in plain torch.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), Appendix B: every
resampling of the generator and of the encoders built on it is a separable low-pass FIR filter (the
binomial kernel ``[1, 3, 3, 1]``) applied around a zero-insertion upsampling or a strided downsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

__all__ = ["blur_kernel", "upfirdn2d"]


def blur_kernel(taps: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """The 2-D FIR kernel of 1-D ``taps``: ``outer(taps, taps) / sum(outer) * gain``, float32, (k, k).

    ``gain`` is ``factor**2`` where the filter follows a zero-insertion upsampling by ``factor`` (it
    restores the mean that the inserted zeros removed).
    """
    kernel = torch.tensor(list(taps), dtype=torch.float32)
    kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum() * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with ``kernel``, keep every ``down``-th sample.

    x: (N, C, H, W); kernel: (kh, kw). Each sample ``x[i, j]`` lands at ``(i*up, j*up)`` of an
    (H*up, W*up) grid of zeros; the grid is padded by ``pad[0]`` before and ``pad[1]`` after, in both
    axes (negative values crop); it is then convolved (a true convolution: the kernel is flipped) with
    ``kernel`` on every channel separately, and subsampled by ``down``. Output:
    (N, C, (H*up + pad[0] + pad[1] - kh) // down + 1, same for W).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(n, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, stride=down, groups=c)
