"""Frame sizes a config's networks cannot take are refused before any work, by ``train``, ``reconstruct`` and
``animate`` alike, with the smallest size that fits (:func:`fomm_lab.engine.config.check_frame_size`).

vox-256 at 64x64 is the reported case: its keypoint hourglass (scale 0.25, 5 blocks) gets 16 pixels and halves
them to nothing ("Calculated output size: (32x0x0)" in a raw traceback, after a checkpoint was written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fomm_lab.cli import main
from fomm_lab.engine.config import available_configs, check_frame_size, load_config, smallest_frame_side
from fomm_lab.engine.families import load_any_config
from fomm_lab.errors import ConfigError
from fomm_lab.pipeline import AnimateJob, OutputOptions
from fomm_lab.pipeline.check import check_job
from fomm_lab.train.trainer import TrainOptions, train

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def vox_at(tmp_path: Path, side: int, **kp_changes) -> Path:
    """vox-256.yaml with another frame_shape (and keypoint detector parameters)."""
    raw = yaml.safe_load(load_config("vox-256").path.read_text())  # type: ignore[union-attr]
    raw["dataset_params"]["frame_shape"] = [side, side, 3]
    raw["model_params"]["kp_detector_params"].update(kp_changes)
    path = tmp_path / f"vox-{side}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_every_shipped_config_and_fixture_fits_its_own_frame_size():
    for name in available_configs():
        check_frame_size(load_any_config(name))
    for path in [*FIXTURES.glob("*-golden/tiny-*.yaml"), *FIXTURES.glob("paddle-golden/*.yaml"),
                 FIXTURES / "train-tiny" / "tiny-train.yaml"]:
        if "segments" not in path.name:
            check_frame_size(load_any_config(path))


def test_the_rule_names_what_is_wrong_and_the_smallest_size_that_fits(tmp_path):
    vox = load_config("vox-256")
    assert smallest_frame_side(vox) == 128  # 128 x 0.25 = 32 = 2**5: the keypoint hourglass reaches 1x1
    with pytest.raises(ConfigError) as caught:
        check_frame_size(vox, 64)
    text = str(caught.value)
    assert "64x64" in text and "kp_detector_params" in text and "16-pixel" in text and "128x128" in text
    with pytest.raises(ConfigError, match=r"multiple of 32, got 63 .*next one from 255: 256x256"):
        check_frame_size(vox, 255)  # large enough, but 63 does not halve evenly 5 times
    for side in (128, 256, 384, 512):
        check_frame_size(vox, side)
    with pytest.raises(ConfigError, match="scale_factor 0.01 leaves 0.64 pixel"):
        check_frame_size(load_config(vox_at(tmp_path, 64, scale_factor=0.01)))
    with pytest.raises(ConfigError, match="height"):  # non-square: each side is checked
        from fomm_lab.geometry import Size

        check_frame_size(vox, Size(256, 200))
    synthetic = load_config("synthetic-64")
    check_frame_size(synthetic)
    assert smallest_frame_side(synthetic) == 64  # the keypoint detector: 64 x 0.25 halved 4 times is 1


def test_train_refuses_before_touching_data_or_the_run_folder(tmp_path):
    out = tmp_path / "run"
    options = TrainOptions(config=vox_at(tmp_path, 64), data=tmp_path / "no-such-data", out=out, device="cpu",
                           progress=False, num_workers=0)
    with pytest.raises(ConfigError, match="smallest frame size that fits is 128x128"):
        train(options)  # a DatasetError would mean the data was looked at first
    assert not out.exists()  # nothing written: no run folder, no checkpoint


def test_reconstruct_and_animate_refuse_before_loading(tmp_path, capsys):
    config = vox_at(tmp_path, 64)
    code = main(["reconstruct", "--config", str(config), "--checkpoint", str(tmp_path / "missing.pth.tar"),
                 "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "eval"), "-q"])
    err = capsys.readouterr().err
    assert code != 0 and "128x128" in err and "missing.pth.tar" not in err  # the config is checked first
    assert not (tmp_path / "eval").exists()
    job = AnimateJob(source=tmp_path / "missing.png", driving=tmp_path / "missing.mp4", model=config,
                     random_weights=True, output=OutputOptions(video=tmp_path / "out.mp4"))
    with pytest.raises(ConfigError, match="kp_detector_params"):
        check_job(job)  # before the photo is read: it does not exist
