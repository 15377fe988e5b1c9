"""The face-enhancement stage of a session: several faces enhanced at their size in the photo and pasted back,
the precision it runs in, and every bad enhancement option refused by ``check()`` before any work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import make_test_video

from fomm_lab import AnimateJob, Animation, CropOptions, MotionOptions, OutputOptions, RuntimeOptions
from fomm_lab.cli import main
from fomm_lab.device import resolve_dtype
from fomm_lab.enhance import load_enhancer
from fomm_lab.errors import CheckpointError, ConfigError, FommLabError
from fomm_lab.faces.paste import Compositor
from fomm_lab.io import read_image
from fomm_lab.io.image import save_png
from fomm_lab.pipeline.prepare import driving_frames

ENHANCE = Path(__file__).resolve().parents[1] / "fixtures" / "enhance-golden"
GPEN = ENHANCE / "gpen-tiny-512.pdparams"
GFPGAN = ENHANCE / "gfpgan-tiny-512.pth"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def two_faces(tmp_path, astronaut) -> tuple[Path, Path]:
    """(a 512x256 photo of two real faces: the astronaut at half size and mirrored, side by side; a 2-frame clip)."""
    half = astronaut[::2, ::2]
    photo = save_png(tmp_path / "two.png", np.ascontiguousarray(np.hstack([half, half[:, ::-1]])))
    clip = make_test_video(tmp_path / "clip.mp4", frames=2, fps=10, size=(96, 80))
    return photo, clip


def _job(tmp_path: Path, photo: Path, clip: Path, tiny_vox, **output) -> AnimateJob:
    config, checkpoint = tiny_vox
    return AnimateJob(source=photo, driving=clip, model=config, checkpoint=checkpoint,
                      crop=CropOptions(source=True, faces="all", detector="haar", driving=False),
                      motion=MotionOptions(smoothing=0.0), runtime=RuntimeOptions(device="cpu", dtype="float32"),
                      output=OutputOptions(video=tmp_path / "frames", **output))


def _frames(folder: Path) -> np.ndarray:
    return np.stack([read_image(p, max_size=None) for p in sorted(folder.glob("*.png"))])


def test_every_face_is_enhanced_at_its_size_and_pasted_back(tmp_path, two_faces, tiny_vox, tiny_model):
    photo, clip = two_faces
    job = _job(tmp_path, photo, clip, tiny_vox, enhance="gpen", enhancer_weights=GPEN)
    sizes: list[tuple[int, int] | None] = []
    with Animation(job, model=tiny_model, progress=False) as session:
        session.check()
        enhancer = session.enhancer()
        faces_at = enhancer.enhance_faces

        def spy(frames, size=None, strength=1.0):
            sizes.append(size)
            return faces_at(frames, size=size, strength=strength)

        enhancer.enhance_faces = spy
        result = session.animate()
        prepared = result.prepared
        # what the stage must equal: each face animated alone, enhanced by hand at its box's size, pasted back
        crops = prepared.source.crops
        assert len(crops) == 2
        boxes = [c.box.as_ints() for c in crops]
        reference = load_enhancer("gpen", GPEN)
        plains, enhanced = [], []
        for image, (x0, y0, x1, y1) in zip(prepared.source.images, boxes):
            plains.append(np.stack(list(session.animator().animate(
                image, driving_frames(prepared.drivings[0], prepared.config.frame_size)))))
            enhanced.append(reference.enhance_faces(plains[-1], size=(x1 - x0, y1 - y0)))
    compositor = Compositor(prepared.source.photo, [c.box for c in crops], [c.face for c in crops],
                            feather=job.crop.feather)
    expected = np.stack([compositor.paste(list(faces)) for faces in zip(*enhanced)])
    written = _frames(tmp_path / "frames")
    assert written.shape == (2, 256, 512, 3) and result.frames == 2
    np.testing.assert_array_equal(written, expected)
    assert sorted(set(sizes)) == sorted({(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes})  # never 512, then resized
    # each face shows the enhancement (the tiny random GPEN repaints it), not only one of them
    plain = np.stack([compositor.paste(list(faces)) for faces in zip(*plains)])
    for x0, y0, x1, y1 in boxes:
        inside = (slice(None), slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        assert np.abs(written[inside].astype(int) - plain[inside]).mean() > 5


def test_wrong_enhancer_weights_are_refused_before_any_work(tmp_path, two_faces, tiny_vox):
    photo, clip = two_faces
    job = _job(tmp_path, photo, clip, tiny_vox, enhance="gpen", enhancer_weights=GFPGAN)
    session = Animation(job, progress=False)
    with pytest.raises(CheckpointError) as caught:
        session.run()
    message = str(caught.value)
    assert str(GFPGAN) in message and "GFPGAN weights" in message and "for the gfpgan enhancer" in message
    assert "OutputOptions(enhance='gfpgan')" in message
    assert session.prepared is None and not (tmp_path / "frames").exists()
    # the command line says the same in flags, and writes nothing either
    config, checkpoint = tiny_vox
    code = main(["animate", "--source", str(photo), "--driving", str(clip), "--config", str(config), "--checkpoint",
                 str(checkpoint), "--enhance", "gfpgan", "--enhancer-weights", str(GPEN), "--output",
                 str(tmp_path / "cli.mp4"), "-q"])
    assert code == 1 and not (tmp_path / "cli.mp4").exists()


@pytest.mark.parametrize("output, error, words", [
    ({"enhance": "codeformer"}, ConfigError, "OutputOptions(enhance='gpen')"),
    ({"enhancer_weights": GPEN}, FommLabError, "no face enhancer is chosen"),
    ({"enhance": "gpen", "enhance_strength": 1.5}, FommLabError, "OutputOptions(enhance_strength=1.0)"),
    ({"enhance": "gfpgan", "enhancer_weights": ENHANCE / "missing.pth"}, CheckpointError, "does not exist"),
])
def test_bad_enhancement_options_are_refused_by_check(tmp_path, two_faces, tiny_vox, output, error, words):
    photo, clip = two_faces
    with pytest.raises(error, match="enhance|weights") as caught:
        Animation(_job(tmp_path, photo, clip, tiny_vox, **output), progress=False).check()
    assert words in str(caught.value)


def test_a_weights_file_of_no_enhancer_says_what_to_give(tmp_path, two_faces, tiny_vox):
    photo, clip = two_faces
    job = _job(tmp_path, photo, clip, tiny_vox, enhance="gfpgan", enhancer_weights=tiny_vox[1])
    with pytest.raises(CheckpointError, match="First Order Motion Model checkpoint") as caught:
        Animation(job, progress=False).check()
    assert "OutputOptions(enhancer_weights=FILE)" in str(caught.value)


@pytest.mark.parametrize("dtype", ["auto", "bfloat16", "float32"])
def test_the_enhancer_runs_in_the_runtime_precision(tmp_path, two_faces, tiny_vox, tiny_model, dtype):
    photo, clip = two_faces
    job = _job(tmp_path, photo, clip, tiny_vox, enhance="gpen", enhancer_weights=GPEN)
    job = dataclasses.replace(job, runtime=RuntimeOptions(device="cpu", dtype=dtype))
    enhancer = Animation(job, model=tiny_model, progress=False).enhancer()
    # auto: bfloat16 only where this CPU computes it natively (AVX512-BF16 / AMX), else float32
    assert enhancer.dtype == resolve_dtype(dtype, torch.device("cpu"))
    assert enhancer.device == torch.device("cpu")
