"""Wrong files and impossible requests are refused with errors that say which file, what it holds and what to
give instead; nothing in a file runs code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from swap_support import FOMM, PARSER, SEGMENTS, SEGMENTS_KP_LAYOUT, YAML, golden, swapper

from fomm_lab.errors import CheckpointError, ConfigError
from fomm_lab.swap import load_swapper

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the fixtures were made on one thread

FOMM_CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "fomm-golden" / "tiny-vox.yaml"


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_fomm_checkpoint_as_segment_model():
    with pytest.raises(CheckpointError, match="First Order Motion Model checkpoint, not a co-part segmentation") as e:
        load_swapper(YAML, FOMM)
    assert str(FOMM) in str(e.value) and "motion_checkpoint" in str(e.value) and "vox-10segments" in str(e.value)


@pytest.mark.parametrize("segments", [SEGMENTS, SEGMENTS_KP_LAYOUT])
def test_segment_checkpoint_as_motion_checkpoint(segments):
    with pytest.raises(CheckpointError, match="segment model.* not a First Order Motion Model checkpoint") as e:
        load_swapper(YAML, SEGMENTS, motion_checkpoint=segments)
    assert str(segments) in str(e.value) and "vox-cpk.pth.tar" in str(e.value)


def test_parser_weights_as_segment_model():
    with pytest.raises(CheckpointError, match="BiSeNet face parser's weights, not a co-part segmentation"):
        load_swapper(YAML, PARSER)


@pytest.mark.parametrize("wrong", [SEGMENTS, FOMM])
def test_other_files_as_parser(wrong):
    with pytest.raises(CheckpointError, match="not the BiSeNet face parser: give .*79999_iter.pth") as e:
        load_swapper(YAML, SEGMENTS, parser=wrong)
    assert str(wrong) in str(e.value)


def test_parser_of_another_class_count(tmp_path):
    state = torch.load(PARSER, weights_only=True)
    for head in ("conv_out", "conv_out16", "conv_out32"):
        state[f"{head}.conv_out.weight"] = state[f"{head}.conv_out.weight"][:11]
    torch.save(state, tmp_path / "parser-11.pth")
    with pytest.raises(CheckpointError, match="predict 11 classes, not the 19"):
        load_swapper(YAML, SEGMENTS, parser=tmp_path / "parser-11.pth")


def test_supervised_swap_without_parser():
    model = load_swapper(YAML, SEGMENTS)
    with pytest.raises(CheckpointError, match="no parser weights were loaded: pass parser=PATH to 79999_iter.pth"):
        model.swap(golden()["source"], golden()["target"], [1], supervised=True)


def test_fomm_checkpoint_with_other_keypoint_count(tmp_path):
    data = torch.load(FOMM, weights_only=True)
    for name in ("kp", "jacobian"):
        per = 1 if name == "kp" else 4
        for suffix in ("weight", "bias"):
            data["kp_detector"][f"{name}.{suffix}"] = data["kp_detector"][f"{name}.{suffix}"][:5 * per]
    torch.save(data, tmp_path / "fomm-5kp.pth.tar")
    with pytest.raises(CheckpointError, match="has 5 keypoints; the FOMM-aligned part swap works with a 10-keypoint"):
        load_swapper(YAML, SEGMENTS, motion_checkpoint=tmp_path / "fomm-5kp.pth.tar")


def test_fomm_mode_needs_its_checkpoint_and_supervised_masks():
    data = golden()
    with pytest.raises(CheckpointError, match="pass motion_checkpoint=PATH"):
        load_swapper(YAML, SEGMENTS, parser=PARSER).options([1], supervised=True, first_order_motion=True)
    with pytest.raises(ValueError, match="supervised"):
        swapper().swap(data["source"], data["target"], [1], first_order_motion=True)


@pytest.mark.parametrize("supervised, index, words", [
    (False, 11, "has 10 parts: 1 .. 10"), (False, -1, "has 10 parts"), (True, 19, "has 19 classes: 0 .. 18"),
])
def test_parts_out_of_range(supervised, index, words):
    with pytest.raises(CheckpointError, match=f"part index {index} is out of range: .*{words}"):
        swapper().swap(golden()["source"], golden()["target"], [1, index], supervised=supervised)


def test_errors_come_before_any_frame_is_read():
    def frames():
        raise AssertionError("read")
        yield

    with pytest.raises(CheckpointError):
        swapper().swap(golden()["source"], frames(), [12])


def test_config_that_does_not_fit_the_checkpoint(tmp_path):
    raw = yaml.safe_load(YAML.read_text())
    raw["model_params"]["common_params"]["num_segments"] = 5
    (tmp_path / "five.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(CheckpointError, match="does not fit the config") as e:
        load_swapper(tmp_path / "five.yaml", SEGMENTS)
    assert "shift.weight" in str(e.value)


def test_fomm_config_is_not_a_segment_config():
    with pytest.raises(ConfigError, match="First Order Motion Model config .* not a co-part segmentation"):
        load_swapper(FOMM_CONFIG, SEGMENTS)


def test_code_in_a_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth.tar"
    path.write_bytes(pickle.dumps({"reconstruction_module": _Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match="would run code"):
        load_swapper(YAML, path)
    assert "must never run" not in capsys.readouterr().out


def test_missing_and_damaged_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_swapper(YAML, tmp_path / "nothing.pth.tar")
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(PARSER.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="face parser weights .* truncated or corrupt"):
        load_swapper(YAML, SEGMENTS, parser=damaged)


def test_frames_of_another_size():
    with pytest.raises(ValueError, match=r"shape \(256, 256, 3\)"):
        swapper().swap(np.zeros((128, 128, 3), np.uint8), [], [1])
