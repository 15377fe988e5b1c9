"""Clear errors for files that are not TPSMM checkpoints or do not fit the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tpsmm_support import CHECKPOINT, GOLDEN, YAML

from fomm_lab.engine.tpsmm.model import load_tpsmm
from fomm_lab.errors import CheckpointError

FOMM = GOLDEN.parent / "fomm-golden"


def test_fomm_checkpoint_given_as_tpsmm():
    with pytest.raises(CheckpointError) as error:
        load_tpsmm(YAML, FOMM / "tiny-vox-cpk.pth.tar", device="cpu")
    message = str(error.value)
    assert "tiny-vox-cpk.pth.tar is a First Order Motion Model checkpoint" in message
    assert "use it with a FOMM config" in message and "generator" in message


def test_tpsmm_checkpoint_given_with_a_fomm_config():
    from fomm_lab.engine.model import load_fomm

    with pytest.raises(CheckpointError) as error:
        load_fomm(FOMM / "tiny-vox.yaml", CHECKPOINT, device="cpu")
    message = str(error.value)
    assert "tiny-vox.pth.tar" in message and "'generator'" in message and "dense_motion_network" in message
    assert "it is a Thin-Plate Spline Motion Model checkpoint" in message and "use a TPSMM config (e.g. tpsmm-vox)" \
        in message


def test_not_a_tpsmm_checkpoint(tmp_path):
    torch.save({"kp_detector": {}, "epoch": 3}, tmp_path / "partial.pth.tar")
    with pytest.raises(CheckpointError, match="no 'dense_motion_network' or 'inpainting_network' entry: it is not a "
                                              "Thin-Plate Spline Motion Model checkpoint"):
        load_tpsmm(YAML, tmp_path / "partial.pth.tar", device="cpu")


def test_missing_file_and_web_page(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_tpsmm(YAML, tmp_path / "nothing.pth.tar", device="cpu")
    page = tmp_path / "vox.pth.tar"
    page.write_text("<!DOCTYPE html><html><body>Google Drive quota exceeded</body></html>")
    with pytest.raises(CheckpointError, match="HTML page"):
        load_tpsmm(YAML, page, device="cpu")


def _edited_yaml(tmp_path: Path, section: str, key: str, value) -> Path:
    raw = yaml.safe_load(YAML.read_text())
    raw["model_params"][section][key] = value
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_checkpoint_of_another_topology(tmp_path):
    with pytest.raises(CheckpointError) as error:
        load_tpsmm(_edited_yaml(tmp_path, "common_params", "num_tps", 10), CHECKPOINT, device="cpu")
    message = str(error.value)
    assert "does not fit TPSMM config" in message and "the file has num_tps 3" in message
    assert "kp_detector: shape" in message


def test_non_finite_weights(tmp_path):
    state = torch.load(CHECKPOINT, weights_only=True)
    state["inpainting_network"]["final.bias"] = torch.full_like(state["inpainting_network"]["final.bias"], float("nan"))
    torch.save(state, tmp_path / "nan.pth.tar")
    with pytest.raises(CheckpointError, match="NaN or infinite weights.*inpainting_network.final.bias"):
        load_tpsmm(YAML, tmp_path / "nan.pth.tar", device="cpu")


def test_background_predictor_asked_for_but_absent(tmp_path):
    state = torch.load(CHECKPOINT, weights_only=True)
    del state["bg_predictor"]
    torch.save(state, tmp_path / "nobg.pth.tar")
    load_tpsmm(YAML, tmp_path / "nobg.pth.tar", device="cpu")  # inference does not need it
    with pytest.raises(CheckpointError, match="has no bg_predictor"):
        load_tpsmm(YAML, tmp_path / "nobg.pth.tar", device="cpu", bg_predictor=True)


def test_code_in_the_pickle_is_refused(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth.tar"
    torch.save({"kp_detector": Payload()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="would run code"):
        load_tpsmm(YAML, path, device="cpu")
