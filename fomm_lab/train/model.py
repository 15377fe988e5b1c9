"""The networks being trained and the two modules one training step runs (each once, so each can be
wrapped in DistributedDataParallel).

* :class:`GeneratorFull` -- keypoints of the source and driving frames, the generator's reconstruction,
  the perceptual loss on the image pyramid and the equivariance losses (keypoints of a randomly transformed
  driving frame). Holds the keypoint detector and the generator (the parameters its optimisers update),
  the fixed VGG19 and the pyramid.
* :class:`DiscriminatorFull` -- the LSGAN discriminator loss on the real and the (detached) generated pyramids.

The adversarial terms of the generator (:func:`generator_adversarial_losses`) run the discriminator with its
parameters frozen, outside both modules, so that no parameter belongs to two of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..engine.keypoints import Keypoints
from ..engine.model import build_networks
from ..engine.nets import KPDetector, OcclusionAwareGenerator
from .discriminator import MultiScaleDiscriminator
from .losses import (
    DiscriminatorOutput,
    ImagePyramid,
    Pyramid,
    discriminator_gan_loss,
    equivariance_jacobian_loss,
    equivariance_value_loss,
    feature_matching_loss,
    generator_gan_loss,
    keypoint_prior_loss,
    perceptual_loss,
    pixel_loss,
)
from .params import LossWeights, TrainingConfig
from .transforms import RandomTransform
from .vgg import VGG19Features


@dataclass
class TrainingNetworks:
    """The three networks of a checkpoint (plain modules, never the distributed wrappers)."""

    kp_detector: KPDetector
    generator: OcclusionAwareGenerator
    discriminator: MultiScaleDiscriminator

    def named(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "kp_detector": self.kp_detector, "discriminator": self.discriminator}

    def train(self, mode: bool = True) -> None:
        for module in self.named().values():
            module.train(mode)


def build_training_networks(config: TrainingConfig, device: torch.device | str = "cpu") -> TrainingNetworks:
    """The keypoint detector and generator of ``config.model`` and its multi-scale discriminator (random weights)."""
    kp_detector, generator = build_networks(config.model, device=device)
    with torch.device(device):
        discriminator = MultiScaleDiscriminator(config.discriminator, num_channels=config.model.common.num_channels,
                                                num_kp=config.model.common.num_kp)
    return TrainingNetworks(kp_detector, generator, discriminator)


@dataclass
class Generated:
    """What one generator step produced (for the discriminator step, the log and the visualisations).

    prediction (N, 3, H, W); deformation (N, h, w, 2); occlusion_map (N, 1, h, w) or None; kp_source,
    kp_driving (N, K, .); transformed_frame (N, 3, H, W) and transformed_kp, when equivariance is on;
    real / fake: the pyramids of the driving frame and of the prediction; deformed: (N, 3, H, W) the source
    warped by the model's own rule (None: the picture warps it with FOMM's).
    """

    prediction: torch.Tensor
    deformation: torch.Tensor
    occlusion_map: torch.Tensor | None
    kp_source: Keypoints
    kp_driving: Keypoints
    real: Pyramid
    fake: Pyramid
    transformed_frame: torch.Tensor | None = None
    transformed_kp: Keypoints | None = None
    deformed: torch.Tensor | None = None


def detached(kp: Keypoints) -> Keypoints:
    return Keypoints(kp.value.detach(), None if kp.jacobian is None else kp.jacobian.detach())


class GeneratorFull(nn.Module):
    """forward(source, driving, transform) -> (weighted losses by name, :class:`Generated`).

    source, driving: (N, 3, H, W) in [0, 1]; transform: the random transform of the equivariance losses
    (None when they are off). The perceptual loss runs on the pyramid levels ``scales``; ``extra_scales`` are
    levels only the discriminator needs.
    """

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator, weights: LossWeights,
                 scales: tuple[float, ...], vgg: VGG19Features | None, num_channels: int = 3,
                 extra_scales: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.weights = weights
        self.scales = tuple(scales)
        self.pyramid = ImagePyramid(tuple(dict.fromkeys((*scales, *extra_scales))), num_channels)
        if weights.uses_perceptual and vgg is None:
            raise ValueError("the perceptual loss needs the VGG19 network")
        self.vgg = vgg if weights.uses_perceptual else None

    def forward(self, source: torch.Tensor, driving: torch.Tensor,
                transform: RandomTransform | None = None) -> tuple[dict[str, torch.Tensor], Generated]:
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        out = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        generated = Generated(out["prediction"], out["deformation"], out["occlusion_map"], kp_source, kp_driving,
                              real=self.pyramid(driving), fake=self.pyramid(out["prediction"]))
        losses: dict[str, torch.Tensor] = {}
        w = self.weights
        fake = {s: generated.fake[s] for s in self.scales}
        if self.vgg is not None:
            losses["perceptual"] = perceptual_loss(self.vgg, fake, generated.real, w.perceptual)
        if w.pixel != 0:
            losses["pixel"] = pixel_loss(fake, generated.real, w.pixel)
        if w.keypoint_prior != 0:
            both = torch.cat([kp_source.value, kp_driving.value])
            losses["keypoint_prior"] = keypoint_prior_loss(both, w.keypoint_distance, w.keypoint_prior)
        if w.uses_equivariance:
            if transform is None:
                raise ValueError("the equivariance losses need a random transform")
            frame = transform.warp_frame(driving)
            kp_transformed = self.kp_detector(frame)
            generated.transformed_frame, generated.transformed_kp = frame, kp_transformed
            if w.equivariance_value != 0:
                losses["equivariance_value"] = equivariance_value_loss(kp_driving, kp_transformed, transform,
                                                                       w.equivariance_value)
            if w.equivariance_jacobian != 0:
                losses["equivariance_jacobian"] = equivariance_jacobian_loss(kp_driving, kp_transformed, transform,
                                                                             w.equivariance_jacobian)
        return losses, generated


def generator_adversarial_losses(discriminator: MultiScaleDiscriminator, generated: Generated,
                                 weights: LossWeights) -> dict[str, torch.Tensor]:
    """The generator's LSGAN and feature-matching terms, the discriminator's parameters frozen meanwhile."""
    scales = discriminator.scales
    kp = detached(generated.kp_driving)
    fake_pyramid = {s: generated.fake[s] for s in scales}
    real_pyramid = {s: generated.real[s] for s in scales}
    frozen = [p for p in discriminator.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        fake: DiscriminatorOutput = discriminator(fake_pyramid, kp)
        losses = {"gen_gan": generator_gan_loss(fake, weights.generator_gan)}
        if weights.uses_feature_matching:
            with torch.no_grad():
                real: DiscriminatorOutput = discriminator(real_pyramid, kp)
            losses["feature_matching"] = feature_matching_loss(real, fake, weights.feature_matching)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return losses


class DiscriminatorFull(nn.Module):
    """forward(real, fake, kp) -> {"disc_gan": loss}: ``real``/``fake`` pyramids (the fake one detached)."""

    def __init__(self, discriminator: MultiScaleDiscriminator, weights: LossWeights) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.weight = weights.discriminator_gan

    def forward(self, real: Pyramid, fake: Pyramid, kp: Keypoints) -> dict[str, torch.Tensor]:
        scales = self.discriminator.scales
        real_out = self.discriminator({s: real[s] for s in scales}, kp)
        fake_out = self.discriminator({s: fake[s].detach() for s in scales}, kp)
        return {"disc_gan": discriminator_gan_loss(real_out, fake_out, self.weight)}
