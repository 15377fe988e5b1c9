"""Face enhancement of animated frames: GPEN as PaddleGAN's First Order Motion app runs it, and GFPGAN v1.4
(clean architecture) as GFPGANer runs it on an aligned face.

    from fomm_lab.enhance import load_enhancer
    enhancer = load_enhancer("gpen", "GPEN-512.pdparams")        # or ("gfpgan", "GFPGANv1.4.pth")
    faces = enhancer.enhance(frames)      # (N, H, W, 3) RGB uint8/float [0, 255] -> (N, 512, 512, 3) uint8

Modules: ``upfirdn`` and ``stylegan2`` (StyleGAN2 layers, Karras et al. CVPR 2020), ``gpen`` (Yang et al.
CVPR 2021), ``gfpgan`` (Wang et al. CVPR 2021), ``weights`` (reading and checking weights files),
``enhancer`` (the reference applications' pre- and post-processing), ``load`` (:func:`load_enhancer`).
Names are imported on first use: importing this package does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["KINDS", "FaceEnhancer", "GFPGANEnhancer", "GPENEnhancer", "load_enhancer"]

_LAZY = {
    "KINDS": "kinds",
    "FaceEnhancer": "enhancer",
    "GFPGANEnhancer": "enhancer",
    "GPENEnhancer": "enhancer",
    "load_enhancer": "load",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
