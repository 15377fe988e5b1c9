"""Training the Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022, Sec. 3.5 and Sec. 4) on the shared
trainer (:mod:`fomm_lab.train.trainer`): the first stage (:class:`TpsmmTraining`) and the second, the AVD network
(:class:`AvdTraining`, ``fomm-lab train --avd``).

**First stage** -- :class:`TpsmmGeneratorFull`, for a batch of (source S, driving D) frames in epoch e:

1. the keypoints of S and D: K thin-plate-spline transformations of 5 control points each (Sec. 3.1);
2. from epoch ``bg_start`` on (configs with ``bg``), the background affine A_{S<-D} of the background predictor
   (Sec. 3.2); before it, the identity;
3. the dense motion network's optical flow and occlusion masks (Sec. 3.3), whole TPS transformations dropped with
   the probability :meth:`~fomm_lab.train.params.TpsmmTrainParams.dropout_p` while e < ``dropout_epoch``
   (Eq. 7-8; the draws come from (seed, step, process), so a resumed run draws what an uninterrupted one would);
4. the inpainting network's reconstruction D^ of D from S (Sec. 3.4);
5. the losses of Sec. 3.5 (:mod:`fomm_lab.train.losses`), weighted by ``train_params.loss_weights``: perceptual
   (VGG19 on the image pyramid ``scales``, as FOMM's), equivariance of the keypoint values under a random warp of
   D (as FOMM's; TPSMM has no jacobians), the warp loss and the background loss.

The warp loss compares, at each level of the inpainting network's encoder, the driving frame's features with the
source's warped by the flow, both multiplied by the occlusion mask the decoder applies at that level. As in the
authors' training code, the features and the masks are constants of the loss (computed without gradients, or
detached): its gradient reaches the motion only -- the flow, hence the keypoint detector, the dense motion network
and the background predictor -- and never the encoder, which could otherwise shrink its features to meet it.

Optimisation, as the authors' training code does it: Adam (betas 0.5, 0.999, weight decay 1e-4) with
``lr_generator`` over the inpainting, dense motion and keypoint networks (checkpoint entry ``optimizer``) and
another over the background predictor (``optimizer_bg_predictor``, stepped from ``bg_start`` on); both divided by
10 at each of ``epoch_milestones``; before each step the gradients of the keypoint detector, the dense motion
network and (when in use) the background predictor are clipped to an infinity norm of 10.

**Second stage** -- the AVD network ("animation via disentanglement", from MRAA, used by TPSMM's ``avd`` mode) is
trained alone on the first stage's frozen networks (eval mode, no gradients), with ``train_avd_params``: from the
keypoints p_S of a source frame and the keypoints p_D of a driving frame of the same video scaled by a random
factor s in [1 - random_scale, 1 + random_scale] (one per batch), it must give back p_D:
L = lambda_shift mean |p_D - AVD(p_S, s p_D)|. Adam with ``lr`` (betas 0.5, 0.999), divided by 10 at each milestone.

Checkpoints are in the authors' layout (:mod:`fomm_lab.train.checkpoint`): ``kp_detector``,
``dense_motion_network``, ``inpainting_network``, ``bg_predictor`` (configs with ``bg``; saved from the first step,
at its identity initialisation until ``bg_start``), ``optimizer``, ``optimizer_bg_predictor``; the second stage
writes ``avd_network`` and ``optimizer_avd`` beside the frozen networks instead of the first stage's optimisers.
:func:`fomm_lab.engine.families.load_model` animates either file; ``fomm-lab reconstruct`` evaluates it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_

from ..engine.keypoints import Keypoints
from ..engine.nets.tpsmm import AVDNetwork, BGMotionPredictor, InpaintingNetwork
from ..engine.nets.tpsmm.inpainting import Warp
from ..engine.tpsmm.checkpoint import read_tpsmm_checkpoint
from ..engine.tpsmm.model import TpsmmNets, Widths, build_tpsmm_networks, networks_from_checkpoint
from ..errors import ConfigError, TrainingError
from . import distributed
from .checkpoint import load_optimizers
from .family import BETAS, StepFunction, lr_at, set_rates
from .losses import ImagePyramid, background_loss, equivariance_value_loss, perceptual_loss, warp_loss
from .model import Generated
from .params import AvdTrainParams, TpsmmTrainingConfig, TpsmmTrainParams, VisualizerParams
from .step import checked_values, equivariance_transform, step_generator
from .transforms import RandomTransform
from .vgg import VGG19Features, vgg_layers_for

log = logging.getLogger(__name__)

WEIGHT_DECAY = 1e-4
"""Adam's weight decay in the authors' first stage."""
GRADIENT_CLIP = 10.0
"""Largest absolute gradient entry (infinity norm) of the keypoint detector, dense motion network and background
predictor in the authors' first stage."""
DROPOUT_STREAM = 2
"""The :func:`~fomm_lab.train.step.step_generator` stream of the TPS dropout (1 is the equivariance transform's)."""
SCALE_STREAM = 3
"""The stream of the AVD stage's random scale."""


