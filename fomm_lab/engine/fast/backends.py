"""Where the networks run (no torch import here, so that jobs are checked before torch loads)."""

from __future__ import annotations

import importlib.util

from ...errors import FommLabError, Remedy

BACKENDS = ("torch", "openvino")
"""``torch``: PyTorch (any device); ``openvino``: the ONNX graphs run by OpenVINO on the CPU."""


def openvino_installed() -> bool:
    """True when ``openvino`` can be imported (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def missing_openvino() -> FommLabError:
    """The error for a missing ``openvino`` package: how to install it, or which backend to use instead."""
    return FommLabError("the OpenVINO backend needs the openvino package, which is not installed: "
                        "pip install 'fomm-lab[openvino]'",
                        remedies=[Remedy("or use the PyTorch backend ({})", "runtime.backend", "torch")])
