"""The notebook's steps (:class:`fomm_lab.lab.notebook.NotebookLab`) as a first-time user meets them (issue 28):
offline model loading said in the notebook's words, parameters that win when edited while the user's own later
choices are kept, the waiting lines, the files export writes, the comparison of models, enhancement, the
recorder's sound and figures whose labels neither overlap nor vanish on a light photo."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from clips import decode_audio, face_clip_frames, face_patch, make_face_clip
from PIL import Image

from fomm_lab.hub import registry
from fomm_lab.hub.registry import MODELS, Mirror

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures"
TINY_TPSMM = (GOLDEN / "tpsmm-golden" / "tiny-vox.yaml", GOLDEN / "tpsmm-golden" / "tiny-vox.pth.tar")


@pytest.fixture(autouse=True)
def _offline(tmp_path_factory, monkeypatch):
    """No face-alignment weights (Haar boxes) and a fresh checkpoint cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    from skimage import data

    astronaut = data.astronaut()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(astronaut[:, ::-1].copy()).save(folder / "mirrored.png")
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(folder / "wall.png")  # no face
    return {p.stem: p for p in folder.glob("*.png")}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_face_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=1.2, fps=10, size=(320, 240),
                          audio=True)


def _lab(tmp_path: Path, photo: Path, config: str = "vox", checkpoint: str | None = None, **more):
    from fomm_lab.lab.notebook import NotebookLab

    lab = NotebookLab()
    _configure(lab, tmp_path, photo, config, checkpoint, **more)
    return lab


def _configure(lab, tmp_path: Path, photo: Path, config: str = "vox", checkpoint: str | None = None, **more):
    parameters = {"config": config, "checkpoint": checkpoint, "device": "cpu", "dtype": "float32",
                  "source_image": str(photo), "output_dir": str(tmp_path / "out"), "interactive": True,
                  "download_face_weights": False, "face_detector": "haar", "smoothing": 0.0, **more}
    lab.configure(**parameters)


def _tiny(lab_kwargs: dict, tiny_vox) -> dict:
    return {"config": str(tiny_vox[0]), "checkpoint": str(tiny_vox[1]), **lab_kwargs}


