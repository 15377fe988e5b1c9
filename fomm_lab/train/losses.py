"""The training losses of the paper (Sec. 3.3, "Training losses"), each a 0-d tensor already weighted.

Notation: D is the driving frame, D^ the generator's reconstruction of it from the source, N_i the i-th
VGG19 feature layer, T a random transform with Y = X o T (:mod:`fomm_lab.train.transforms`), p_k the
keypoints and J_k their jacobians. Weights come from ``train_params.loss_weights`` of the yaml.

* Reconstruction (perceptual) loss, on an image pyramid (scales ``train_params.scales``):
  L_rec = sum_s sum_i w_i mean |N_i(D^_s) - N_i(D_s)|.
* Equivariance of the keypoint values: T_{X<-Y}(p_k^Y) must equal p_k^X:
  L_eq = w mean |p_k^X - T(p_k^Y)|.
* Equivariance of the jacobians: J_k^X must equal (dT/dp at p_k^Y) J_k^Y, imposed as
  L_eqJ = w mean |I - (J_k^X)^{-1} (dT/dp at p_k^Y) J_k^Y|.
* LSGAN (Mao et al., 2017) with the multi-scale discriminator, for the ``-adv`` configs: the generator
  minimises w mean (1 - D(D^_s))^2, the discriminator w mean ((1 - D(D_s))^2 + D(D^_s)^2), summed over the
  discriminator's scales; feature matching adds sum_s sum_i w_i mean |F_i(D_s) - F_i(D^_s)| over the
  discriminator blocks' feature maps F_i.

The Thin-Plate Spline Motion Model's training (Zhao & Zhang, CVPR 2022, Sec. 3.5) uses the same perceptual
and keypoint-value equivariance losses, and two of its own:

* Warp loss: the features of the driving frame D at each level i of the inpainting network's encoder must
  equal the source's features warped by the predicted motion, both masked by that level's occlusion mask:
  L_warp = w sum_i mean |E_i(D) - W(E_i(S))| (:func:`warp_loss`).
* Background loss: the background affine transformations predicted for (S, D) and for (D, S) must be each
  other's inverse: L_bg = w mean |A_{S<-D} A_{D<-S} - I| (:func:`background_loss`).

Beyond the paper, for training on few or rigid objects, where all keypoints can gather on one spot (one keypoint
and its jacobian carry a rigid motion):

* Keypoint prior of face-vid2vid (Wang et al., CVPR 2021, Eq. 6, without its depth term): every pair of keypoints
  of a frame should be at least D apart, L_prior = w mean_{i != j} max(0, D - |p_i - p_j|)
  (:func:`keypoint_prior_loss`; a hinge on the distance, where face-vid2vid's is on its square).

All means run over every element (batch, keypoints, channels, pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.keypoints import Keypoints
from ..engine.nets.blocks import AntiAliasInterpolation2d
from .discriminator import scale_name
from .transforms import RandomTransform
from .vgg import VGG19Features, perceptual_distance

Pyramid = dict[float, torch.Tensor]
"""Images by scale: scale -> (N, C, H*s, W*s)."""

DiscriminatorOutput = dict[float, tuple[list[torch.Tensor], torch.Tensor]]
"""Per discriminator scale: (feature maps of each block, patch scores (N, 1, h, w))."""


class ImagePyramid(nn.Module):
    """(N, C, H, W) -> {scale: (N, C, H*scale, W*scale)}: Gaussian anti-aliasing then subsampling (the
    engine's :class:`AntiAliasInterpolation2d`); scale 1 is the image itself."""

    def __init__(self, scales: Sequence[float], num_channels: int = 3) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.downs = nn.ModuleDict({
            scale_name(s): nn.Identity() if s == 1 else AntiAliasInterpolation2d(num_channels, s) for s in self.scales})

    def forward(self, x: torch.Tensor) -> Pyramid:
        return {s: self.downs[scale_name(s)](x) for s in self.scales}


def perceptual_loss(vgg: VGG19Features, generated: Pyramid, real: Pyramid, weights: Sequence[float]) -> torch.Tensor:
    """L_rec: the VGG19 feature distance of every pyramid level of the reconstruction to the driving frame."""
    total = next(iter(generated.values())).new_zeros(())
    for scale, image in generated.items():
        total = total + perceptual_distance(vgg, image, real[scale], tuple(weights))
    return total


def pixel_loss(generated: Pyramid, real: Pyramid, weight: float) -> torch.Tensor:
    """w sum over pyramid levels of mean |reconstruction - driving frame| (not in the paper)."""
    total = next(iter(generated.values())).new_zeros(())
    for scale, image in generated.items():
        total = total + (image - real[scale]).abs().mean()
    return weight * total


def keypoint_prior_loss(keypoints: torch.Tensor, distance: float, weight: float) -> torch.Tensor:
    """w mean over the batch and the ordered pairs i != j of max(0, D - |p_i - p_j|), for keypoint values
    (N, K, 2) (K >= 2) in normalised coordinates and D = ``distance`` in the same units."""
    count = keypoints.shape[1]
    if count < 2:
        raise ValueError(f"the keypoint prior needs two keypoints or more, got {count}")
    apart = ~torch.eye(count, dtype=torch.bool, device=keypoints.device)
    offsets = (keypoints[:, :, None] - keypoints[:, None])[:, apart]  # (N, K (K - 1), 2)
    gaps = torch.sqrt(offsets.pow(2).sum(-1) + 1e-12)  # finite gradient where two keypoints meet
    return weight * F.relu(distance - gaps).mean()


def equivariance_value_loss(kp_driving: Keypoints, kp_transformed: Keypoints, transform: RandomTransform,
                            weight: float) -> torch.Tensor:
    """w mean |p^X - T(p^Y)| for keypoints (N, K, 2) of the frame X and of its transform Y."""
    return weight * (kp_driving.value - transform.warp_coordinates(kp_transformed.value)).abs().mean()


def equivariance_jacobian_loss(kp_driving: Keypoints, kp_transformed: Keypoints, transform: RandomTransform,
                               weight: float) -> torch.Tensor:
    """w mean |I - (J^X)^{-1} (dT/dp at p^Y) J^Y| for jacobians (N, K, 2, 2) of X and of its transform Y."""
    if kp_driving.jacobian is None or kp_transformed.jacobian is None:
        raise ValueError("the jacobian equivariance loss needs keypoints with jacobians (estimate_jacobian)")
    predicted = torch.matmul(transform.jacobian(kp_transformed.value), kp_transformed.jacobian)
    value = torch.matmul(torch.inverse(kp_driving.jacobian), predicted)
    eye = torch.eye(2, dtype=value.dtype, device=value.device).view(1, 1, 2, 2)
    return weight * (eye - value).abs().mean()


def warp_loss(driving_features: Sequence[torch.Tensor], warped_features: Sequence[torch.Tensor],
              weight: float) -> torch.Tensor:
    """L_warp = w sum_i mean |E_i(D) - W(E_i(S))| over the encoder levels i: ``driving_features`` (the targets,
    detached) and ``warped_features``, each a list of (N, C_i, H_i, W_i) maps of the same shapes."""
    if len(driving_features) != len(warped_features):
        raise ValueError(f"the warp loss needs one warped map per driving map, got {len(warped_features)} and "
                         f"{len(driving_features)}")
    total = warped_features[0].new_zeros(())
    for target, warped in zip(driving_features, warped_features):
        total = total + (target.detach() - warped).abs().mean()
    return weight * total


def background_loss(forward: torch.Tensor, backward: torch.Tensor, weight: float) -> torch.Tensor:
    """L_bg = w mean |A_{S<-D} A_{D<-S} - I| for the (N, 3, 3) affine matrices of (source, driving) -- ``forward``,
    driving coordinates to source ones -- and of (driving, source) -- ``backward``; the mean runs over all 9
    entries of each product."""
    eye = torch.eye(3, dtype=forward.dtype, device=forward.device)
    return weight * (torch.matmul(forward, backward) - eye).abs().mean()


def generator_gan_loss(fake: DiscriminatorOutput, weight: float) -> torch.Tensor:
    """LSGAN generator term: sum over scales of w mean (1 - D(D^))^2."""
    total = next(iter(fake.values()))[1].new_zeros(())
    for _, scores in fake.values():
        total = total + weight * ((1 - scores) ** 2).mean()
    return total


def feature_matching_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput,
                          weights: Sequence[float]) -> torch.Tensor:
    """sum over scales and blocks i of w_i mean |F_i(D) - F_i(D^)| (the real features are targets)."""
    total = next(iter(fake.values()))[1].new_zeros(())
    for scale, (fake_maps, _) in fake.items():
        for weight, a, b in zip(weights, real[scale][0], fake_maps):
            if weight != 0:
                total = total + weight * F.l1_loss(b, a.detach())
    return total


def discriminator_gan_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput, weight: float) -> torch.Tensor:
    """LSGAN discriminator term: sum over scales of w mean ((1 - D(D))^2 + D(D^)^2)."""
    total = next(iter(real.values()))[1].new_zeros(())
    for scale, (_, scores) in real.items():
        total = total + weight * ((1 - scores) ** 2 + fake[scale][1] ** 2).mean()
    return total
