"""Choice of the torch device."""

from __future__ import annotations

import logging

import torch

from .errors import FommLabError

log = logging.getLogger(__name__)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or the best available one: cuda > mps > cpu (logged at INFO)."""
    if device is not None:
        chosen = torch.device(device)
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise FommLabError(f"device {device!r} requested but CUDA is not available here; use device='cpu'")
        return chosen
    if torch.cuda.is_available():
        chosen = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        chosen = torch.device("mps")
    else:
        chosen = torch.device("cpu")
    log.info("fomm_lab: using device %s", chosen)
    return chosen
