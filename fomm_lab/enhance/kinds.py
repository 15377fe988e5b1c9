"""The face enhancers by name, without torch: what the job checks (:mod:`fomm_lab.pipeline.check`) need before
any network is loaded."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["EXPECTED", "KINDS", "check_kind"]

KINDS = ("gpen", "gfpgan")
"""The face enhancers, by name."""

EXPECTED = {
    "gpen": "GPEN weights (PaddleGAN's GPEN-512.pdparams)",
    "gfpgan": "GFPGAN weights (GFPGANv1.4.pth or GFPGANv1.3.pth, clean architecture)",
}
"""What each enhancer reads, as said in messages."""


def check_kind(kind: str) -> str:
    """``kind`` lower-cased, or ConfigError listing the enhancers."""
    name = str(kind).lower()
    if name not in KINDS:
        raise ConfigError(f"unknown face enhancer {kind!r}: use one of {', '.join(KINDS)}")
    return name
