"""The First Order Motion Model's training (paper Sec. 3.3) as the trainer runs it (:class:`FommTraining`, a
:class:`~fomm_lab.train.family.TrainingFamily`): the keypoint detector, generator and multi-scale discriminator
of :mod:`fomm_lab.train.model`, one Adam optimiser per network (``lr_generator``, ``lr_kp_detector``,
``lr_discriminator``), the step of :mod:`fomm_lab.train.step` and the picture of :mod:`fomm_lab.train.visualize`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from . import distributed
from .checkpoint import Optimizers, load_networks, load_optimizers, read_training_checkpoint
from .family import BETAS, StepFunction, lr_at, set_rates
from .model import TrainingNetworks, build_training_networks
from .params import TrainingConfig, TrainParams
from .step import TrainingStep
from .vgg import VGG19Features, vgg_layers_for


class FommTraining:
    """FOMM's training stage for ``config`` (see the module's description)."""

    name = "fomm"
    needs_start = False

    def __init__(self, config: TrainingConfig) -> None:
        self.config = config

    @property
    def schedule(self) -> TrainParams:
        return self.config.train

    @property
    def vgg_layers(self) -> int:
        weights = self.config.train.loss_weights
        return vgg_layers_for(weights.perceptual) if weights.uses_perceptual else 0

    def check(self) -> None:
        from .visualize import check_colormap

        config = self.config
        w = config.train.loss_weights
        if not (w.uses_perceptual or w.uses_equivariance or w.generator_gan != 0 or w.pixel != 0):
            raise ConfigError(f"config {config.path}: every generator loss weight in train_params.loss_weights is 0 "
                              "(perceptual, pixel, equivariance_value, equivariance_jacobian, generator_gan): "
                              "nothing to train")
        check_colormap(config.visualizer.colormap)
        if w.keypoint_prior != 0 and config.model.common.num_kp < 2:
            raise ConfigError(f"config {config.path}: train_params.loss_weights.keypoint_prior is {w.keypoint_prior} "
                              f"but the model has {config.model.common.num_kp} keypoint "
                              "(model_params.common_params.num_kp); it keeps keypoints apart: set it to 0")
        if w.equivariance_jacobian != 0 and not config.model.common.estimate_jacobian:
            raise ConfigError(f"config {config.path}: train_params.loss_weights.equivariance_jacobian is "
                              f"{w.equivariance_jacobian} but the model estimates no jacobians "
                              "(model_params.common_params.estimate_jacobian: false); set it to 0")
        if w.uses_equivariance and config.train.transform_params is None:
            raise ConfigError(f"config {config.path}: the equivariance losses need train_params.transform_params "
                              "(sigma_affine, sigma_tps, points_tps)")

    def read_checkpoint(self, path: Path) -> dict:
        return read_training_checkpoint(path)

    def build(self, data: dict | None, path: Path | None, resumed: bool) -> TrainingNetworks:
        networks = build_training_networks(self.config, device="cpu")
        if data is not None and path is not None:
            label = str(self.config.path or self.config.model.name)
            load_networks(data, path, networks, label, need_discriminator=resumed)
        return networks

    def optimizers(self, networks: TrainingNetworks) -> Optimizers:
        p = self.config.train
        return Optimizers(
            generator=torch.optim.Adam(networks.generator.parameters(), lr=p.lr_generator, betas=BETAS),
            kp_detector=torch.optim.Adam(networks.kp_detector.parameters(), lr=p.lr_kp_detector, betas=BETAS),
            discriminator=torch.optim.Adam(networks.discriminator.parameters(), lr=p.lr_discriminator, betas=BETAS))

    def load_optimizers(self, data: dict, path: Path, optimizers: Optimizers) -> None:
        load_optimizers(data, path, optimizers)

    def set_learning_rates(self, optimizers: Optimizers, epoch: int) -> dict[str, float]:
        p = self.config.train
        rates = {"generator": lr_at(p.lr_generator, p.epoch_milestones, epoch),
                 "kp_detector": lr_at(p.lr_kp_detector, p.epoch_milestones, epoch),
                 "discriminator": lr_at(p.lr_discriminator, p.epoch_milestones, epoch)}
        return set_rates({"generator": optimizers.generator, "kp_detector": optimizers.kp_detector,
                          "discriminator": optimizers.discriminator}, rates)

    def train_mode(self, networks: TrainingNetworks) -> None:
        networks.train(True)

    def step(self, networks: TrainingNetworks, optimizers: Optimizers, vgg: VGG19Features | None,
             process: distributed.Process, *, seed: int, last_checkpoint: Path | None) -> StepFunction:
        return TrainingStep(self.config, networks, optimizers, vgg, process, seed=seed,
                            last_checkpoint=last_checkpoint)

    def picture(self, batch: dict, generated) -> np.ndarray:
        from .visualize import training_picture

        return training_picture(batch["source"], batch["driving"], generated, self.config.visualizer)
