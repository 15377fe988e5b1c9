"""The BiSeNet face parser: widths read from the weights file, the authors' input normalisation, outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from swap_support import PARSER, golden, max_diff, swapper

from fomm_lab.swap import PARSER_CLASSES, load_parser
from fomm_lab.swap.nets import BiSeNetWidths

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the fixtures were made on one thread


def test_classes_are_celebamask_hq_order():
    assert len(PARSER_CLASSES) == 19
    assert PARSER_CLASSES[:2] == ("background", "skin") and PARSER_CLASSES[10:14] == ("nose", "mouth", "u_lip", "l_lip")
    assert PARSER_CLASSES[17:] == ("hair", "hat")


def test_widths_are_read_from_the_file():
    parser = load_parser(PARSER)
    # the fixture divides every channel count of the published model by 16
    assert parser.widths == BiSeNetWidths(resnet=(4, 8, 16, 32), context=8, fusion=16, head=16, aux_head=4)
    assert not parser.training


def test_auxiliary_heads_do_not_change_the_fused_output():
    parser = load_parser(PARSER)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        fused = parser(x)
        main, aux16, aux32 = parser(x, aux=True)
    assert torch.equal(fused, main) and fused.shape == aux16.shape == aux32.shape == (1, 19, 64, 64)


def test_input_is_nearest_upscaled_and_imagenet_normalised():
    """The authors' input: F.interpolate(frame, 512) (nearest: 2x2 blocks), (x - mean) / std."""
    model, data = swapper(), golden()
    frame = torch.from_numpy(data["target"][0].astype(np.float32) / 255).permute(2, 0, 1)[None]
    big = frame.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = model.parser((big - mean) / std)
        actual = model.parser_logits(model.to_tensor([data["target"][0]]))
    assert max_diff(actual, expected) <= 1e-4  # the same values, fed in another memory layout
    assert max_diff(actual[:, :, ::8, ::8], data["parser_target_logits_s8"][:1]) <= 2e-4
