"""One optimisation step of the paper's training, on one batch (the part of training the benchmark times).

1. :class:`~fomm_lab.train.model.GeneratorFull`: keypoints, reconstruction, perceptual and equivariance losses
   (a random transform drawn from (seed, step, rank));
2. for the ``-adv`` configs, the generator's LSGAN and feature-matching terms (discriminator frozen);
3. the losses averaged over the processes (for the log) and checked: a NaN or infinite total stops the run
   in every process before any weight changes;
4. backward, then the generator's and keypoint detector's Adam steps;
5. for the ``-adv`` configs, the discriminator's LSGAN loss, backward and Adam step.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import TrainingError
from . import distributed
from .checkpoint import Optimizers
from .model import (
    DiscriminatorFull,
    Generated,
    GeneratorFull,
    TrainingNetworks,
    detached,
    generator_adversarial_losses,
)
from .params import TrainingConfig, TransformParams
from .transforms import RandomTransform
from .vgg import VGG19Features


def step_generator(seed: int, step: int, rank: int, stream: int = 1) -> torch.Generator:
    """The random source (a CPU generator) of one step in one process: ``stream`` 1 for the equivariance
    transform, other numbers for the step's other draws (TPSMM's dropout, the AVD stage's scale)."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence((seed, step, rank, stream)).generate_state(1)[0]))


def equivariance_transform(params: TransformParams | None, batch: int, *, seed: int, index: int,
                           process: distributed.Process) -> RandomTransform:
    """The random transform of the equivariance losses at step ``index`` in this process (drawn from
    :func:`step_generator`, so a resumed run draws the same ones)."""
    if params is None:
        raise ValueError("the equivariance losses need train_params.transform_params")
    return RandomTransform(batch, params, generator=step_generator(seed, index, process.rank), device=process.device)


def diverged_error(values: dict[str, float], index: int, last_checkpoint: Path | None) -> TrainingError:
    """The error that stops a run whose loss ``values["loss"]`` became NaN or infinite at step ``index``."""
    parts = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "loss")
    where = f" ({last_checkpoint})" if last_checkpoint is not None else ""
    return TrainingError(f"the loss became {values['loss']} at step {index + 1} ({parts}): the training diverged; "
                         f"lower the learning rates or check the data, and resume from the last checkpoint{where}")


def checked_values(losses: dict[str, torch.Tensor], total: torch.Tensor, index: int, process: distributed.Process,
                   last_checkpoint: Path | None) -> dict[str, float]:
    """The losses and their total as floats averaged over the processes; TrainingError (in every process, before
    any weight changes) when the total is NaN or infinite."""
    values = distributed.mean_over_processes(
        {k: float(v.detach()) for k, v in losses.items()} | {"loss": float(total.detach())}, process)
    if not math.isfinite(values["loss"]):
        raise diverged_error(values, index, last_checkpoint)
    return values


class TrainingStep:
    """``step(source, driving, index) -> (losses, generated)`` for (N, 3, H, W) batches in [0, 1] on the
    process's device; ``losses`` are the weighted loss values (averaged over the processes) and ``loss``, the
    generator's total. ``index`` is the 0-based number of the step (it seeds the random transform)."""

    def __init__(self, config: TrainingConfig, networks: TrainingNetworks, optimizers: Optimizers,
                 vgg: VGG19Features | None, process: distributed.Process, *, seed: int = 0,
                 last_checkpoint: Path | None = None) -> None:
        params = config.train
        self.weights = params.loss_weights
        self.transform_params = params.transform_params
        self.gan = self.weights.generator_gan != 0
        self.networks, self.optimizers, self.process, self.seed = networks, optimizers, process, seed
        self.last_checkpoint = last_checkpoint
        generator_full = GeneratorFull(networks.kp_detector, networks.generator, self.weights, params.scales, vgg,
                                       config.model.common.num_channels,
                                       extra_scales=networks.discriminator.scales if self.gan else ())
        self.generator_full = distributed.wrap(generator_full.to(process.device), process)
        self.discriminator_full = (distributed.wrap(DiscriminatorFull(networks.discriminator, self.weights), process)
                                   if self.gan else None)

    def transform(self, batch: int, index: int) -> RandomTransform | None:
        if not self.weights.uses_equivariance:
            return None
        return equivariance_transform(self.transform_params, batch, seed=self.seed, index=index, process=self.process)

    def __call__(self, source: torch.Tensor, driving: torch.Tensor, index: int,
                 epoch: int = 0) -> tuple[dict[str, float], Generated]:
        """``epoch`` (0-based) is not used by FOMM's step (TPSMM's depends on it)."""
        losses, generated = self.generator_full(source, driving, self.transform(source.shape[0], index))
        if self.gan:
            losses.update(generator_adversarial_losses(self.networks.discriminator, generated, self.weights))
        total = sum(losses.values(), source.new_zeros(()))
        values = checked_values(losses, total, index, self.process, self.last_checkpoint)
        optimizers = self.optimizers
        optimizers.generator.zero_grad(set_to_none=True)
        optimizers.kp_detector.zero_grad(set_to_none=True)
        total.backward()
        optimizers.generator.step()
        optimizers.kp_detector.step()
        if self.discriminator_full is not None:
            optimizers.discriminator.zero_grad(set_to_none=True)
            disc = self.discriminator_full(generated.real, generated.fake, detached(generated.kp_driving))
            sum(disc.values(), source.new_zeros(())).backward()
            optimizers.discriminator.step()
            values.update(distributed.mean_over_processes({k: float(v.detach()) for k, v in disc.items()},
                                                          self.process))
        return values, generated
