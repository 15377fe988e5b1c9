"""``load_enhancer``: a face enhancer from its kind and its weights file."""

from __future__ import annotations

from pathlib import Path

import torch

from ..device import pick_device, resolve_dtype
from .enhancer import FaceEnhancer, GFPGANEnhancer, GPENEnhancer
from .gfpgan import GFPGANv1Clean
from .gpen import GPEN
from .weights import check_kind, load_network

__all__ = ["load_enhancer"]


def load_enhancer(kind: str, checkpoint: str | Path, *, device: str | torch.device | None = "cpu",
                  dtype: str | torch.dtype = "float32", batch_size: int = 1, noise: str = "fixed",
                  seed: int | None = None) -> FaceEnhancer:
    """A face enhancer: ``kind`` "gpen" (PaddleGAN's GPEN-512.pdparams) or "gfpgan" (GFPGANv1.4.pth / v1.3).

    The network's widths, style size and resolution are read from the weights file. ``device``: a torch
    device (None picks the best one); ``dtype``: "float32", "bfloat16", "float16" or "auto" (reduced
    precision runs under autocast); ``batch_size``: faces per network call. GFPGAN only: ``noise`` "fixed"
    (the checkpoint's buffers, deterministic) or "random" with ``seed``.

    The result's ``enhance(frames)`` takes (N, H, W, 3) RGB frames, uint8 or float in [0, 255], and returns
    (N, 512, 512, 3) uint8 RGB. Raises ConfigError for an unknown kind and CheckpointError for a file that
    is not that enhancer's weights.
    """
    kind = check_kind(kind)
    if kind == "gpen" and (noise != "fixed" or seed is not None):
        raise ValueError("GPEN draws no noise: its noise inputs are the encoder's features (leave noise and seed "
                         "unset)")
    chosen = pick_device(device)
    precision = resolve_dtype(dtype, chosen)
    network = load_network(kind, checkpoint)
    if kind == "gpen":
        assert isinstance(network, GPEN)
        return GPENEnhancer(network, checkpoint, device=chosen, dtype=precision, batch_size=batch_size)
    assert isinstance(network, GFPGANv1Clean)
    return GFPGANEnhancer(network, checkpoint, noise=noise, seed=seed, device=chosen, dtype=precision,
                          batch_size=batch_size)
