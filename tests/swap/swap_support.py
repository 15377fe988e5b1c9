"""Shared helpers of the part-swap tests: the golden fixtures (tests/fixtures/swap-golden) and loaded swappers."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from fomm_lab.swap import Swapper, load_swapper

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "swap-golden"
YAML = GOLDEN / "tiny-vox-10segments.yaml"
SEGMENTS = GOLDEN / "tiny-vox-10segments.pth.tar"
SEGMENTS_KP_LAYOUT = GOLDEN / "tiny-vox-10segments-kp-layout.pth.tar"
FOMM = GOLDEN / "tiny-vox-first-order.pth.tar"
PARSER = GOLDEN / "tiny-bisenet-79999_iter.pth"

TAGS = {
    # tag: (supervised, hard, source_segmentation, first_order_motion)
    "unsup_soft_tgt": (False, False, False, False),
    "unsup_hard_tgt": (False, True, False, False),
    "unsup_soft_src": (False, False, True, False),
    "unsup_hard_src": (False, True, True, False),
    "sup_soft_tgt": (True, False, False, False),
    "sup_hard_tgt": (True, True, False, False),
    "sup_soft_src": (True, False, True, False),
    "sup_hard_src": (True, True, True, False),
    "fomm_soft_src": (True, False, True, True),
    "fomm_hard_tgt": (True, True, False, True),
}
"""The fixture's runs of the authors' make_video (README "Arrays")."""


@functools.lru_cache(maxsize=1)
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "tiny-vox-10segments-swap-golden.npz") as data:
        return {name: data[name] for name in data.files}


@functools.lru_cache(maxsize=4)
def swapper(layout: str = "train", batch_size: int = 1) -> Swapper:
    """The tiny model with parser and FOMM checkpoint; ``layout`` "kp" loads the generator/kp_detector file
    (the one the fixture's supervised runs used), "train" the train.py file."""
    checkpoint = SEGMENTS_KP_LAYOUT if layout == "kp" else SEGMENTS
    return load_swapper(YAML, checkpoint, parser=PARSER, motion_checkpoint=FOMM, batch_size=batch_size)


def parts(tag: str) -> list[int]:
    data = golden()
    return [int(p) for p in data["sup_swap_index" if tag.startswith(("sup", "fomm")) else "unsup_swap_index"]]


def max_diff(actual, expected) -> float:
    actual = actual.detach().float().numpy() if torch.is_tensor(actual) else np.asarray(actual)
    return float(np.abs(actual.astype(np.float64) - np.asarray(expected, dtype=np.float64)).max())


