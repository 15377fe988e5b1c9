"""The face swap job end to end on real media and the tiny segment model of the golden fixtures: the photo's face
goes into the target video's face track, pasted back into the full-resolution target with its sound; the faces
are found by OpenCV's Haar cascades (no face-alignment weights); errors leave nothing written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from clips import _background, face_patch, make_face_clip, make_test_video

from fomm_lab import AnimateJob, Animation, FaceSwapOptions, Swap, SwapJob
from fomm_lab.errors import CheckpointError, ConfigError, FaceIndexError, FommLabError, NoFaceError
from fomm_lab.hub.registry import FACE_PARSERS, SWAPPERS
from fomm_lab.io import probe_video, read_image, read_video, write_video
from fomm_lab.io.image import save_png
from fomm_lab.options import cli_words
from fomm_lab.pipeline import CropOptions, OutputOptions, RuntimeOptions
from fomm_lab.pipeline.swap import FACE_PARTS, SEGMENT_PARTS

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "swap-golden"
TINY = {"config": GOLDEN / "tiny-vox-10segments.yaml", "checkpoint": GOLDEN / "tiny-vox-10segments.pth.tar",
        "parser": GOLDEN / "tiny-bisenet-79999_iter.pth"}
FOMM_CHECKPOINT = GOLDEN / "tiny-vox-first-order.pth.tar"
SIZE = (320, 240)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the fixtures were made on one thread


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut) -> dict[str, Path]:
    """The astronaut photo, a 6-frame 320x240 target with her face (still) and sound, a clip without a face,
    a photo without a face, and a 480x240 target with two faces (the face and its mirror image)."""
    folder = tmp_path_factory.mktemp("swap-media")
    import cv2

    two = _background(480, 240).copy()
    patch = cv2.resize(face_patch(), (200, 200), interpolation=cv2.INTER_AREA)
    two[20:220, 20:220] = patch
    two[20:220, 260:460] = patch[:, ::-1]
    return {
        "photo": save_png(folder / "photo.png", astronaut),
        "target": make_face_clip(folder / "target.mp4", seconds=0.6, fps=10, size=SIZE, audio=True, motion=False),
        "faceless": make_test_video(folder / "faceless.mp4", frames=6, fps=10, size=SIZE),
        "blank": save_png(folder / "blank.png", _background(200, 160)),
        "two": write_video(folder / "two.mp4", [two] * 6, fps=10, progress=False),
    }


def swap_job(media, output: OutputOptions, target: str = "target", **swap) -> SwapJob:
    return SwapJob(source=media["photo"], target=media[target], swap=FaceSwapOptions(**{**TINY, **swap}),
                   crop=CropOptions(detector="haar"), runtime=RuntimeOptions(device="cpu", dtype="float32"),
                   output=output)


def frames_of(path: Path) -> np.ndarray:
    if path.is_dir():
        return np.stack([read_image(p, max_size=None) for p in sorted(path.glob("*.png"))])
    with read_video(path) as reader:
        return np.stack(list(reader))


def inside(box, shape) -> np.ndarray:
    """Mask of the pixels of the crop square ``box`` in a frame of ``shape``."""
    mask = np.zeros(shape[:2], bool)
    x0, y0, x1, y1 = box.as_ints()
    mask[y0:y1, x0:x1] = True
    return mask


def ellipse(box, shape, radius: float = 0.6) -> np.ndarray:
    """Mask of the pixels well inside the ellipse inscribed in ``box`` (where the swapped face is pasted)."""
    x0, y0, x1, y1 = box.as_ints()
    ys, xs = np.mgrid[:shape[0], :shape[1]]
    return ((xs + 0.5 - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 + ((ys + 0.5 - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 \
        < radius ** 2


@pytest.fixture(scope="module")
def unsupervised(media, tmp_path_factory):
    """One session, unsupervised: lossless PNG frames with the job's options, then a hard mask on the same crops."""
    out = tmp_path_factory.mktemp("swap-unsup")
    job = swap_job(media, OutputOptions(video=out / "soft"), supervised=False)
    with Swap(job, progress=False) as session:
        soft = session.run()
        hard = session.swap(output=OutputOptions(video=out / "hard"), hard_mask=True)
    return soft, hard, out


def test_the_swap_is_pasted_into_the_full_resolution_target(media, unsupervised):
    result, _, out = unsupervised
    target = frames_of(media["target"]).astype(int)
    frames = frames_of(out / "soft").astype(int)
    assert frames.shape == target.shape == (6, 240, 320, 3)
    assert result.frames == 6 and result.swapped == 6 and result.dtype == "float32"
    plan = result.prepared.plan
    track = plan.tracks[result.prepared.track]
    for index, (got, want) in enumerate(zip(frames, target)):
        box = track.box_at(index)
        outside = ~inside(box, got.shape)
        np.testing.assert_array_equal(got[outside], want[outside])  # lossless PNGs: exactly the target's
        face = ellipse(box, got.shape)
        assert np.abs(got[face] - want[face]).mean() > 10  # the face itself is the (random-weight) swap
    assert result.outputs == {"video": out / "soft"}


