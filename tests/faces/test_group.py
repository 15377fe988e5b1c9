"""Group photos, seamless paste-back, steady motion and crops that stay tight, on real face media."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from clips import _background, face_patch, make_face_clip
from PIL import Image

from fomm_lab.engine.keypoints import Keypoints
from fomm_lab.engine.smoothing import DEFAULT_STRENGTH, KeypointFilter
from fomm_lab.faces import HaarDetector
from fomm_lab.faces.paste import Compositor
from fomm_lab.geometry import Box
from fomm_lab.io import read_image, read_video, write_video

FACES = [(60, 200, 300, False), (520, 260, 220, False), (920, 150, 260, True)]
"""(x, y, side, mirrored) of the astronaut's face patches in the group photo."""


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory) -> Path:
    """Three real faces (the astronaut photo at three sizes, one mirrored) side by side on 1280x720."""
    canvas = _background(1280, 720).copy()
    for x, y, side, mirrored in FACES:
        patch = np.asarray(Image.fromarray(face_patch()).resize((side, side), Image.LANCZOS))
        canvas[y:y + side, x:x + side] = patch[:, ::-1] if mirrored else patch
    path = tmp_path_factory.mktemp("group") / "group.png"
    Image.fromarray(canvas).save(path)
    return path


@pytest.fixture(scope="module")
def driving(tmp_path_factory) -> Path:
    return make_face_clip(tmp_path_factory.mktemp("group-drive") / "drive.mp4", seconds=1.2, fps=10,
                          size=(320, 240), audio=True)


def seam_excess(out: np.ndarray, photo: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude added at the mask's outer edge (where 0 < mask < 0.5): 0 for no seam."""
    def gradient(img: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))

    edge = (mask > 0) & (mask < 0.5)
    return float(gradient(out)[edge].mean() - gradient(photo)[edge].mean())


# ------------------------------------------------------------------------------------- group photo


@pytest.mark.slow
def test_every_face_of_a_group_photo_is_animated_and_pasted_back(group_photo, driving, tiny_vox, tiny_model,
                                                                  tmp_path):
    from fomm_lab.pipeline import AnimateJob, CropOptions, MotionOptions, OutputOptions, run_job

    out = tmp_path / "frames"
    job = AnimateJob(source=group_photo, driving=driving, model=tiny_vox[0], checkpoint=tiny_vox[1],
                     crop=CropOptions(faces="all", detector="haar"), motion=MotionOptions(smoothing=0),
                     output=OutputOptions(video=out))
    result = run_job(job, model=tiny_model, progress=False)
    photo = read_image(group_photo)
    frames = [read_image(p, max_size=None) for p in sorted(out.glob("*.png"))]
    assert len(frames) == result.frames > 5 and frames[0].shape == photo.shape  # full resolution
    crops = result.prepared.source.crops
    assert len(crops) == 3
    compositor = Compositor(photo, [c.box for c in crops], [c.face for c in crops])
    masks = np.zeros(photo.shape[:2], np.float32)
    for face in compositor.faces:
        x0, y0, x1, y1 = face.clip
        masks[y0:y1, x0:x1] = np.maximum(masks[y0:y1, x0:x1], face.mask[..., 0])
    outside = masks == 0
    for frame in frames:
        assert np.array_equal(frame[outside], photo[outside])  # the rest of the photo, pixel for pixel
    for crop in crops:  # every face moves
        x0, y0, x1, y1 = crop.face.as_ints()
        assert np.abs(frames[-1][y0:y1, x0:x1].astype(int) - photo[y0:y1, x0:x1]).mean() > 2
    for face in compositor.faces:
        # no seam: the animated face fades out towards the mask's edge (the random tiny model paints
        # noise, so the seam measure itself is checked on a real crop in the next test)
        x0, y0, x1, y1 = face.clip
        mask = face.mask[..., 0]
        change = np.abs(frames[-1][y0:y1, x0:x1].astype(np.float32) - photo[y0:y1, x0:x1]).mean(axis=2)
        edge, core = change[(mask > 0) & (mask < 0.2)].mean(), change[mask > 0.95].mean()
        assert edge < 0.25 * core, (edge, core)


