"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The official implementation's golden fixtures (tests/fixtures/fomm-golden, or $FOMM_LAB_GOLDEN)."""
    path = Path(os.environ.get("FOMM_LAB_GOLDEN", FIXTURES / "fomm-golden"))
    if not (path / "tiny-vox-cpk.pth.tar").is_file():
        pytest.fail(f"golden fixtures not found at {path}: tests/fixtures/fomm-golden is part of the repository "
                    "(or set FOMM_LAB_GOLDEN to a folder holding them)")
    return path


@pytest.fixture(scope="session")
def paddle_dir() -> Path:
    """PaddleGAN's golden fixtures (tests/fixtures/paddle-golden, or $FOMM_LAB_PADDLE_GOLDEN)."""
    path = Path(os.environ.get("FOMM_LAB_PADDLE_GOLDEN", FIXTURES / "paddle-golden"))
    if not (path / "paddle-vox-mobile.pdparams").is_file():
        pytest.fail(f"PaddleGAN golden fixtures not found at {path} (or set FOMM_LAB_PADDLE_GOLDEN)")
    return path


@pytest.fixture(scope="session")
def tiny_vox(golden_dir):
    """(config path, checkpoint path) of the tiny official-format vox model."""
    return golden_dir / "tiny-vox.yaml", golden_dir / "tiny-vox-cpk.pth.tar"


@pytest.fixture(scope="session")
def tiny_model(tiny_vox):
    from fomm_lab import load_model

    return load_model(tiny_vox[0], tiny_vox[1], device="cpu")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real face photo (public domain, shipped with scikit-image), uint8 512x512x3."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): the golden
    fixtures were made on one thread (the same float rounding), and on two busy cores one thread is several times
    faster than two fighting for them. The thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's real checkpoint cache."""
    monkeypatch.setenv("FOMM_LAB_HOME", str(tmp_path_factory.mktemp("fomm-lab-home")))
