"""VGG19 (Simonyan & Zisserman, 2015) feature layers for the perceptual loss (paper Sec. 3.3).

Our own definition of the convolutional part of VGG19 ("configuration E"): 16 3x3 convolutions in five
stages of 2, 2, 4, 4, 4 (64, 128, 256, 512, 512 channels), each followed by a ReLU, with 2x2 max pooling
between stages. The modules sit at the indices of the ``features`` sequence of PyTorch's published
ImageNet weights (``vgg19-dcbb9e9d.pth``: ``features.0.weight`` ... ``features.34.bias``, then
``classifier.*``), so that file loads by name. The perceptual loss reads the ReLU outputs relu1_1, relu2_1,
relu3_1, relu4_1 and relu5_1 (indices 1, 6, 11, 20, 29); layers after the deepest one needed are not built.

Inputs are RGB in [0, 1], normalised with the ImageNet mean and standard deviation the weights were trained
with. The weights come from the registry entry ``vgg19`` (:data:`fomm_lab.hub.registry.VGG19_WEIGHTS`),
downloaded once into the fomm-lab cache and verified against the hash prefix in its name.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, shorten
from ..hub.registry import RemoteFile

STAGES = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
"""(channels, convolutions) of each stage of VGG19."""

FEATURE_LAYERS = (1, 6, 11, 20, 29)
"""Indices in ``features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def feature_layout() -> list[nn.Module]:
    """The 37 modules of VGG19's ``features`` sequence, in order (conv, ReLU ..., max pool)."""
    layers: list[nn.Module] = []
    channels = 3
    for width, convs in STAGES:
        for _ in range(convs):
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return layers


class VGG19Features(nn.Module):
    """VGG19's convolutional layers up to relu5_1 (or fewer: ``layers`` of :data:`FEATURE_LAYERS`).

    forward: (N, 3, H, W) RGB in [0, 1] -> list of ``layers`` feature maps, relu1_1 (N, 64, H, W),
    relu2_1 (N, 128, H/2, W/2), relu3_1 (N, 256, H/4, W/4), relu4_1 (N, 512, H/8, W/8),
    relu5_1 (N, 512, H/16, W/16). Parameters never require gradients (the loss network is fixed).
    """

    def __init__(self, layers: int = len(FEATURE_LAYERS)) -> None:
        super().__init__()
        if not 1 <= layers <= len(FEATURE_LAYERS):
            raise ValueError(f"layers must be 1 to {len(FEATURE_LAYERS)}, got {layers}")
        self.taps = FEATURE_LAYERS[:layers]
        self.features = nn.Sequential(*feature_layout()[: self.taps[-1] + 1])
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = (x - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            out = layer(out)
            if index in self.taps:
                taps.append(out)
        return taps


def vgg_layers_for(weights: tuple[float, ...]) -> int:
    """How many of the feature layers (relu1_1 ...) a perceptual loss with these per-layer weights reads: up to
    the deepest one with a weight other than 0 (at least 1)."""
    used = [i for i, w in enumerate(weights) if w != 0]
    return max(used) + 1 if used else 1


def published_names(layers: int = len(FEATURE_LAYERS)) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the published file's tensors that :class:`VGG19Features` (``layers``) uses."""
    return {name: tuple(t.shape) for name, t in VGG19Features(layers).state_dict().items()}


def read_vgg19(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a VGG19 weights file, read without running code (``torch.load(weights_only=True)``).

    CheckpointError naming the file when it is not a state dict holding ``features.*`` tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VGG19 weights {path} do not exist; fetch them with the registry entry vgg19 "
                              "(done automatically when training with a perceptual loss)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"VGG19 weights {path} hold objects other than tensors and were refused; use "
                              "PyTorch's published vgg19-dcbb9e9d.pth") from exc
    except Exception as exc:  # torch raises many types (EOFError, RuntimeError ...) for damaged bytes
        raise CheckpointError(f"VGG19 weights {path} are truncated or corrupt; delete the file to fetch it again",
                              details=[f"{type(exc).__name__}: {exc}"]) from exc
    if not isinstance(state, dict) or not any(str(k).startswith("features.") for k in state):
        raise CheckpointError(f"{path} is not a VGG19 state dict (no features.* tensors); use PyTorch's published "
                              "vgg19-dcbb9e9d.pth")
    return state


def load_vgg19(path: str | os.PathLike[str], layers: int = len(FEATURE_LAYERS)) -> VGG19Features:
    """:class:`VGG19Features` with the weights of ``path``; every tensor it needs must be there with its shape
    (the file's other tensors -- deeper layers, the classifier -- are not used)."""
    state = read_vgg19(path)
    model = VGG19Features(layers)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    shaped = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or shaped:
        raise CheckpointError(f"{path} does not hold VGG19's feature layers", details=[
            line for line in (f"missing ({len(missing)}): {shorten(missing, 4)}" if missing else "",
                              f"shape (file vs VGG19) ({len(shaped)}): {shorten(shaped, 3)}" if shaped else "")
            if line])
    model.load_state_dict({k: state[k] for k in expected}, strict=True)
    return model.eval()


def _verify_vgg19(path: Path) -> None:
    read_vgg19(path)


def ensure_vgg19(cache_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                 entry: RemoteFile | None = None) -> Path:
    """The VGG19 weights file in the fomm-lab cache, fetched and verified (sha256 prefix) when missing.

    ``entry`` replaces the registry's :data:`~fomm_lab.hub.registry.VGG19_WEIGHTS` (a private mirror)."""
    from ..hub.download import fetch
    from ..hub.registry import VGG19_WEIGHTS
    from ..hub.registry import cache_dir as resolve_cache_dir

    info = entry or VGG19_WEIGHTS
    return fetch(info, resolve_cache_dir(cache_dir) / info.filename, progress=progress, verify=_verify_vgg19)


def perceptual_distance(vgg: VGG19Features, prediction: torch.Tensor, target: torch.Tensor,
                        weights: tuple[float, ...]) -> torch.Tensor:
    """sum_i weights[i] * mean |N_i(prediction) - N_i(target)| over the VGG19 layers N_i (target detached).

    prediction, target: (N, 3, H, W) in [0, 1]. Returns a 0-d tensor.
    """
    with torch.no_grad():
        real = vgg(target)
    fake = vgg(prediction)
    total = prediction.new_zeros(())
    for weight, a, b in zip(weights, fake, real):
        if weight != 0:
            total = total + weight * F.l1_loss(a, b)
    return total
