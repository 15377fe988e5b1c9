"""Occlusion-aware generator (paper Sec. 3.3; supplementary A.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..keypoints import Keypoints
from .blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, coordinate_grid
from .dense_motion import DenseMotionNetwork
from .mobile import MobileDownBlock2d, MobileResBlock2d, MobileUpBlock2d, conv_stack, mobile_first_block

BLUR_TAPS = (1.0, 3.25, 7.5, 12.75, 15.0, 12.75, 7.5, 3.25, 1.0)
"""The 9-tap Gaussian (sum 64) OpenCV uses for ``GaussianBlur(..., (9, 9), 0)``: its fixed table for that
size, not the formula for sigma 1.7, which differs by up to 1e-3."""


def border_blend_mask(height: int, width: int, border: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The weight of the predicted deformation in PaddleGAN's inference mode, (height, width) in [0, 1].

    1 inside, 0 in a ``border``-pixel frame, blurred by OpenCV's 9x9 Gaussian with zeros beyond the edge
    (``cv2.GaussianBlur(mask, (9, 9), 0, borderType=cv2.BORDER_ISOLATED)``, as PaddleGAN computes it):
    the deformation fades to the identity towards the image border.
    """
    frame = torch.zeros(1, 1, height, width, device=device, dtype=torch.float32)
    frame[..., border:height - border, border:width - border] = 1
    taps = torch.tensor(BLUR_TAPS, device=device, dtype=torch.float32) / 64
    half = len(BLUR_TAPS) // 2
    out = F.conv2d(frame, taps.view(1, 1, 1, -1), padding=(0, half))
    out = F.conv2d(out, taps.view(1, 1, -1, 1), padding=(half, 0))
    return out[0, 0].to(dtype)


def warp(features: torch.Tensor, deformation: torch.Tensor, *, align_corners: bool = False,
         border: int = 0, corner_resize: bool = False) -> torch.Tensor:
    """Backward-warp (N, C, H, W) features with a (N, h, w, 2) grid, resized bilinearly to H x W.

    ``align_corners``: the grid's convention (see :class:`DenseMotionNetwork`). ``corner_resize``: the grid is
    resized corner pixel to corner pixel (``align_corners=True``), so that an identity grid stays the identity at
    H x W under the corner convention (the official resize moves it by up to half a pixel). ``border`` > 0: the
    deformation is first blended towards the identity in a ``border``-pixel frame
    (:func:`border_blend_mask`), as PaddleGAN's generator does in inference mode.
    """
    h, w = features.shape[2:]
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=corner_resize)
        deformation = deformation.permute(0, 2, 3, 1)
    if border > 0:
        mask = border_blend_mask(h, w, border, device=deformation.device, dtype=deformation.dtype)[None, :, :, None]
        identity = coordinate_grid(h, w, device=deformation.device, dtype=deformation.dtype)[None]
        deformation = mask * deformation + (1 - mask) * identity
    return F.grid_sample(features, deformation.to(features.dtype), align_corners=align_corners)


def force_border(occlusion: torch.Tensor, border: int) -> torch.Tensor:
    """(N, 1, h, w) occlusion map with a ``border``-pixel frame set to 1 (nothing occluded there)."""
    h, w = occlusion.shape[2:]
    inside = torch.zeros(h, w, dtype=torch.bool, device=occlusion.device)
    inside[border:h - border, border:w - border] = True
    return torch.where(inside, occlusion, torch.ones((), dtype=occlusion.dtype, device=occlusion.device))


