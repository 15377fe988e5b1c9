"""The live loop with a face enhancer: each animated frame is the enhanced one at the model's size, and the enhancer
can be switched on and off between frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clips import face_clip_frames

from fomm_lab import Animator
from fomm_lab.enhance import load_enhancer
from fomm_lab.live import LiveSession

WEIGHTS = Path(__file__).resolve().parents[1] / "fixtures" / "enhance-golden" / "gpen-tiny-512.pdparams"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_live_frames_are_enhanced_at_the_model_size(tiny_model, astronaut):
    enhancer = load_enhancer("gpen", WEIGHTS)
    frames = list(face_clip_frames(seconds=1, fps=4, size=(240, 180)))
    plain = LiveSession(Animator(tiny_model, dtype="float32", smoothing=0), astronaut)
    live = LiveSession(Animator(tiny_model, dtype="float32", smoothing=0), astronaut, enhancer=enhancer,
                       enhance_strength=0.8)
    for frame in frames[:3]:
        crop, expected = plain.process(frame)
        live_crop, out = live.process(frame)
        np.testing.assert_array_equal(live_crop, crop)
        assert out.shape == (256, 256, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, enhancer.enhance_faces(expected[None], size=256, strength=0.8)[0])
        assert np.abs(out.astype(int) - expected).mean() > 5
    live.set_enhancer(None)  # off again: the plain animation, from the next frame on
    np.testing.assert_array_equal(live.process(frames[3])[1], plain.process(frames[3])[1])
    assert live.fps > 0 and live.frames == 4
    with pytest.raises(ValueError, match="enhance_strength"):
        live.set_enhancer(enhancer, 1.5)