def test_overrides_change_the_mask_on_the_same_crops(unsupervised):
    soft, hard, out = unsupervised
    assert hard.prepared is soft.prepared
    difference = np.abs(frames_of(out / "soft").astype(int) - frames_of(out / "hard").astype(int))
    assert difference.max() > 0


@pytest.mark.slow
def test_supervised_swap_writes_video_side_by_side_and_gif_with_the_targets_sound(media, tmp_path):
    output = OutputOptions(video=tmp_path / "out.mp4", side_by_side=tmp_path / "sbs.mp4", gif=tmp_path / "out.gif")
    result = Swap(swap_job(media, output, supervised=True, source_segmentation=True), progress=False).run()
    assert set(result.outputs) == {"video", "side_by_side", "gif"}
    info = probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height) == SIZE and info.has_audio
    assert probe_video(tmp_path / "sbs.mp4").has_audio
    frames, target = frames_of(tmp_path / "out.mp4").astype(int), frames_of(media["target"]).astype(int)
    assert len(frames) == 6
    box = result.prepared.plan.tracks[0].box
    outside = ~inside(box, target.shape[1:])
    assert np.abs(frames[:, outside] - target[:, outside]).mean() < 2  # the target, within coding loss
    face = ellipse(box, target.shape[1:])
    assert np.abs(frames[:, face] - target[:, face]).mean() > 10
    assert (tmp_path / "out.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")


@pytest.mark.parametrize("index", [0, 1])
def test_face_index_picks_a_face_of_a_two_face_target_from_the_left(media, tmp_path, index):
    result = Swap(swap_job(media, OutputOptions(video=tmp_path / "frames"), target="two", supervised=False,
                           face_index=index), progress=False).run()
    assert len(result.prepared.plan.tracks) == 2
    frames = frames_of(tmp_path / "frames").astype(int)
    target = frames_of(media["two"]).astype(int)
    changed = np.abs(frames - target).max(axis=(0, 3)) > 0
    columns = np.nonzero(changed.any(axis=0))[0]
    assert len(columns) > 0
    assert (columns < 240).all() if index == 0 else (columns >= 240).all()


def test_default_parts_follow_the_mode():
    assert FaceSwapOptions().chosen_parts == FACE_PARTS == tuple(range(1, 16))
    assert FaceSwapOptions(supervised=False).chosen_parts == SEGMENT_PARTS
    assert FaceSwapOptions(parts=(2,)).chosen_parts == (2,)


# -- errors: clear, and nothing written ------------------------------------------------------------


def test_an_animation_checkpoint_given_to_swap_is_named(media, tmp_path):
    job = swap_job(media, OutputOptions(video=tmp_path / "out.mp4"), checkpoint=FOMM_CHECKPOINT)
    with pytest.raises(CheckpointError, match="is a First Order Motion Model checkpoint, not a co-part segmentation"):
        Swap(job, progress=False).run()
    assert list(tmp_path.iterdir()) == []


def test_an_animation_model_name_given_to_swap_is_named(media, tmp_path):
    job = swap_job(media, OutputOptions(video=tmp_path / "out.mp4"), config="vox", checkpoint=None)
    with pytest.raises(ConfigError, match="vox is an animation model"):
        Swap(job).check()


@pytest.mark.parametrize("checkpoint", ["tiny-vox-10segments.pth.tar", "tiny-vox-10segments-kp-layout.pth.tar"])
def test_a_segment_checkpoint_given_to_animate_is_named(media, tmp_path, tiny_vox, checkpoint):
    job = AnimateJob(source=media["photo"], driving=media["target"], model=tiny_vox[0], checkpoint=GOLDEN / checkpoint,
                     output=OutputOptions(video=tmp_path / "out.mp4"), runtime=RuntimeOptions(device="cpu"))
    with pytest.raises(CheckpointError, match=r"co-part segmentation \(face swap\) checkpoint.*fomm-lab swap"):
        Animation(job, progress=False).run()
    assert not (tmp_path / "out.mp4").exists()


def test_a_photo_without_a_face_is_an_error_that_offers_its_box(media, tmp_path):
    job = swap_job(media, OutputOptions(video=tmp_path / "out.mp4"), supervised=False)
    job = SwapJob(**{**job.__dict__, "source": media["blank"]})
    with pytest.raises(NoFaceError, match="a face swap needs a face in the photo") as caught:
        Swap(job, progress=False).run()
    assert "--source-box X0 Y0 X1 Y1" in caught.value.first_line(lambda r: cli_words(r.option, r.value))
    assert list(tmp_path.iterdir()) == []