class OcclusionAwareGenerator(nn.Module):
    """Encoder, feature warping with occlusion (Eq. 8), residual bottleneck, decoder.

    encode: source (N, C, H, W) in [0, 1] -> features (N, F, H/2^d, W/2^d).
    decode: features warped by T_{S<-D}, multiplied by the occlusion map, then the bottleneck and
    decoder -> prediction (N, C, H, W) in [0, 1].

    PaddleGAN's variants: ``mobile_net`` (its mobile topology, :mod:`.mobile`; also passed to the dense
    motion network), ``align_corners`` (the grid convention of every ``grid_sample``, True in PaddleGAN),
    ``border`` (PaddleGAN's inference mode: the deformation blends to the identity in a frame of this
    many pixels; 0: off) and ``occlusion_border`` (the occlusion map is forced to 1 in that frame, as
    PaddleGAN does for its standard topology). ``corner_resize`` (fomm_lab's, with ``align_corners`` in an
    official-layout config): the deformation and occlusion maps are resized to the features corner to corner
    (see :func:`warp`).
    """

    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        estimate_occlusion_map: bool = False,
        dense_motion_params: dict | None = None,
        estimate_jacobian: bool = False,
        mobile_net: bool = False,
        align_corners: bool = False,
        border: int = 0,
        occlusion_border: bool = False,
        corner_resize: bool = False,
    ):
        super().__init__()
        if dense_motion_params is None:
            raise ValueError("generator_params needs dense_motion_params")
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp,
            num_channels=num_channels,
            estimate_occlusion_map=estimate_occlusion_map,
            align_corners=align_corners,
            **{"mobile_net": mobile_net, **dense_motion_params},
        )
        down, up, res = (MobileDownBlock2d, MobileUpBlock2d, MobileResBlock2d) if mobile_net else (
            DownBlock2d, UpBlock2d, ResBlock2d)
        if mobile_net:
            self.first: nn.Module = mobile_first_block(num_channels, block_expansion)
        else:
            self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))

        def width(level: int) -> int:
            return min(max_features, block_expansion * 2**level)

        self.down_blocks = nn.ModuleList(down(width(i), width(i + 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            up(width(num_down_blocks - i), width(num_down_blocks - i - 1)) for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", res(width(num_down_blocks), kernel_size=(3, 3), padding=(1, 1)))
        if mobile_net:
            self.final: nn.Module = conv_stack(block_expansion, num_channels, padding=1, relu=True)
        else:
            self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_channels = num_channels
        self.align_corners = align_corners
        self.border = border
        self.occlusion_border = occlusion_border and border > 0
        self.corner_resize = corner_resize

    def encode(self, source_image: torch.Tensor) -> torch.Tensor:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(
        self, features: torch.Tensor, deformation: torch.Tensor, occlusion: torch.Tensor | None
    ) -> torch.Tensor:
        """Source features (1 or N, F, h', w'), deformation (N, h, w, 2), occlusion (N, 1, h, w)."""
        n = deformation.shape[0]
        out = warp(features.expand(n, -1, -1, -1), deformation, align_corners=self.align_corners, border=self.border,
                   corner_resize=self.corner_resize)
        if occlusion is not None:
            out = out * self.occlusion_at(occlusion, out.shape[2:]).to(out.dtype)
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))

    def occlusion_at(self, occlusion: torch.Tensor, size) -> torch.Tensor:
        """The (N, 1, h, w) occlusion map as applied to features of spatial ``size``: resized bilinearly,
        and with ``occlusion_border`` its border frame set to 1."""
        if tuple(occlusion.shape[2:]) != tuple(size):
            occlusion = F.interpolate(occlusion, size=tuple(size), mode="bilinear", align_corners=self.corner_resize)
        return force_border(occlusion, self.border) if self.occlusion_border else occlusion

    def forward(self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> dict:
        """Whole generator as in the paper: returns ``prediction``, ``deformation`` (N, h, w, 2) and
        ``occlusion_map`` (N, 1, h, w) at the dense motion network's resolution. With ``occlusion_border``
        the occlusion map is reported with its border frame forced to 1, as PaddleGAN reports it."""
        cache = self.dense_motion_network.prepare(source_image, kp_source)
        deformation, occlusion = self.dense_motion_network(cache, kp_driving)
        prediction = self.decode(self.encode(source_image), deformation, occlusion)
        if occlusion is not None and self.occlusion_border:
            occlusion = force_border(occlusion, self.border)
        return {"prediction": prediction, "deformation": deformation, "occlusion_map": occlusion}