def _ellipse_band(box: Box, shape: tuple[int, ...], inner: float = 0.7, outer: float = 1.05) -> np.ndarray:
    """Pixels whose normalised radius in the ellipse inscribed in ``box`` is in [inner, outer]."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    cx, cy = box.center
    r = np.hypot((xs + 0.5 - cx) / (box.width / 2), (ys + 0.5 - cy) / (box.height / 2))
    return ((r >= inner) & (r <= outer)).astype(np.float32) * 0.25  # seam_excess reads 0 < mask < 0.5


def test_a_hard_paste_shows_the_seam_the_soft_one_hides(group_photo):
    """The seam measure works: a crop in other lighting pasted with a hard edge adds a strong gradient at
    the edge of the pasted region; the feathered, colour-matched paste of the same crop adds little."""
    photo = read_image(group_photo)
    box, face = Box(40, 180, 380, 520), Box(120, 260, 300, 440)
    x0, y0, x1, y1 = box.as_ints()
    crop = np.clip(photo[y0:y1, x0:x1].astype(int) + 50, 0, 255).astype(np.uint8)  # brighter lighting
    soft = Compositor(photo, [box], [face]).paste([crop])
    hard = Compositor(photo, [box], [face], feather=1e-3, colour_match=False).paste([crop])
    band = _ellipse_band(box, photo.shape, 0.97, 1.03)
    soft_excess, hard_excess = seam_excess(soft, photo, band), seam_excess(hard, photo, band)
    assert hard_excess > 3 and soft_excess < 0.25 * hard_excess, (soft_excess, hard_excess)


def test_colours_are_matched_on_the_ring_around_the_face(group_photo):
    photo = read_image(group_photo)
    box, face = Box(40, 180, 380, 520), Box(120, 260, 300, 440)
    x0, y0, x1, y1 = box.as_ints()
    crop = np.clip(photo[y0:y1, x0:x1].astype(int) + [40, -10, -30], 0, 255).astype(np.uint8)
    compositor = Compositor(photo, [box], [face])
    matched = compositor.faces[0].colour_matched(crop.astype(np.float32) / 255)
    ring = compositor.faces[0].ring

    def lab_mean(rgb: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2LAB)[ring].mean(axis=0)

    target = lab_mean(photo[y0:y1, x0:x1] / 255)
    assert np.abs(lab_mean(crop / 255) - target).max() > 8  # the crop's lighting differs
    assert np.abs(lab_mean(matched) - target).max() < 1.5  # matched in Lab on the ring


def test_overlapping_faces_are_not_painted_over(group_photo):
    """Two faces whose crop squares overlap: inside face B's detected box, A's paste changes nothing."""
    photo = read_image(group_photo)
    box_a, face_a = Box(100, 100, 500, 500), Box(180, 200, 330, 380)
    box_b, face_b = Box(380, 150, 700, 470), Box(460, 230, 600, 390)
    crop_a = np.full((256, 256, 3), (250, 20, 20), np.uint8)
    crop_b = np.full((256, 256, 3), (20, 20, 250), np.uint8)
    both = Compositor(photo, [box_a, box_b], [face_a, face_b], colour_match=False).paste([crop_a, crop_b])
    only_b = Compositor(photo, [box_b], [face_b], colour_match=False).paste([crop_b])
    x0, y0, x1, y1 = face_b.as_ints()
    assert np.array_equal(both[y0:y1, x0:x1], only_b[y0:y1, x0:x1])
    x0, y0, x1, y1 = face_a.as_ints()
    assert both[y0:y1, x0:x1, 0].mean() > 150  # A itself is there


def test_a_group_photo_without_faces_is_the_usual_error(tmp_path):
    from fomm_lab.errors import NoFaceError
    from fomm_lab.faces.crop import crop_faces

    blank = tmp_path / "blank.png"
    Image.fromarray(_background(640, 360)).save(blank)
    with pytest.raises(NoFaceError, match="no face was found"):
        crop_faces(blank, 256, faces="all", detector=HaarDetector())


def test_face_indices_pick_faces_left_to_right(group_photo):
    from fomm_lab.faces.crop import crop_faces

    crops = crop_faces(group_photo, 256, faces=[2, 0], detector=HaarDetector())
    assert [c.face.x0 > 800 for c in crops] == [True, False]


# -------------------------------------------------------------------------------- steady motion


def _jittery_path(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(true, observed) keypoint paths (frames, 10, 2): a slow smooth head motion plus detector jitter."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (1, 10, 2))
    true = 0.1 * np.sin(2 * np.pi * t / 150 + phase)
    return true, true + rng.normal(0, 0.01, true.shape)


def _filtered(values: np.ndarray, strength: float) -> np.ndarray:
    smooth = KeypointFilter(strength)
    out = []
    for batch in np.array_split(values, 7):  # batches of frames, as the Animator feeds it
        kp = Keypoints(torch.tensor(batch, dtype=torch.float32), None)
        out.append(smooth(kp).value.numpy())
    return np.concatenate(out)


def test_smoothing_brings_keypoints_closer_to_the_true_path():
    true, observed = _jittery_path(300)
    raw = np.abs(observed - true)[20:].mean()
    smoothed = np.abs(_filtered(observed, DEFAULT_STRENGTH) - true)[20:].mean()
    reduction = 1 - smoothed / raw
    print(f"keypoint error {raw:.4f} -> {smoothed:.4f}: {100 * reduction:.0f}% less")
    assert reduction > 0.25


def test_smoothing_follows_a_step_within_one_frame():
    step = np.zeros((60, 10, 2))
    step[30:] = 0.3
    rng = np.random.default_rng(3)
    response = _filtered(step + rng.normal(0, 0.01, step.shape), DEFAULT_STRENGTH).mean(axis=(1, 2)) / 0.3
    assert response[30] > 0.85 and response[31] > 0.95  # at most one frame late
    assert np.abs(response[33:] - 1).max() < 0.05


def test_the_reference_frame_is_never_filtered(golden_dir, tiny_model):
    from fomm_lab import Animator

    gold = np.load(golden_dir / "tiny-vox-golden.npz")
    smooth = Animator(tiny_model, dtype="float32", smoothing=1.0)
    plain = Animator(tiny_model, dtype="float32", smoothing=0.0)
    for animator in (smooth, plain):
        animator.set_source(gold["source"])
        animator.step(gold["driving"][1])  # the filter has state now
        animator.set_reference(gold["driving"][2])
    assert torch.equal(smooth._reference.value, plain._reference.value)
    first = [smooth.step(gold["driving"][0]), plain.step(gold["driving"][0])]
    assert np.array_equal(first[0], first[1])  # the filter starts afresh at a new reference


# --------------------------------------------------------------------------------- tight crops


@pytest.fixture(scope="module")
def drifting_clip(tmp_path_factory) -> Path:
    """A real face drifting across a 640x480 frame (left to right and down) over 3 s."""
    patch = np.asarray(Image.fromarray(face_patch()).resize((170, 170), Image.LANCZOS))
    background = _background(640, 480)
    frames = []
    for i in range(75):
        frame = background.copy()
        x, y = int(10 + 450 * i / 74), int(40 + 250 * i / 74)
        frame[y:y + 170, x:x + 170] = patch
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("drift") / "drift.mp4", frames, fps=25, progress=False)


def _face_fill(path: Path, haar: HaarDetector) -> list[float]:
    fills = []
    with read_video(path) as reader:
        for i, frame in enumerate(reader):
            if i % 8 == 0:
                faces = haar.detect(frame)
                fills.append(max(f.width for f in faces) / frame.shape[1] if faces else 0.0)
    return fills


def test_a_drifting_face_gets_a_crop_that_follows_it(drifting_clip, tmp_path, capsys):
    from fomm_lab.cli import main

    haar = HaarDetector()
    out = tmp_path / "follow.mp4"
    assert main(["crop", str(drifting_clip), "--output", str(out), "--detector", "haar", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "follow crop" in printed and "a fixed box would leave the face" in printed
    fills = _face_fill(out, haar)
    assert len(fills) >= 9 and min(fills) >= 0.35, fills
    static = tmp_path / "static.mp4"
    assert main(["crop", str(drifting_clip), "--output", str(static), "--mode", "static", "--detector", "haar",
                 "-q"]) == 0
    assert np.median(_face_fill(static, haar)) < 0.35  # what a single box gives
