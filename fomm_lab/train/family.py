"""What the training loop (:mod:`fomm_lab.train.trainer`) needs from one model family's training, so that one
loop -- data, epochs, learning-rate schedule, log, pictures, checkpoints, resuming, several processes -- trains
every family:

* :class:`~fomm_lab.train.fomm.FommTraining` -- the First Order Motion Model (Siarohin et al., NeurIPS 2019);
* :class:`~fomm_lab.train.tpsmm.TpsmmTraining` and :class:`~fomm_lab.train.tpsmm.AvdTraining` -- the Thin-Plate
  Spline Motion Model (Zhao & Zhang, CVPR 2022) and its second stage, the AVD network.

The trainer picks one from the config's family (:func:`fomm_lab.engine.families.config_and_family`). Also here:
the optimiser settings every family shares (Adam's betas, the tenfold drop at each milestone).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from . import distributed
    from .checkpoint import NamedModules, NamedOptimizers
    from .params import TpsmmTrainingConfig, TrainingConfig
    from .vgg import VGG19Features

BETAS = (0.5, 0.999)
"""Adam's betas in both papers' training."""
LR_DROP = 0.1
"""Factor applied to the learning rates at each milestone epoch."""


def lr_at(base: float, milestones: tuple[int, ...], epoch: int) -> float:
    """The learning rate of 0-based ``epoch``: ``base`` divided by 10 for each milestone at or before it."""
    return base * LR_DROP ** bisect.bisect_right(sorted(milestones), epoch)


def set_rates(optimizers: dict[str, torch.optim.Optimizer], rates: dict[str, float]) -> dict[str, float]:
    """Give every parameter group of ``optimizers[name]`` the learning rate ``rates[name]``; returns ``rates``."""
    for name, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            group["lr"] = rates[name]
    return rates


class Schedule(Protocol):
    """The run-length settings of a training stage (``train_params``, ``train_avd_params``)."""

    @property
    def num_epochs(self) -> int: ...

    @property
    def num_repeats(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def checkpoint_freq(self) -> int: ...

    @property
    def epoch_milestones(self) -> tuple[int, ...]: ...


StepFunction = Callable[[torch.Tensor, torch.Tensor, int, int], tuple[dict[str, float], Any]]
"""(source (N, 3, H, W), driving (N, 3, H, W) in [0, 1] on the run's device, 0-based step, 0-based epoch) ->
(the losses as floats averaged over the processes, with their total ``loss``; what the picture shows)."""


class TrainingFamily(Protocol):
    """One family's training stage as the trainer runs it.

    name: ``fomm``, ``tpsmm``, ``tpsmm-avd``; config: the yaml's training sections; schedule: epochs, repeats,
    batch size, checkpoint frequency, milestones; vgg_layers: the VGG19 layers the perceptual loss reads (0: no
    perceptual loss, no VGG19 loaded); needs_start: the stage trains on a checkpoint's networks (refused without
    one).
    """

    name: str
    needs_start: bool

    @property
    def config(self) -> TrainingConfig | TpsmmTrainingConfig: ...

    @property
    def schedule(self) -> Schedule: ...

    @property
    def vgg_layers(self) -> int: ...

    def check(self) -> None:
        """ConfigError before any data is read when the config cannot be trained."""

    def read_checkpoint(self, path: Path) -> dict:
        """The checkpoint dict (read safely; CheckpointError naming what the file is when it is not this family's)."""

    def build(self, data: dict | None, path: Path | None, resumed: bool) -> NamedModules:
        """The networks on the CPU: random weights (after ``torch.manual_seed``), or those of checkpoint ``data``
        read from ``path`` (all of them, strictly, when ``resumed``)."""

    def optimizers(self, networks: Any) -> NamedOptimizers: ...

    def load_optimizers(self, data: dict, path: Path, optimizers: Any) -> None: ...

    def set_learning_rates(self, optimizers: Any, epoch: int) -> dict[str, float]:
        """Set the learning rates of 0-based ``epoch``; returns them by name (for the log)."""

    def train_mode(self, networks: Any) -> None:
        """Put the networks in the mode of a training step (frozen ones in eval mode)."""

    def step(self, networks: Any, optimizers: Any, vgg: VGG19Features | None, process: distributed.Process, *,
             seed: int, last_checkpoint: Path | None) -> StepFunction: ...

    def picture(self, batch: dict, generated: Any) -> np.ndarray:
        """uint8 (rows * H, columns * W, 3): the picture of one step."""