def _dead_url(name: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


# ------------------------------------------------------------------------------- 1: model loading, offline


def test_an_offline_model_says_in_the_notebooks_words_how_to_go_on(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry.MODELS, "vox", dataclasses.replace(MODELS["vox"], mirrors=(
        Mirror(_dead_url("vox-cpk.pth.tar")), Mirror(_dead_url("vox-cpk.pdparams"), format="pdparams"),
        Mirror("https://example.org/folder", "manual", "the authors' folder"))))
    lab = _lab(tmp_path, photos["astronaut"])
    assert lab.model() is None  # no traceback: said, and None
    said = capsys.readouterr().out
    assert said.startswith("Loading the model did not work: could not download the 'vox' checkpoint")
    assert 'set CHECKPOINT = "path/to/vox-cpk.pth.tar" in the parameters cell' in said
    assert "download_checkpoint(" not in said and "url=URL" not in said  # not Python's words
    assert "https://example.org/folder" in said
    lab.crop_photo()
    lab.job = dataclasses.replace(lab.job, driving=tmp_path / "clip.mp4")
    assert lab.prepare() is None and lab.animate() == {} and lab.live() is None
    later = capsys.readouterr().out
    assert later.count("Waiting: the model: the model cell above did not work") == 2  # prepare, live
    assert "Waiting: the prepared clip" in later  # animate
    assert "could not download" not in later  # said once, by the model cell


def test_a_config_without_weights_asks_for_checkpoint_not_noise(photos, tiny_vox, tmp_path, capsys):
    lab = _lab(tmp_path, photos["astronaut"], config=str(tiny_vox[0]))
    assert lab.model() is None
    said = capsys.readouterr().out
    assert "comes without weights" in said and "set CHECKPOINT = FILE in the parameters cell" in said
    assert "random" not in said.lower()
    _configure(lab, tmp_path, photos["astronaut"], config=str(tiny_vox[0]), checkpoint=str(tiny_vox[1]))
    model = lab.model()  # the parameter fixed: the next run of the cell loads it
    assert model is not None and f"Model {model.name} (fomm): 256x256 frames on cpu" in capsys.readouterr().out


# ------------------------------------------------------------------------------- 2: parameters that stick


def test_an_edited_source_image_wins_and_a_later_gallery_choice_is_kept(photos, tmp_path, capsys):
    folder = photos["astronaut"].parent
    lab = _lab(tmp_path, photos["astronaut"])
    assert lab.choose_photo(folder, photos["astronaut"]) is None  # the cell echoes no stale PosixPath
    assert lab._gallery.path == photos["astronaut"]
    lab._gallery._choice.value = photos["mirrored"]  # the user picks another photo in the dropdown
    _configure(lab, tmp_path, photos["astronaut"])  # setup re-run, SOURCE_IMAGE unchanged
    lab.choose_photo(folder, photos["astronaut"])
    assert lab.job.source == photos["mirrored"] and lab._gallery.path == photos["mirrored"]  # the choice is kept
    other = tmp_path / "elsewhere" / "edited.png"
    other.parent.mkdir()
    other.write_bytes(photos["astronaut"].read_bytes())
    _configure(lab, tmp_path, other)  # SOURCE_IMAGE edited: it takes effect...
    lab.choose_photo(folder, other)
    assert lab._gallery.path == other and other in dict(lab._gallery._choice.options).values()  # ...and is listed
    lab.crop_photo()
    assert f"Photo: {other.resolve()}" in capsys.readouterr().out


def test_uploads_stay_in_the_gallery_after_a_restart(photos, tmp_path):
    from fomm_lab.lab.notebook import NotebookLab

    folder = photos["astronaut"].parent
    lab = _lab(tmp_path, photos["astronaut"])
    lab.choose_photo(folder, photos["astronaut"])
    content = photos["mirrored"].read_bytes()
    lab._gallery._uploaded({"new": [{"name": "me.png", "content": memoryview(content)}]})
    upload = tmp_path / "out" / "uploads" / "me.png"
    assert lab._gallery.path == upload and upload.read_bytes() == content
    _configure(lab, tmp_path, photos["astronaut"])
    assert lab.job.source == upload  # the upload came after the parameter: it stays chosen

    restarted = NotebookLab()  # a new kernel: the upload is still on disk, and in the list
    _configure(restarted, tmp_path, photos["astronaut"])
    restarted.choose_photo(folder, photos["astronaut"])
    assert upload in dict(restarted._gallery._choice.options).values()
    assert "me.png (uploaded)" in dict(restarted._gallery._choice.options)


def test_driving_video_and_recording_whichever_came_last(photos, tmp_path, clip, capsys):
    lab = _lab(tmp_path, photos["astronaut"])
    recorder = lab.recorder()
    assert lab.driving(None) is None
    assert "Waiting: no driving clip yet" in capsys.readouterr().out
    recorded = tmp_path / "webcam.mp4"
    recorded.write_bytes(clip.read_bytes())
    recorder.path = str(recorded)  # the user records a clip
    assert lab.driving(None) == recorded
    assert lab.driving(str(clip)) == clip  # DRIVING_VIDEO set afterwards: it wins
    assert lab.driving(str(clip)) == clip  # and stays while unchanged
    again = tmp_path / "webcam-2.mp4"
    again.write_bytes(clip.read_bytes())
    recorder.path = str(again)  # a new recording after the parameter: the recording wins
    assert lab.driving(str(clip)) == again
    assert "(the recording)" in capsys.readouterr().out


def test_after_a_photo_without_a_face_the_next_cells_say_so(photos, tmp_path, clip, capsys):
    lab = _lab(tmp_path, photos["wall"])
    assert lab.crop_photo() is None
    said = capsys.readouterr().out
    assert "Cropping the photo did not work: no face was found" in said and "SOURCE_BOX" in said
    lab.driving(str(clip))
    lab.prepare()
    assert "Waiting: a photo: the photo cell above did not work" in capsys.readouterr().out


# ------------------------------------------------------------------------------- 8, 10: animate, compare, export


@pytest.mark.slow
def test_animate_export_and_models_comparison(photos, clip, tiny_vox, tmp_path, capsys):
    from fomm_lab.io import read_video

    lab = _lab(tmp_path, photos["astronaut"], interactive=False, crop_source=True, crop_driving=True,
               **_tiny({}, tiny_vox))
    lab.crop_photo()
    lab.model()
    lab.driving(str(clip))
    assert lab.prepare() is not None
    said = capsys.readouterr().out
    assert "ffmpeg" in said and "driving-1-crop.mp4" in said  # the crop plan with its command
    assert "face 0 at x0=" in said  # the one numbering
    first = lab.animate()
    assert list(first) == ["relative", "absolute + adapt scale", "relative + adapt scale"]
    assert "replacing" not in capsys.readouterr().out
    lab.animate()
    assert capsys.readouterr().out.count("replacing") == 3  # re-animating says it replaces the earlier files

    lab.compare()  # the player needs no camera
    assert lab.export() is not None
    said = capsys.readouterr().out
    out = tmp_path / "out"
    written = ["comparison.mp4", "comparison.gif", "animation-relative.gif", "animation-absolute-adapt-scale.gif",
               "animation-relative-adapt-scale.gif"]
    for name in written:  # every file export writes is listed
        assert (out / name).is_file() and str(out / name) in said, name
    with read_video(out / "comparison.mp4") as reader:
        frame = next(iter(reader))
    assert frame.shape[1] >= 5 * 256  # photo | driving | 3 animations, like the CLI's side-by-side
    crop = lab.prepared.source.images[0]
    assert np.abs(frame[-256:, :256].astype(int) - crop).mean() < 20  # the photo column is the photo's crop

    results = lab.compare_models([tuple(map(str, tiny_vox)), tuple(map(str, TINY_TPSMM)), "tpsmm-vox"])
    said = capsys.readouterr().out
    assert len(results) == 2 and all(p.is_file() for p in results.values())
    assert "Waiting: tpsmm-vox's weights" in said and "in COMPARE_MODELS" in said  # waits politely, others shown
    with read_video(out / "models-comparison.mp4") as reader:
        assert next(iter(reader)).shape[1] >= 4 * 256


@pytest.mark.slow
def test_enhancement_before_and_after(photos, clip, tiny_vox, tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    lab = _lab(tmp_path, photos["astronaut"], interactive=False, **_tiny({}, tiny_vox))
    assert lab.enhance() is None
    assert 'set ENHANCE = "gpen" or "gfpgan"' in capsys.readouterr().out
    _configure(lab, tmp_path, photos["astronaut"], enhance="gpen", **_tiny({}, tiny_vox))
    weights = GOLDEN / "enhance-golden" / "gpen-tiny-512.pdparams"
    lab.job = dataclasses.replace(lab.job, output=dataclasses.replace(lab.job.output, enhancer_weights=weights))
    lab.crop_photo()
    lab.driving(str(clip))
    lab.prepare()
    path = lab.enhance()
    assert path is not None and path.name == "animation-relative-adapt-scale-gpen.mp4" and path.is_file()


# ------------------------------------------------------------------------------- the recorder's sound


def _opus(path: Path, seconds: float = 1.5) -> bytes:
    from fomm_lab.io.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-c:a", "libopus", str(path)],
                   check=True)
    return path.read_bytes()


def _record(rec, frames, audio: bytes | None) -> None:
    import cv2

    rec._handle_custom_msg({"type": "start", "fps": 10}, [])
    for i, frame in enumerate(frames):
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
        rec._handle_custom_msg({"type": "frame", "index": i}, [memoryview(jpeg)])
    if audio is not None:
        rec._handle_custom_msg({"type": "audio"}, [memoryview(audio)])
    rec._handle_custom_msg({"type": "stop"}, [])


def test_the_recorder_keeps_the_microphones_sound_or_says_it_is_silent(tmp_path):
    from fomm_lab.io import probe_video
    from fomm_lab.lab import WebcamRecorder

    frames = list(face_clip_frames(seconds=1, fps=10, size=(160, 120)))
    rec = WebcamRecorder(tmp_path / "out", fps=10, max_seconds=2)
    assert rec.sound  # on by default (a toggle in the widget)
    _record(rec, frames, _opus(tmp_path / "mic.webm"))
    assert rec.error == "" and rec.has_sound and "with sound" in rec.status
    info = probe_video(rec.video_path)
    assert info.has_audio
    sound = decode_audio(rec.video_path)
    assert len(sound) > 0.8 * 8000 and np.abs(sound).max() > 0.1  # the tone, about as long as the clip
    assert len(list((tmp_path / "out").iterdir())) == 1  # no temporary files left

    rec.sound_note = "sound off"
    _record(rec, frames, None)
    assert not rec.has_sound and "silent: sound off" in rec.status
    assert not probe_video(rec.video_path).has_audio


def test_broken_sound_leaves_the_silent_clip_and_says_why(tmp_path):
    from fomm_lab.lab import WebcamRecorder

    rec = WebcamRecorder(tmp_path, fps=10, max_seconds=2)
    _record(rec, list(face_clip_frames(seconds=1, fps=10, size=(160, 120))), b"not audio at all")
    assert rec.error == "" and rec.video_path.is_file() and not rec.has_sound
    assert "silent: the sound could not be added" in rec.status
    assert sorted(p.name for p in tmp_path.iterdir()) == [rec.video_path.name]


# ------------------------------------------------------------------------------- 5: figures


def _contrast(a, b) -> float:
    from matplotlib.colors import to_rgb

    def luminance(colour) -> float:
        channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _check_figure(fig) -> None:
    """No two texts overlap; box labels are inside their image and readable (contrast >= 4.5 on their patch);
    every box's colour is in its axes' legend."""
    from matplotlib.patches import Rectangle

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    from matplotlib.text import Text

    found = fig.findobj(Text)
    texts = [t for t in dict.fromkeys(found) if t.get_visible() and t.get_text().strip()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for i, (text_a, a) in enumerate(boxes):
        for text_b, b in boxes[i + 1:]:
            assert not a.overlaps(b), f"{text_a!r} overlaps {text_b!r}"
    for ax in fig.axes:
        edges = {tuple(p.get_edgecolor()) for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()}
        if not edges:
            continue
        legend = ax.get_legend()
        assert legend is not None, "boxes without a legend"
        handles = {tuple(h.get_edgecolor()) for h in legend.legend_handles}
        assert edges <= handles, "a box colour the legend does not explain"
        image = ax.get_window_extent(renderer)
        for text in ax.texts:
            extent = text.get_window_extent(renderer)
            assert image.x0 - 1 <= extent.x0 and extent.x1 <= image.x1 + 1 and image.y0 - 1 <= extent.y0 \
                and extent.y1 <= image.y1 + 1, f"label {text.get_text()!r} outside its image"
            patch = text.get_bbox_patch()
            assert patch is not None and _contrast(text.get_color(), patch.get_facecolor()) >= 4.5


def test_photo_figure_labels_faces_by_number_without_overlaps(astronaut):
    import matplotlib

    matplotlib.use("Agg")
    from fomm_lab.faces.crop import crop_at
    from fomm_lab.geometry import Box
    from fomm_lab.lab.figures import photo_crop_figure
    from fomm_lab.pipeline.prepare import SourcePlan

    light = np.full((400, 900, 3), 250, np.uint8)  # a white photo: yellow text on it would not read
    light[0:180, 40:220] = np.asarray(Image.fromarray(face_patch()).resize((180, 180)))
    light[150:330, 600:780] = np.asarray(Image.fromarray(face_patch()).resize((180, 180)))
    crops = [crop_at(light, Box(40, 0, 220, 180), 256, index=0), crop_at(light, Box(600, 150, 780, 330), 256, index=1)]
    fig = photo_crop_figure(SourcePlan(light, [c.image for c in crops], crops))
    _check_figure(fig)
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert labels == {"face 0", "face 1"}  # the one numbering, 0 = leftmost
    assert [ax.get_title() for ax in fig.axes[1:]] == ["face 0: what the model sees", "face 1: what the model sees"]


def test_crop_plan_figure_has_a_legend_and_no_label_over_the_title(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from fomm_lab.faces import HaarDetector, plan_video_crop
    from fomm_lab.io import read_video
    from fomm_lab.lab.figures import crop_plan_figure

    path = make_face_clip(tmp_path / "top.mp4", seconds=1.2, fps=10, size=(320, 240))
    plan = plan_video_crop(path, 256, detector=HaarDetector(), progress=False)
    with read_video(path) as reader:
        frame = next(iter(reader))
    _check_figure(crop_plan_figure(plan, frame))
