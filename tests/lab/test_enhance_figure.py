"""The lab's before/after figure of face enhancement, on a real face enhanced by the tiny GPEN fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clips import face_patch

from fomm_lab.enhance import load_enhancer
from fomm_lab.lab.enhance_figure import enhance_figure

WEIGHTS = Path(__file__).resolve().parents[1] / "fixtures" / "enhance-golden" / "gpen-tiny-512.pdparams"


@pytest.fixture(scope="module")
def before_after(one_torch_thread) -> tuple[np.ndarray, np.ndarray]:
    """Five 256x256 frames of a real face (shifted a little each) and the tiny GPEN's 512x512 faces of them."""
    face = face_patch(260)
    plain = np.stack([np.ascontiguousarray(face[i:i + 256, i:i + 256]) for i in range(0, 5)])
    return plain, load_enhancer("gpen", WEIGHTS).enhance(plain)


def test_the_figure_shows_each_frame_before_and_after(before_after):
    import matplotlib.pyplot as plt

    plain, enhanced = before_after
    fig = enhance_figure(plain, enhanced, titles=("vox-256", "GPEN"), max_frames=3, frame_numbers=[10, 11, 12, 13, 14])
    try:
        axes = fig.axes
        assert len(axes) == 6  # 3 rows, animated | enhanced
        assert [a.get_title() for a in axes[:2]] == ["vox-256", "GPEN"]
        assert all(a.get_legend() is None for a in axes) and not fig.legends
        rows = [axes[0].get_ylabel(), axes[2].get_ylabel(), axes[4].get_ylabel()]
        assert rows == ["frame 10", "frame 12", "frame 14"]  # spread evenly, first and last shown
        for row, index in enumerate([0, 2, 4]):
            np.testing.assert_array_equal(axes[2 * row].images[0].get_array(), plain[index])
            np.testing.assert_array_equal(axes[2 * row + 1].images[0].get_array(), enhanced[index])
            assert axes[2 * row].get_xlabel() == "256x256" and axes[2 * row + 1].get_xlabel() == "512x512"
            # both shown at the same size on screen, whatever their pixel sizes
            assert axes[2 * row].images[0].get_extent() == axes[2 * row + 1].images[0].get_extent()
        fig.canvas.draw()
    finally:
        plt.close(fig)


def test_one_frame_and_the_default_titles(before_after):
    import matplotlib.pyplot as plt

    plain, enhanced = before_after
    fig = enhance_figure([plain[0]], [enhanced[0]])
    try:
        assert [a.get_title() for a in fig.axes] == ["animated", "enhanced"]
    finally:
        plt.close(fig)


@pytest.mark.parametrize("plain, enhanced, message", [
    (np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3, 8, 8, 3), np.uint8), "same frames"),
    ([], [], "no frames"),
    (np.zeros((1, 8, 8), np.uint8), np.zeros((1, 8, 8), np.uint8), r"RGB frame \(H, W, 3\)"),
])
def test_mismatched_or_empty_frames_are_refused(plain, enhanced, message):
    with pytest.raises(ValueError, match=message):
        enhance_figure(plain, enhanced)
