"""Files that are not an enhancer's weights are refused with a CheckpointError naming the file, what it holds
and which enhancer it fits; nothing in them runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fomm_lab.enhance import KINDS, load_enhancer
from fomm_lab.errors import CheckpointError, ConfigError

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures" / "enhance-golden"
GPEN = FIXTURES / "gpen-tiny-512.pdparams"
GFPGAN = FIXTURES / "gfpgan-tiny-128.pth"
FOMM = TESTS / "fixtures" / "fomm-golden" / "tiny-vox-cpk.pth.tar"


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unknown_kind_lists_the_enhancers():
    assert KINDS == ("gpen", "gfpgan")
    with pytest.raises(ConfigError, match="unknown face enhancer 'codeformer': use one of gpen, gfpgan"):
        load_enhancer("codeformer", GPEN)


@pytest.mark.parametrize("kind", ["gpen", "gfpgan"])
def test_fomm_checkpoint_is_refused(kind):
    with pytest.raises(CheckpointError) as error:
        load_enhancer(kind, FOMM)
    message = str(error.value)
    assert str(FOMM) in message and "First Order Motion Model checkpoint (generator, kp_detector)" in message
    assert "load_model" in message and f"the {kind!r} enhancer needs" in message


def test_gpen_weights_given_as_gfpgan():
    with pytest.raises(CheckpointError, match=r"holds GPEN weights \(PaddleGAN's layout\), not GFPGAN weights.*"
                       r"for the 'gpen' enhancer") as error:
        load_enhancer("gfpgan", GPEN)
    assert str(GPEN) in str(error.value)


def test_gfpgan_weights_given_as_gpen():
    with pytest.raises(CheckpointError, match=r"holds GFPGAN weights \(clean architecture.*not GPEN weights.*"
                       r"for the 'gfpgan' enhancer") as error:
        load_enhancer("gpen", GFPGAN)
    assert str(GFPGAN) in str(error.value)


@pytest.mark.parametrize("source", [GPEN, GFPGAN])
def test_truncated_file(tmp_path, source):
    path = tmp_path / source.name
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    kind = "gpen" if source == GPEN else "gfpgan"
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        load_enhancer(kind, path)
    assert str(path) in str(error.value)


def test_missing_empty_and_html_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_enhancer("gpen", tmp_path / "GPEN-512.pdparams")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_enhancer("gfpgan", tmp_path / "empty.pth")
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html><body>quota exceeded</body></html>")
    with pytest.raises(CheckpointError, match="HTML page"):
        load_enhancer("gfpgan", tmp_path / "page.pth")


def _gfpgan_state() -> dict[str, torch.Tensor]:
    return dict(torch.load(GFPGAN, weights_only=True)["params_ema"])


def test_gfpgan_params_key_is_accepted(tmp_path):
    torch.save({"params": _gfpgan_state()}, tmp_path / "params.pth")
    assert load_enhancer("gfpgan", tmp_path / "params.pth").network.config.out_size == 128


def test_non_finite_weights_are_refused(tmp_path):
    state = _gfpgan_state()
    state["final_conv.weight"] = state["final_conv.weight"].clone()
    state["final_conv.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"params_ema": state}, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match="NaN or infinite") as error:
        load_enhancer("gfpgan", tmp_path / "nan.pth")
    assert "final_conv.weight" in str(error.value)

    from fomm_lab.engine.pdparams import read_pdparams  # the safe reader, also used to make the bad copy

    arrays = {key: np.asarray(value) for key, value in read_pdparams(GPEN).items()}
    arrays["final_linear.0.bias"] = np.full_like(arrays["final_linear.0.bias"], np.inf)
    (tmp_path / "inf.pdparams").write_bytes(pickle.dumps(arrays, protocol=4))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_enhancer("gpen", tmp_path / "inf.pdparams")


def test_gfpgan_layout_is_strict(tmp_path):
    state = _gfpgan_state()
    del state["toRGB.0.bias"]  # GFPGANer loads with strict=True: even unused entries must be there
    torch.save({"params_ema": state}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="do not fit") as error:
        load_enhancer("gfpgan", tmp_path / "missing.pth")
    assert "missing (1): toRGB.0.bias" in str(error.value)


def test_gpen_missing_parameter_is_refused_but_extras_are_ignored(tmp_path):
    from fomm_lab.engine.pdparams import read_pdparams

    arrays = {key: np.asarray(value) for key, value in read_pdparams(GPEN).items()}
    arrays["generator.blur.kernel"] = np.ones((4, 4), np.float32)  # unknown: ignored, as load_dict does
    (tmp_path / "extra.pdparams").write_bytes(pickle.dumps(arrays, protocol=4))
    assert load_enhancer("gpen", tmp_path / "extra.pdparams").network.config.size == 512
    del arrays["generator.conv1.noise.weight"]
    (tmp_path / "missing.pdparams").write_bytes(pickle.dumps(arrays, protocol=4))
    with pytest.raises(CheckpointError, match="missing .1.: generator.conv1.noise.weight"):
        load_enhancer("gpen", tmp_path / "missing.pdparams")


def test_pickles_that_run_code_are_refused(tmp_path, capsys):
    torch.save({"params_ema": {"x": _Payload()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="would run code"):
        load_enhancer("gfpgan", tmp_path / "evil.pth")
    (tmp_path / "evil.pdparams").write_bytes(pickle.dumps({"ecd0.0.0.weight": _Payload()}, protocol=4))
    with pytest.raises(CheckpointError, match="would run code"):
        load_enhancer("gpen", tmp_path / "evil.pdparams")
    assert "must never run" not in capsys.readouterr().out


def test_unknown_weights_are_described(tmp_path):
    torch.save({"params_ema": {"layer.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"holds 1 entries of an unknown network \(such as layer.weight\).*"
                       "fits no face enhancer"):
        load_enhancer("gfpgan", tmp_path / "other.pth")