# -------------------------------------------------------------------------------------------- networks


def build_networks(config: TpsmmTrainingConfig, data: dict | None, path: Path | None, *, avd: bool,
                   fresh_bg: bool, widths: Widths = Widths()) -> TpsmmNets:
    """The networks a stage trains, on the CPU in train mode: with random weights (``widths``: the hard-coded widths,
    the authors' by default) or those of checkpoint ``data`` (widths read from the file). ``avd``: with the AVD
    network (the file's, else a fresh one); ``fresh_bg``: a config with ``bg`` gets a fresh background predictor
    when the file has none (an authors' file saved before ``bg_start``), of the keypoint detector's ResNet width."""
    model = config.model
    if data is None or path is None:
        return build_tpsmm_networks(model, widths, avd=avd, bg_predictor=model.common.bg)
    nets = networks_from_checkpoint(model, path, data, bg_predictor=model.common.bg and "bg_predictor" in data,
                                    avd=avd)
    for module in nets.named().values():
        module.train(True)
    if fresh_bg and model.common.bg and nets.bg_predictor is None:
        width = int(nets.kp_detector.fg_encoder.conv1.weight.shape[0])
        nets.bg_predictor = BGMotionPredictor(width)
        log.info("checkpoint %s has no bg_predictor: the background predictor starts from the identity", path)
    if avd and nets.avd_network is None:
        nets.avd_network = AVDNetwork(model.common.num_tps, model.avd.id_bottle_size, model.avd.pose_bottle_size)
    return nets


@dataclass
class TpsmmOptimizers:
    """The first stage's Adam optimisers: ``generator`` over the inpainting, dense motion and keypoint networks (the
    checkpoint's ``optimizer``, parameters in the authors' order) and ``bg_predictor`` (None without ``bg``)."""

    generator: torch.optim.Optimizer
    bg_predictor: torch.optim.Optimizer | None = None

    def named(self) -> dict[str, torch.optim.Optimizer]:
        named = {"optimizer": self.generator}
        if self.bg_predictor is not None:
            named["optimizer_bg_predictor"] = self.bg_predictor
        return named


