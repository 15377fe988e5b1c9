"""The full-size networks have exactly the state dicts of the released weights files (names, shapes and
order as the TSV contracts in tests/fixtures/enhance-golden list them), built on the meta device (no memory,
no time), and the hyper-parameters read back from those shapes are the released ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fomm_lab.enhance.gfpgan import GFPGANConfig, GFPGANv1Clean
from fomm_lab.enhance.gpen import GPEN, GPENConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "enhance-golden"


def _contract(name: str) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    """(entries in file order, total elements) of a contract TSV."""
    entries, total = [], 0
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("["):
            total = int(line.split()[-2])
        elif line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            assert dtype == "float32"
            entries.append((key, tuple(int(n) for n in shape.strip("()").split(",") if n.strip())))
    return entries, total


def _entries(network: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in network.state_dict().items()]


@pytest.mark.parametrize("name, build, config", [
    ("gpen-512-state-dict.tsv", GPEN, GPENConfig),
    ("gfpgan-v1.4-state-dict.tsv", GFPGANv1Clean, GFPGANConfig),
])
def test_full_size_network_matches_the_contract(name, build, config):
    entries, total = _contract(name)
    with torch.device("meta"):
        network = build(config())
    got = _entries(network)
    assert got == entries  # strict: same names, same shapes, same order
    assert sum(torch.Size(shape).numel() for _, shape in got) == total
    assert all(value.dtype == torch.float32 for value in network.state_dict().values())


@pytest.mark.parametrize("name, config, expected", [
    ("gpen-512-state-dict.tsv", GPENConfig, GPENConfig()),
    ("gfpgan-v1.4-state-dict.tsv", GFPGANConfig, GFPGANConfig()),
])
def test_released_hyper_parameters_are_read_from_the_shapes(name, config, expected):
    entries, _ = _contract(name)
    state = {key: torch.empty(shape, device="meta") for key, shape in entries}
    assert config.from_state_dict(state) == expected


def test_released_gpen_file_without_noise_buffers_is_understood():
    # PaddleGAN's GPEN-512.pdparams probably lacks generator.noises.* (ported from yangxy/GPEN): not needed
    entries, _ = _contract("gpen-512-state-dict.tsv")
    state = {key: torch.empty(shape, device="meta") for key, shape in entries if ".noises." not in key}
    assert GPENConfig.from_state_dict(state) == GPENConfig()
