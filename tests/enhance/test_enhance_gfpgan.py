"""GFPGAN v1.4 (clean architecture) and GFPGANer's aligned-face path, against the reference's outputs on the
tiny fixtures (tests/fixtures/enhance-golden, see its README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fomm_lab.enhance import load_enhancer
from fomm_lab.enhance.gfpgan import noise_shapes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "enhance-golden"

NET_TOL = 1e-4
"""Largest difference to the reference's float32 network outputs. The reference is torch as well and this
implementation performs the same operations in the same order, so with one thread it is bit-exact (0.0
measured); another thread count, batch grouping or CPU (AVX2, AVX512, AMX kernels) changes the summation order: the reference itself moves by 4.4e-6 in float64, so 1e-4 (the README's bound)
has ample margin and still catches any semantic slip (a missing sqrt(2), SFT on the wrong half: >= 1e-2)."""

MIN_EQUAL = 0.999
"""uint8 faces: values on a rounding boundary may move by one level (the float64 reference flips 30 of
786,432 per face). Measured: 0 to 89 of 1,572,864 (at most 0.006 %), depending on the thread count and the
faces per call (both change how torch splits the convolutions' sums)."""


def _load(name: str) -> tuple[dict[str, np.ndarray], Path]:
    return dict(np.load(FIXTURES / f"gfpgan-tiny-{name}-golden.npz")), FIXTURES / f"gfpgan-tiny-{name}.pth"


@pytest.fixture(scope="module")
def tiny128():
    gold, weights = _load("128")
    return gold, load_enhancer("gfpgan", weights).network


@pytest.fixture(scope="module")
def tiny512():
    return _load("512")


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1])


def _assert_u8_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1, f"max difference {diff.max()}"
    assert (diff == 0).mean() >= MIN_EQUAL, f"only {(diff == 0).mean():.5f} of the values are equal"


def test_hyper_parameters_are_read_from_the_file(tiny128):
    config = tiny128[1].config
    assert (config.out_size, config.num_style_feat, config.num_mlp) == (128, 32, 8)
    assert config.different_w and config.sft_half
    assert dict(config.decoder_channels) == {4: 32, 8: 32, 16: 32, 32: 32, 64: 32, 128: 16}
    assert dict(config.unet_channels) == {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 8}


def test_network_with_stored_noise_and_intermediate_rgbs(tiny128):
    gold, network = tiny128
    with torch.inference_mode():
        image, rgbs = network(torch.from_numpy(gold["input"]), return_rgb=True)
    np.testing.assert_allclose(image.numpy(), gold["out_fixed_noise"], atol=NET_TOL, rtol=0)
    assert len(rgbs) == 5
    for index, rgb in enumerate(rgbs):
        np.testing.assert_allclose(rgb.numpy(), gold[f"out_rgb_{index}"], atol=NET_TOL, rtol=0)


def test_network_with_given_noise(tiny128):
    gold, network = tiny128
    noise = [torch.from_numpy(gold[f"noise_{index}"]) for index in range(network.config.num_layers)]
    assert [tuple(n.shape) for n in noise] == noise_shapes(network.config, batch=3)
    with torch.inference_mode():
        image, rgbs = network(torch.from_numpy(gold["input"]), noise=noise)
    assert rgbs == []
    np.testing.assert_allclose(image.numpy(), gold["out_random_noise"], atol=NET_TOL, rtol=0)


def test_network_at_512_matches(tiny512):
    gold, weights = tiny512
    enhancer = load_enhancer("gfpgan", weights)
    face = _rgb(gold["faces_bgr"][0]).astype(np.float32) / np.float32(255)
    x = (torch.from_numpy(face).permute(2, 0, 1)[None] - 0.5) / 0.5
    with torch.inference_mode():
        image, _ = enhancer.network(x)
    np.testing.assert_allclose(image.numpy(), gold["net_output_fixed_noise_0"], atol=NET_TOL, rtol=0)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_enhance_matches_gfpganer_with_stored_noise(tiny512, batch_size):
    gold, weights = tiny512
    enhancer = load_enhancer("gfpgan", weights, batch_size=batch_size)
    got = enhancer.enhance(_rgb(gold["faces_bgr"]))
    _assert_u8_close(got, _rgb(gold["restored_fixed_noise"]))
    # float frames in [0, 255] (as the FOMM app makes them) give the same faces
    assert np.array_equal(enhancer.enhance(_rgb(gold["faces_bgr"]).astype(np.float32)), got)


def test_enhance_matches_gfpganer_with_seeded_noise(tiny512):
    gold, weights = tiny512
    enhancer = load_enhancer("gfpgan", weights, noise="random", seed=int(gold["noise_seeds"][0]))
    _assert_u8_close(enhancer.enhance(_rgb(gold["faces_bgr"][:1])), _rgb(gold["restored_seeded"]))


def test_random_noise_follows_the_seed(tiny512):
    gold, weights = tiny512
    faces = _rgb(gold["faces_bgr"][:1])
    first = load_enhancer("gfpgan", weights, noise="random", seed=7).enhance(faces)
    again = load_enhancer("gfpgan", weights, noise="random", seed=7).enhance(faces)
    other = load_enhancer("gfpgan", weights, noise="random", seed=8).enhance(faces)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    with pytest.raises(ValueError, match="noise"):
        load_enhancer("gfpgan", weights, noise="sometimes")


def test_strength_resize_and_other_sizes(tiny512):
    gold, weights = tiny512
    enhancer = load_enhancer("gfpgan", weights)
    faces = _rgb(gold["faces_bgr"][:1])
    assert np.array_equal(enhancer.enhance_faces(faces, strength=0.0), faces)
    assert np.array_equal(enhancer.enhance_faces(faces, strength=1.0), enhancer.enhance(faces))
    assert enhancer.enhance_faces(faces, size=200).shape == (1, 200, 200, 3)
    small = np.ascontiguousarray(faces[:, ::2, ::2])  # GFPGANer resizes any crop to 512 (INTER_LINEAR)
    assert enhancer.enhance(small).shape == (1, 512, 512, 3)
