"""The animation-via-disentanglement network TPSMM takes from MRAA (Siarohin et al., CVPR 2021, Sec. 3.3).

An identity code of the source's keypoints and a pose code of the driving keypoints are decoded into keypoints
with the source's shape in the driving pose. It is trained in a second stage (the authors' ``train_avd.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from .tps import POINTS_PER_TPS

HIDDEN = (256, 512, 1024)
"""The encoders' hidden widths in the authors' code (hard-coded there; the decoder uses them reversed)."""


def _mlp(widths: list[int], out_features: int, *, inplace: bool) -> nn.Sequential:
    """Linear-BatchNorm1d-ReLU for each consecutive pair of ``widths``, then Linear to ``out_features``."""
    layers: list[nn.Module] = []
    for before, after in zip(widths, widths[1:]):
        layers += [nn.Linear(before, after), nn.BatchNorm1d(after), nn.ReLU(inplace=inplace)]
    layers.append(nn.Linear(widths[-1], out_features))
    return nn.Sequential(*layers)


class AVDNetwork(nn.Module):
    """(kp_source (N or 1, K * 5, 2), kp_driving (N, K * 5, 2)) -> (N, K * 5, 2) keypoints (no activation).

    id_encoder:   MLP of the source's keypoints -> ``id_bottle_size``;
    pose_encoder: MLP of the driving keypoints -> ``pose_bottle_size``;
    decoder:      MLP of [pose, id] (pose first) -> K * 5 * 2. ``hidden``: the encoders' hidden widths.
    """

    def __init__(self, num_tps: int, id_bottle_size: int = 64, pose_bottle_size: int = 64,
                 hidden: tuple[int, int, int] = HIDDEN):
        super().__init__()
        size = POINTS_PER_TPS * 2 * num_tps
        self.num_tps = num_tps
        self.id_encoder = _mlp([size, *hidden], id_bottle_size, inplace=True)
        self.pose_encoder = _mlp([size, *hidden], pose_bottle_size, inplace=True)
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, *reversed(hidden)], size, inplace=False)

    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        batch = kp_driving.shape[0]
        pose = self.pose_encoder(kp_driving.reshape(batch, -1))
        identity = self.id_encoder(kp_source.reshape(kp_source.shape[0], -1)).expand(batch, -1)
        points = self.decoder(torch.cat([pose, identity], dim=1))
        return points.view(batch, self.num_tps * POINTS_PER_TPS, -1)

    @staticmethod
    def hidden_in(state: dict[str, torch.Tensor], prefix: str = "") -> tuple[int, int, int]:
        """The hidden widths of an AVD state dict (``id_encoder.{0,3,6}.weight`` rows)."""
        a, b, c = (int(state[f"{prefix}id_encoder.{i}.weight"].shape[0]) for i in (0, 3, 6))
        return a, b, c
