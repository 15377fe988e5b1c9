"""The notebook's face swap section: a swap from photo and clip paths through the one session, and the figure of
the part masks, on real media and the tiny segment model (with its face parser)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from clips import make_face_clip

from fomm_lab.errors import NoFaceError
from fomm_lab.io import probe_video
from fomm_lab.io.image import save_png
from fomm_lab.lab.swap_section import part_masks_figure, run_swap
from fomm_lab.pipeline import CropOptions, FaceSwapOptions, RuntimeOptions

matplotlib.use("Agg")

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "swap-golden"
TINY = FaceSwapOptions(config=GOLDEN / "tiny-vox-10segments.yaml", checkpoint=GOLDEN / "tiny-vox-10segments.pth.tar",
                       parser=GOLDEN / "tiny-bisenet-79999_iter.pth", parts=(1, 2, 3, 4, 5, 10, 12, 13))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the fixtures were made on one thread


@pytest.fixture(scope="module")
def run(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("swap-section")
    photo = save_png(folder / "photo.png", astronaut)
    clip = make_face_clip(folder / "clip.mp4", seconds=0.3, fps=10, size=(320, 240), audio=True, motion=False)
    return run_swap(photo, clip, folder / "outputs", swap=TINY, crop=CropOptions(detector="haar"),
                    runtime=RuntimeOptions(device="cpu", dtype="float32"), progress=False, say=lambda text: None)


def test_run_swap_writes_the_video_and_the_side_by_side(run):
    assert set(run.outputs) == {"video", "side_by_side"}
    info = probe_video(run.outputs["video"])
    assert (info.width, info.height) == (320, 240) and info.has_audio
    assert run.result.frames == 3 and run.result.swapped == 3


def test_the_masks_figure_shows_segments_parser_classes_and_the_swapped_mask(run):
    import matplotlib.pyplot as plt

    crop = run.target_crop(0)
    assert crop.shape == (256, 256, 3)
    fig = run.masks_figure(0)
    try:
        assert len(fig.axes) == 4
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[1] == "10 segments (0: background)" and titles[2] == "face parser classes"
        assert titles[3].startswith("swapped: 1,2,3,4,5,10,12,13 (parser)")
        mask = fig.axes[3].images[1].get_array()
        assert mask.shape == (512, 512) and 0 < float(np.mean(mask)) < 1
    finally:
        plt.close(fig)


def test_the_unsupervised_figure_has_no_parser_panel_without_a_parser(run):
    import matplotlib.pyplot as plt

    session_swapper = run.session.swapper
    parser, session_swapper.parser = session_swapper.parser, None
    try:
        fig = part_masks_figure(session_swapper, run.target_crop(1), (1, 2), supervised=False)
        assert len(fig.axes) == 3 and fig.axes[2].images[1].get_array().shape == (64, 64)
        plt.close(fig)
    finally:
        session_swapper.parser = parser


def test_a_frame_past_the_track_is_an_index_error(run):
    with pytest.raises(IndexError, match="past the swapped track"):
        run.target_crop(99)


def test_errors_reach_the_section_as_fomm_lab_errors(tmp_path, astronaut):
    blank = save_png(tmp_path / "blank.png", np.full((120, 160, 3), 90, np.uint8))
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=0.3, fps=10, size=(320, 240), audio=False, motion=False)
    with pytest.raises(NoFaceError, match="face swap needs a face in the photo"):
        run_swap(blank, clip, tmp_path / "outputs", swap=TINY, crop=CropOptions(detector="haar"),
                 runtime=RuntimeOptions(device="cpu", dtype="float32"), progress=False, say=lambda text: None)
    assert list((tmp_path / "outputs").iterdir()) == []