def test_a_target_without_a_face_track_is_an_error_that_offers_its_box(media, tmp_path):
    job = swap_job(media, OutputOptions(video=tmp_path / "out.mp4"), target="faceless", supervised=False)
    with pytest.raises(NoFaceError, match="needs a face track in the target video") as caught:
        Swap(job, progress=False).run()
    assert "--target-box X0 Y0 X1 Y1" in caught.value.first_line(lambda r: cli_words(r.option, r.value))
    assert list(tmp_path.iterdir()) == []


def test_a_face_index_beyond_the_targets_faces_is_an_error(media, tmp_path):
    job = swap_job(media, OutputOptions(video=tmp_path / "out.mp4"), target="two", supervised=False, face_index=2)
    with pytest.raises(FaceIndexError, match="has 2 face track"):
        Swap(job, progress=False).run()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("swap,message", [
    ({"supervised": False, "parts": (11,)}, "has 10 parts, 1 to 10"),
    ({"supervised": True, "parts": (19,)}, "classes are 0 to 18"),
    ({"checkpoint": None}, "comes without weights"),
    ({"motion_checkpoint": FOMM_CHECKPOINT, "supervised": False}, "supervised masks only"),
    ({"parser": GOLDEN / "missing.pth"}, "does not exist"),
])
def test_option_errors_come_before_any_weights_are_read(media, tmp_path, swap, message):
    job = swap_job(media, OutputOptions(video=tmp_path / "out.mp4"), **swap)
    session = Swap(job, progress=False)
    with pytest.raises(FommLabError, match=message):
        session.check()
    assert session._swapper is None


def test_an_output_that_is_an_input_is_refused(media):
    with pytest.raises(FommLabError, match="also an input"):
        Swap(swap_job(media, OutputOptions(video=media["target"]))).check()


# -- the registry and the shipped configs ------------------------------------------------------------


def _contract_elements() -> dict[str, int]:
    """Element counts of the official modules, from the fixtures' shape contract."""
    counts = {}
    for line in (GOLDEN / "vox-256-sem-segments-state-dict.tsv").read_text().splitlines():
        if line.startswith("["):
            name, _, rest = line[1:].partition("] ")
            counts[name] = int(rest.split(", ")[1].split()[0])
    return counts


@pytest.mark.parametrize("name", list(SWAPPERS))
def test_each_registry_segment_model_has_a_shipped_config_of_the_official_size(name):
    from fomm_lab.swap.config import load_segment_config
    from fomm_lab.swap.loader import build_generator, build_segmentation_module
    from fomm_lab.swap.registry import resolve_segment_model

    entry = SWAPPERS[name]
    path, found = resolve_segment_model(name)
    assert found is entry and entry.family == "swap" and entry.face and entry.frame_size == 256
    assert "CC BY-NC 4.0" in entry.licence and any(m.kind == "manual" for m in entry.mirrors)
    config = load_segment_config(path)
    counts = _contract_elements()
    segmentation = build_segmentation_module(config)
    assert sum(t.numel() for t in segmentation.state_dict().values()) == counts[f"{entry.config} segmentation_module"]
    generator = build_generator(config)
    own = {k: v for k, v in generator.state_dict().items() if not k.startswith(("blend_downsample", "dense_motion"))}
    assert sum(t.numel() for t in own.values()) == counts["vox-256-sem-Nsegments reconstruction_module (any N)"]
    assert resolve_segment_model(entry.config) == (path, entry)


def test_the_face_parser_entry_states_what_is_known():
    entry = FACE_PARSERS["bisenet"]
    assert entry.filename == "79999_iter.pth" and entry.family == "parser" and entry.frame_size == 512
    assert "not stated" in entry.licence and "MIT" in entry.licence and "CelebAMask-HQ" in entry.licence
    assert entry.mirrors[0].kind == "gdrive" and "154JgKpzCPW82qINcVieuPH3fZ2e0P812" in entry.mirrors[0].url


def test_registry_weights_are_verified_with_the_swap_readers(tmp_path):
    """A file placed in the cache by hand is verified by the swap's own reader: a segment checkpoint is used, an
    animation checkpoint under the segment model's name is refused (as a download of the wrong file would be)."""
    import shutil

    from fomm_lab.swap.registry import ensure_segment_checkpoint

    entry = SWAPPERS["vox-10segments"]
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    shutil.copyfile(TINY["checkpoint"], good / entry.filename)
    assert ensure_segment_checkpoint(entry, good, progress=False) == good / entry.filename
    shutil.copyfile(FOMM_CHECKPOINT, bad / entry.filename)
    with pytest.raises(CheckpointError, match="First Order Motion Model checkpoint, not a co-part segmentation"):
        ensure_segment_checkpoint(entry, bad, progress=False)


def test_the_display_size_keeps_the_aspect():
    from fomm_lab.pipeline.swap import _display_size

    assert tuple(_display_size(320, 240)) == (320, 240)
    width, height = _display_size(1920, 1080)
    assert height == 512 and width % 2 == 0 and math.isclose(width / height, 16 / 9, rel_tol=0.01)
