"""The full-size networks have exactly the state dicts of the published files: names, shapes and order as the
TSV contracts of tests/fixtures/swap-golden list them (built from the authors' yamls and BiSeNet(19), never
run). Built here on the meta device: no memory, no time."""

from __future__ import annotations

import pytest
import torch
import yaml
from swap_support import GOLDEN, YAML

from fomm_lab.swap.config import SegmentConfig, parse_segment_config
from fomm_lab.swap.loader import build_generator, build_segmentation_module
from fomm_lab.swap.nets import BiSeNet, BiSeNetWidths

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the fixtures were made on one thread

Entries = list[tuple[str, tuple[int, ...]]]


def _sections(name: str) -> dict[str, Entries]:
    """Each ``[title] ...`` section of a contract TSV: its (name, shape) entries in file order."""
    sections: dict[str, Entries] = {}
    current: Entries = []
    for line in (GOLDEN / name).read_text().splitlines():
        if line.startswith("["):
            current = sections.setdefault(line[1:line.index("]")], [])
        elif line and not line.startswith("#"):
            key, shape, _ = line.split("\t")
            current.append((key, tuple(int(n) for n in shape.strip("()").split(",") if n.strip())))
    return sections


def _entries(module: torch.nn.Module, prefix: str = "") -> Entries:
    return [(prefix + key, tuple(value.shape)) for key, value in module.state_dict().items()]


def _official(num_segments: int) -> SegmentConfig:
    """config/vox-256-sem-{5,10,15}segments.yaml: the tiny fixture's yaml with the published widths."""
    raw = yaml.safe_load(YAML.read_text())
    params = raw["model_params"]
    params["common_params"]["num_segments"] = num_segments
    params["segmentation_module_params"].update(block_expansion=32, max_features=1024)
    params["reconstruction_module_params"].update(block_expansion=64, max_features=512)
    return parse_segment_config(raw, f"vox-256-sem-{num_segments}segments")


@pytest.mark.parametrize("segments", [5, 10, 15])
def test_segmentation_module_matches_the_contract(segments):
    expected = _sections("vox-256-sem-segments-state-dict.tsv")[f"vox-256-sem-{segments}segments segmentation_module"]
    with torch.device("meta"):
        module = build_segmentation_module(_official(segments))
    assert _entries(module, "segmentation_module.") == expected


def test_reconstruction_module_and_part_swap_extras_match_the_contract():
    sections = _sections("vox-256-sem-segments-state-dict.tsv")
    reconstruction = sections["vox-256-sem-Nsegments reconstruction_module (any N)"]
    extras = sections["part_swap.PartSwapGenerator extras (blend_scale=0.125, first_order_motion_model=True)"]
    # the authors build FOMM's dense motion network with its defaults whatever the yaml says
    dense = dict(block_expansion=64, max_features=1024, num_blocks=5, num_kp=10, scale_factor=0.25,
                 kp_variance=0.01, estimate_occlusion_map=True)
    with torch.device("meta"):
        generator = build_generator(_official(10), dense_motion=dense)
        plain = build_generator(_official(5))
    entries = dict(_entries(generator))
    assert [(f"reconstruction_module.{k}", s) for k, s in _entries(plain) if k != "blend_downsample.weight"] \
        == reconstruction
    assert sorted((k, entries[k]) for k, _ in extras) == sorted(extras)
    assert len(entries) == len(reconstruction) + len(extras)
    assert plain.blend_downsample is not None and generator.blend_downsample is not None


def test_blend_downsample_is_the_exact_gaussian():
    """sigma (1/0.125 - 1)/2 = 3.5, 29x29, normalised; every 8th pixel from index 0 of the zero-padded blur."""
    generator = build_generator(_official(10))
    kernel = generator.blend_downsample.weight[0, 0].double()
    axis = torch.arange(29, dtype=torch.float64) - 14
    gauss = torch.exp(-axis**2 / (2 * 3.5**2))
    assert torch.allclose(kernel, torch.outer(gauss, gauss) / torch.outer(gauss, gauss).sum(), atol=1e-7)
    mask = torch.rand(1, 1, 512, 512)
    blurred = torch.nn.functional.conv2d(mask, kernel.float()[None, None], padding=14)
    assert torch.allclose(generator.blend_downsample(mask), blurred[..., ::8, ::8], atol=1e-6)


def test_bisenet_matches_the_contract():
    expected = _sections("bisenet-79999_iter-state-dict.tsv")["BiSeNet(n_classes=19)"]
    with torch.device("meta"):
        parser = BiSeNet(19)
    assert _entries(parser) == expected
    assert len(expected) == 191 and sum(p.numel() for p in parser.state_dict().values()) == 13_313_119
    assert BiSeNetWidths.from_state(parser.state_dict()) == BiSeNetWidths()


def test_tiny_config_reads_the_authors_layout():
    config = parse_segment_config(yaml.safe_load(YAML.read_text()), "tiny")
    assert (config.num_segments, config.frame_size, config.feature_size) == (10, 256, 64)
    assert config.common.estimate_affine_part and config.reconstruction.estimate_visibility
    assert (config.segmentation.temperature, config.segmentation.scale_factor) == (0.1, 0.25)