@dataclass
class AvdOptimizers:
    """The second stage's Adam optimiser of the AVD network (the checkpoint's ``optimizer_avd``)."""

    avd: torch.optim.Optimizer

    def named(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer_avd": self.avd}


# ----------------------------------------------------------------------------------------- first stage


def feature_warp_maps(inpainting: InpaintingNetwork, encoded: list[torch.Tensor], driving: torch.Tensor,
                      deformation: torch.Tensor, occlusion: list[torch.Tensor]
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(driving features, warped source features) of the warp loss, one (N, C_l, H_l, W_l) map per encoder level
    (finest first): E_l(D) and W(E_l(S)) with ``deformation`` (N, h, w, 2), both masked by the decoder's occlusion
    mask of level l; ``encoded``: the source's levels (:meth:`InpaintingNetwork.encode`). Only the flow carries
    gradients (see the module's description)."""
    masks = [mask.detach() for mask in occlusion]
    with torch.no_grad():
        targets = inpainting.mask_levels(inpainting.encode(driving), masks)
    warp = Warp(deformation)
    warped = inpainting.mask_levels([warp(level.detach()) for level in encoded], masks)
    return targets, warped


class TpsmmGeneratorFull(nn.Module):
    """forward(source, driving, transform, epoch, dropout_generator) -> (weighted losses by name, :class:`Generated`).

    source, driving: (N, 3, H, W) in [0, 1]; transform: the random warp of the equivariance loss (None when its
    weight is 0); epoch: 0-based (the dropout and ``bg_start`` depend on it); dropout_generator: the source of the
    TPS dropout's draws. Holds the networks being trained, the fixed VGG19 and the pyramid (see the module's
    description for the steps and losses).
    """

    def __init__(self, nets: TpsmmNets, params: TpsmmTrainParams, vgg: VGG19Features | None,
                 num_channels: int = 3) -> None:
        super().__init__()
        self.kp_detector = nets.kp_detector
        self.dense_motion_network = nets.dense_motion_network
        self.inpainting_network = nets.inpainting_network
        self.bg_predictor = nets.bg_predictor
        self.params = params
        self.weights = params.loss_weights
        self.scales = tuple(params.scales)
        self.pyramid = ImagePyramid(self.scales, num_channels)
        if self.weights.uses_perceptual and vgg is None:
            raise ValueError("the perceptual loss needs the VGG19 network")
        self.vgg = vgg if self.weights.uses_perceptual else None

    def uses_background(self, epoch: int) -> bool:
        return self.bg_predictor is not None and epoch >= self.params.bg_start

    def forward(self, source: torch.Tensor, driving: torch.Tensor, transform: RandomTransform | None, epoch: int,
                dropout_generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], Generated]:
        w = self.weights
        kp_source = self.kp_detector(source)  # (N, 5K, 2)
        kp_driving = self.kp_detector(driving)
        bg_param = None
        if self.uses_background(epoch):
            assert self.bg_predictor is not None
            bg_param = self.bg_predictor(source, driving)  # (N, 3, 3): A_{S<-D}
        dense = self.dense_motion_network
        motion = dense(dense.prepare(source, kp_source), kp_driving, bg_param, dropout_p=self.params.dropout_p(epoch),
                       dropout_generator=dropout_generator)
        inpainting = self.inpainting_network
        encoded = inpainting.encode(source)
        prediction = inpainting.decode(source, encoded, motion.deformation, motion.occlusion)
        with torch.no_grad():
            deformed = Warp(motion.deformation.detach())(source.detach())
        generated = Generated(prediction, motion.deformation, motion.occlusion[-1], Keypoints(kp_source),
                              Keypoints(kp_driving), real=self.pyramid(driving), fake=self.pyramid(prediction),
                              deformed=deformed)
        losses: dict[str, torch.Tensor] = {}
        if self.vgg is not None:
            losses["perceptual"] = perceptual_loss(self.vgg, {s: generated.fake[s] for s in self.scales},
                                                   generated.real, w.perceptual)
        if w.equivariance_value != 0:
            if transform is None:
                raise ValueError("the equivariance loss needs a random transform")
            frame = transform.warp_frame(driving)
            kp_transformed = Keypoints(self.kp_detector(frame))
            generated.transformed_frame, generated.transformed_kp = frame, kp_transformed
            losses["equivariance_value"] = equivariance_value_loss(generated.kp_driving, kp_transformed, transform,
                                                                   w.equivariance_value)
        if w.warp_loss != 0:
            targets, warped = feature_warp_maps(inpainting, encoded, driving, motion.deformation, motion.occlusion)
            losses["warp_loss"] = warp_loss(targets, warped, w.warp_loss)
        if bg_param is not None and w.bg != 0:
            assert self.bg_predictor is not None
            losses["bg"] = background_loss(bg_param, self.bg_predictor(driving, source), w.bg)
        return losses, generated


class TpsmmTrainingStep:
    """One first-stage step: ``step(source, driving, index, epoch) -> (losses, generated)`` (as FOMM's
    :class:`~fomm_lab.train.step.TrainingStep`: losses averaged over the processes, a NaN or infinite total stops
    the run before any weight changes), then the backward pass, the clipping and the Adam steps."""

    def __init__(self, config: TpsmmTrainingConfig, networks: TpsmmNets, optimizers: TpsmmOptimizers,
                 vgg: VGG19Features | None, process: distributed.Process, *, seed: int = 0,
                 last_checkpoint: Path | None = None) -> None:
        self.params = config.train
        self.networks, self.optimizers, self.process, self.seed = networks, optimizers, process, seed
        self.last_checkpoint = last_checkpoint
        self.full = TpsmmGeneratorFull(networks, config.train, vgg, config.model.common.num_channels)
        self.wrapped = distributed.wrap(self.full.to(process.device), process,
                                        find_unused=networks.bg_predictor is not None)

    def __call__(self, source: torch.Tensor, driving: torch.Tensor, index: int,
                 epoch: int = 0) -> tuple[dict[str, float], Generated]:
        p = self.params
        transform = None
        if p.loss_weights.equivariance_value != 0:
            transform = equivariance_transform(p.transform_params, source.shape[0], seed=self.seed, index=index,
                                               process=self.process)
        dropout = step_generator(self.seed, index, self.process.rank, DROPOUT_STREAM)
        losses, generated = self.wrapped(source, driving, transform, epoch, dropout)
        total = sum(losses.values(), source.new_zeros(()))
        values = checked_values(losses, total, index, self.process, self.last_checkpoint)
        background = self.full.uses_background(epoch)
        for optimizer in self.optimizers.named().values():
            optimizer.zero_grad(set_to_none=True)
        total.backward()
        nets = self.networks
        clipped = [nets.kp_detector, nets.dense_motion_network]
        if background and nets.bg_predictor is not None:
            clipped.append(nets.bg_predictor)
        for module in clipped:
            clip_grad_norm_(module.parameters(), GRADIENT_CLIP, norm_type=math.inf)
        self.optimizers.generator.step()
        if background and self.optimizers.bg_predictor is not None:
            self.optimizers.bg_predictor.step()
        return values, generated


class TpsmmTraining:
    """TPSMM's first training stage for ``config`` (a :class:`~fomm_lab.train.family.TrainingFamily`).
    ``widths``: the hard-coded widths of networks built from scratch (a starting checkpoint's own otherwise)."""

    name = "tpsmm"
    needs_start = False

    def __init__(self, config: TpsmmTrainingConfig, widths: Widths = Widths()) -> None:
        self.config = config
        self.widths = widths

    @property
    def schedule(self) -> TpsmmTrainParams:
        return self.config.train

    @property
    def vgg_layers(self) -> int:
        weights = self.config.train.loss_weights
        return vgg_layers_for(weights.perceptual) if weights.uses_perceptual else 0

    def check(self) -> None:
        from .visualize import check_colormap

        config = self.config
        w = config.train.loss_weights
        if not (w.uses_perceptual or w.equivariance_value != 0 or w.warp_loss != 0
                or (w.bg != 0 and config.model.common.bg)):
            raise ConfigError(f"config {config.path}: every loss weight in train_params.loss_weights is 0 (perceptual, "
                              "equivariance_value, warp_loss, bg): nothing to train")
        check_colormap(config.visualizer.colormap)
        if w.equivariance_value != 0 and config.train.transform_params is None:
            raise ConfigError(f"config {config.path}: the equivariance loss needs train_params.transform_params "
                              "(sigma_affine, sigma_tps, points_tps)")

    def read_checkpoint(self, path: Path) -> dict:
        return read_tpsmm_checkpoint(path)

    def build(self, data: dict | None, path: Path | None, resumed: bool) -> TpsmmNets:
        return build_networks(self.config, data, path, avd=False, fresh_bg=True, widths=self.widths)

    def optimizers(self, networks: TpsmmNets) -> TpsmmOptimizers:
        lr = self.config.train.lr_generator
        parameters = [*networks.inpainting_network.parameters(), *networks.dense_motion_network.parameters(),
                      *networks.kp_detector.parameters()]
        generator = torch.optim.Adam(parameters, lr=lr, betas=BETAS, weight_decay=WEIGHT_DECAY)
        background = (torch.optim.Adam(networks.bg_predictor.parameters(), lr=lr, betas=BETAS,
                                       weight_decay=WEIGHT_DECAY) if networks.bg_predictor is not None else None)
        return TpsmmOptimizers(generator, background)

    def load_optimizers(self, data: dict, path: Path, optimizers: TpsmmOptimizers) -> None:
        if "optimizer" not in data and "optimizer_avd" in data:
            raise TrainingError(f"checkpoint {path} is one of TPSMM's second stage (it has optimizer_avd, not the "
                                "first stage's optimizer): resume it with --avd, or start a new first-stage run from "
                                "its weights with --checkpoint instead of --resume")
        load_optimizers(data, path, optimizers, optional=("optimizer_bg_predictor",))

    def set_learning_rates(self, optimizers: TpsmmOptimizers, epoch: int) -> dict[str, float]:
        p = self.config.train
        rate = lr_at(p.lr_generator, p.epoch_milestones, epoch)
        named = {"generator": optimizers.generator}
        if optimizers.bg_predictor is not None:
            named["bg_predictor"] = optimizers.bg_predictor
        return set_rates(named, {name: rate for name in named})

    def train_mode(self, networks: TpsmmNets) -> None:
        for module in networks.named().values():
            module.train(True)

    def step(self, networks: TpsmmNets, optimizers: TpsmmOptimizers, vgg: VGG19Features | None,
             process: distributed.Process, *, seed: int, last_checkpoint: Path | None) -> StepFunction:
        return TpsmmTrainingStep(self.config, networks, optimizers, vgg, process, seed=seed,
                                 last_checkpoint=last_checkpoint)

    def picture(self, batch: dict, generated: Generated) -> np.ndarray:
        from .visualize import training_picture

        return training_picture(batch["source"], batch["driving"], generated, self.config.visualizer)


# ---------------------------------------------------------------------------------------- second stage


@dataclass
class AvdGenerated:
    """What one AVD step produced, for its picture: the keypoints (N, 5K, 2) of the source and driving frames, the
    AVD network's keypoints and the random ``scale`` of the driving keypoints it was given."""

    kp_source: torch.Tensor
    kp_driving: torch.Tensor
    kp_avd: torch.Tensor
    scale: float


class AvdTrainingStep:
    """One second-stage step: keypoints of both frames by the frozen detector, the AVD network on the source's
    and the randomly scaled driving ones, L = lambda_shift mean |p_D - AVD(p_S, s p_D)|, backward, Adam step."""

    def __init__(self, params: AvdTrainParams, networks: TpsmmNets, optimizers: AvdOptimizers,
                 process: distributed.Process, *, seed: int = 0, last_checkpoint: Path | None = None) -> None:
        if networks.avd_network is None:
            raise ValueError("the AVD stage needs the AVD network")
        self.params, self.networks, self.optimizers = params, networks, optimizers
        self.process, self.seed = process, seed
        self.last_checkpoint = last_checkpoint
        self.avd = distributed.wrap(networks.avd_network.to(process.device), process)

    def __call__(self, source: torch.Tensor, driving: torch.Tensor, index: int,
                 epoch: int = 0) -> tuple[dict[str, float], AvdGenerated]:
        p = self.params
        with torch.no_grad():
            kp_source = self.networks.kp_detector(source)
            kp_driving = self.networks.kp_detector(driving)
        draw = torch.rand((), generator=step_generator(self.seed, index, self.process.rank, SCALE_STREAM))
        scale = 1 + (float(draw) - 0.5) * 2 * p.random_scale
        predicted = self.avd(kp_source, kp_driving * scale)
        losses = {"avd_keypoints": p.lambda_shift * (kp_driving - predicted).abs().mean()}
        total = losses["avd_keypoints"]
        values = checked_values(losses, total, index, self.process, self.last_checkpoint)
        self.optimizers.avd.zero_grad(set_to_none=True)
        total.backward()
        self.optimizers.avd.step()
        return values, AvdGenerated(kp_source, kp_driving, predicted.detach(), scale)


def avd_picture(source: torch.Tensor, driving: torch.Tensor, generated: AvdGenerated, params: VisualizerParams,
                rows: int = 4) -> np.ndarray:
    """One row per sample: source + its keypoints | driving + its keypoints | driving + the AVD network's keypoints
    (uint8 (rows*H, 3*W, 3))."""
    from .visualize import draw_keypoints, keypoint_colours, to_images

    rows = min(rows, source.shape[0])
    colours = keypoint_colours(generated.kp_source.shape[1], params.colormap)

    def with_kp(frames: torch.Tensor, values: torch.Tensor) -> np.ndarray:
        points = values[:rows].detach().float().cpu().numpy()
        return np.vstack([draw_keypoints(img, p, colours, params.kp_size)
                          for img, p in zip(to_images(frames, rows), points)])

    tiles = [with_kp(source, generated.kp_source), with_kp(driving, generated.kp_driving),
             with_kp(driving, generated.kp_avd)]
    if params.draw_border:
        for tile in tiles:
            tile[:, [0, -1]] = 255
    return np.hstack(tiles)


class AvdTraining:
    """TPSMM's second stage for ``config`` (``train_avd_params``; a :class:`~fomm_lab.train.family.TrainingFamily`):
    it needs a starting checkpoint (the first stage's, or its own to resume)."""

    name = "tpsmm-avd"
    needs_start = True

    def __init__(self, config: TpsmmTrainingConfig) -> None:
        if config.avd is None:
            raise ConfigError(f"config {config.path or config.model.name} has no train_avd_params: the AVD stage reads "
                              "its epochs, batch size, learning rate, lambda_shift and random_scale from there (as the "
                              "authors' configs have them)")
        self.config = config
        self.params: AvdTrainParams = config.avd

    @property
    def schedule(self) -> AvdTrainParams:
        return self.params

    @property
    def vgg_layers(self) -> int:
        return 0

    def check(self) -> None:
        from .visualize import check_colormap

        check_colormap(self.config.visualizer.colormap)
        if self.params.lambda_shift == 0:
            raise ConfigError(f"config {self.config.path}: train_avd_params.lambda_shift is 0: nothing to train")

    def read_checkpoint(self, path: Path) -> dict:
        return read_tpsmm_checkpoint(path)

    def build(self, data: dict | None, path: Path | None, resumed: bool) -> TpsmmNets:
        if data is None or path is None:
            raise TrainingError("the AVD stage trains on a trained TPSMM: give the first stage's checkpoint with "
                                "--checkpoint FILE (or --resume an AVD run)")
        if resumed and "avd_network" not in data:
            raise TrainingError(f"checkpoint {path} has no avd_network: it is not one of an AVD run, so --avd --resume "
                                f"cannot continue it; start the AVD stage from it with --avd --checkpoint {path}")
        nets = build_networks(self.config, data, path, avd=True, fresh_bg=False)
        for name, module in nets.named().items():
            module.requires_grad_(name == "avd_network")
        return nets

    def optimizers(self, networks: TpsmmNets) -> AvdOptimizers:
        assert networks.avd_network is not None
        return AvdOptimizers(torch.optim.Adam(networks.avd_network.parameters(), lr=self.params.lr, betas=BETAS))

    def load_optimizers(self, data: dict, path: Path, optimizers: AvdOptimizers) -> None:
        load_optimizers(data, path, optimizers)

    def set_learning_rates(self, optimizers: AvdOptimizers, epoch: int) -> dict[str, float]:
        return set_rates({"avd_network": optimizers.avd},
                         {"avd_network": lr_at(self.params.lr, self.params.epoch_milestones, epoch)})

    def train_mode(self, networks: TpsmmNets) -> None:
        for name, module in networks.named().items():
            module.train(name == "avd_network")

    def step(self, networks: TpsmmNets, optimizers: AvdOptimizers, vgg: VGG19Features | None,
             process: distributed.Process, *, seed: int, last_checkpoint: Path | None) -> StepFunction:
        return AvdTrainingStep(self.params, networks, optimizers, process, seed=seed, last_checkpoint=last_checkpoint)

    def picture(self, batch: dict, generated: AvdGenerated) -> np.ndarray:
        return avd_picture(batch["source"], batch["driving"], generated, self.config.visualizer)
