"""In-place element-wise steps (fomm_lab/engine/fast/inplace.py): the same values as the standard operators."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fomm_lab.engine.fast.inplace import relu_


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_relu_gives_the_standard_values_in_place(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(1, 8, 5, 7, generator=g) * 10).to(dtype).contiguous(memory_format=torch.channels_last)
    specials = [0.0, -0.0, float("inf"), -float("inf"), torch.finfo(dtype).tiny, -1e-30]
    x.permute(0, 2, 3, 1).view(-1)[:6] = torch.tensor(specials).to(dtype)
    expected = F.relu(x)
    out = relu_(x)
    assert out is x and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, expected)  # the same values
    if dtype != torch.float32:
        assert not bool(out.signbit().any())  # +0.0 for -0.0 in the integer view
    unchanged = expected > 0
    assert torch.equal(out[unchanged].view(torch.int16 if dtype != torch.float32 else torch.int32),
                       expected[unchanged].view(torch.int16 if dtype != torch.float32 else torch.int32))
    assert torch.equal(relu_(torch.tensor([float("nan")], dtype=dtype)).isnan(), torch.tensor([True]))


def test_relu_under_export_is_the_standard_operator(monkeypatch):
    """Exports and traces see F.relu (no integer view in the graph)."""
    from fomm_lab.engine.fast import inplace

    calls = []
    monkeypatch.setattr(inplace, "plain_ops", lambda: True)
    monkeypatch.setattr(inplace.F, "relu", lambda x, inplace=False: calls.append(inplace) or x.clamp_(min=0))
    relu_(torch.randn(4).bfloat16())
    assert calls == [True]
