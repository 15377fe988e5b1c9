"""One session for every route: the CLI, ``run_job`` and ``Animation`` give the same frames for the same job, and
a new model family goes through it without any change to the pipeline, the CLI or the lab."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from clips import make_test_video

from fomm_lab import AnimateJob, Animation, CropOptions, MotionOptions, OutputOptions, RuntimeOptions, run_job
from fomm_lab.cli import main
from fomm_lab.engine import families
from fomm_lab.engine.family import InferenceNetworks, MotionMode, MotionModel
from fomm_lab.engine.keypoints import Keypoints
from fomm_lab.errors import CheckpointError
from fomm_lab.geometry import Size
from fomm_lab.io import read_video

UNCROPPED = CropOptions(source=False, driving=False)
"""The tiny test model is of faces; the clip is a test pattern: no face cropping."""


def frames_of(path: Path) -> np.ndarray:
    with read_video(path) as reader:
        return np.stack(list(reader))


@pytest.fixture()
def inputs(tmp_path, astronaut):
    from fomm_lab.io.image import save_png

    photo = save_png(tmp_path / "photo.png", astronaut[::4, ::4])
    clip = make_test_video(tmp_path / "clip.mp4", frames=6, fps=10, size=(96, 80))
    return photo, clip


def test_the_cli_run_job_and_the_session_write_the_same_frames(tmp_path, inputs, tiny_vox):
    photo, clip = inputs
    config, checkpoint = tiny_vox
    runtime = RuntimeOptions(device="cpu", dtype="float32")
    job = AnimateJob(source=photo, driving=clip, model=config, checkpoint=checkpoint, runtime=runtime,
                     crop=UNCROPPED, output=OutputOptions(video=tmp_path / "api.mp4"))
    run_job(job, progress=False)
    with Animation(job, progress=False) as session:
        session.animate(output=OutputOptions(video=tmp_path / "session.mp4"))
        session.animate(output=OutputOptions(video=tmp_path / "absolute.mp4"), relative=False)
    assert main(["animate", "--source", str(photo), "--driving", str(clip), "--config", str(config), "--checkpoint",
                 str(checkpoint), "--device", "cpu", "--dtype", "float32", "--output", str(tmp_path / "cli.mp4"),
                 "--no-crop-source", "--no-crop-driving", "-q"]) == 0
    api, cli, session_frames = (frames_of(tmp_path / f"{n}.mp4") for n in ("api", "cli", "session"))
    assert api.shape == (6, 256, 256, 3)
    np.testing.assert_array_equal(api, cli)
    np.testing.assert_array_equal(api, session_frames)
    assert np.abs(frames_of(tmp_path / "absolute.mp4").astype(int) - api).max() > 0  # the override took effect


def test_a_config_without_weights_is_an_error_before_any_work(tmp_path, inputs, tiny_vox):
    photo, clip = inputs
    job = AnimateJob(source=photo, driving=clip, model=tiny_vox[0], output=OutputOptions(video=tmp_path / "o.mp4"))
    with pytest.raises(CheckpointError, match="comes without weights") as caught:
        Animation(job).check()
    assert "--random-weights" in caught.value.first_line(lambda r: __import__("fomm_lab.options").options.cli_words(
        r.option, r.value))
    assert not (tmp_path / "o.mp4").exists()


# -- a toy family, registered in the test only --------------------------------------------------


class ShiftNetworks(InferenceNetworks):
    """The toy family's networks: the 'keypoint' is the frame's mean colour; generating shifts the source's
    colour by the transferred keypoint."""

    def prepare(self, source, keypoints):
        return source

    def generate(self, state, keypoints):
        return (state + keypoints.value[:, :1, :1].unsqueeze(-1) * 0.0 + keypoints.value[:, 0, 0].view(-1, 1, 1, 1)
                - 0.5).clamp(0, 1)


@dataclass
class ShiftModel(MotionModel):
    config: Any
    device: torch.device = torch.device("cpu")
    name: str = "shift"
    checkpoint: Path | None = None
    _inference: dict = field(default_factory=dict)

    family: ClassVar[str] = "shift"
    modes: ClassVar[tuple[MotionMode, ...]] = (MotionMode("relative", relative=True, adapt_scale=False),)

    @property
    def frame_size(self) -> Size:
        return Size(32, 32)

    def inference_networks(self, *, dtype=torch.float32, compile=False):
        def detect(frames):
            return Keypoints(frames.mean(dim=(1, 2, 3)).view(-1, 1, 1).expand(-1, 1, 2).contiguous())

        return ShiftNetworks(kp_detector=detect)


@dataclass(frozen=True)
class ShiftConfig:
    name: str
    path: Path | None
    frame_size: Size = Size(32, 32)
    is_face_model: bool = False


def test_a_new_family_runs_through_the_session_without_touching_the_pipeline(tmp_path, inputs, monkeypatch):
    photo, clip = inputs
    yaml_path = tmp_path / "shift.yaml"
    yaml_path.write_text("shift_family: {strength: 1}\n")
    toy = families.Family("shift", lambda raw: isinstance(raw, dict) and "shift_family" in raw,
                          lambda raw, name, path: ShiftConfig(name, path),
                          lambda config, checkpoint, **kw: ShiftModel(config))
    monkeypatch.setattr(families, "FAMILIES", lambda: (toy, *families.families()))
    job = AnimateJob(source=photo, driving=clip, model=yaml_path, random_weights=True,
                     motion=MotionOptions(smoothing=0.0, relative=True, adapt_scale=False),
                     runtime=RuntimeOptions(device="cpu", dtype="float32"),
                     output=OutputOptions(video=tmp_path / "shift.mp4"))
    result = Animation(job, progress=False).run()
    frames = frames_of(result.outputs["video"])
    assert frames.shape == (6, 32, 32, 3) and result.frames == 6
    assert main(["animate", "--source", str(photo), "--driving", str(clip), "--config", str(yaml_path),
                 "--random-weights", "--device", "cpu", "--dtype", "float32", "--smoothing", "0",
                 "--no-adapt-scale", "--output", str(tmp_path / "cli.mp4"), "-q"]) == 0
    np.testing.assert_array_equal(frames_of(tmp_path / "cli.mp4"), frames)


def test_enhancement_runs_after_the_animation_and_before_the_outputs(tmp_path, inputs, tiny_vox):
    """--enhance gpen: each animated face goes through the enhancer (PaddleGAN's GPEN recipe, tiny random weights
    from the enhance golden fixtures), giving 512x512 faces; the CLI and the session agree."""
    photo, clip = inputs
    weights = Path(__file__).resolve().parents[1] / "fixtures" / "enhance-golden" / "gpen-tiny-512.pdparams"
    config, checkpoint = tiny_vox
    job = AnimateJob(source=photo, driving=clip, model=config, checkpoint=checkpoint, crop=UNCROPPED,
                     runtime=RuntimeOptions(device="cpu", dtype="float32"),
                     output=OutputOptions(video=tmp_path / "plain.mp4"))
    with Animation(job, progress=False) as session:
        plain = frames_of(session.animate().outputs["video"])
        enhanced = frames_of(session.animate(output=OutputOptions(
            video=tmp_path / "enhanced.mp4", enhance="gpen", enhancer_weights=weights)).outputs["video"])
        from fomm_lab.enhance import load_enhancer

        expected = load_enhancer("gpen", weights).enhance(plain)
    assert plain.shape == (6, 256, 256, 3) and enhanced.shape == (6, 512, 512, 3)
    # the video is H.264: compare with what the enhancer makes of the (decoded) plain frames, within coding loss
    assert np.abs(enhanced.astype(int) - expected).mean() < 6
    assert main(["animate", "--source", str(photo), "--driving", str(clip), "--config", str(config), "--checkpoint",
                 str(checkpoint), "--device", "cpu", "--dtype", "float32", "--enhance", "gpen", "--enhancer-weights",
                 str(weights), "--output", str(tmp_path / "cli.mp4"), "--no-crop-source", "--no-crop-driving",
                 "-q"]) == 0
    np.testing.assert_array_equal(frames_of(tmp_path / "cli.mp4"), enhanced)
