"""Batch normalisation with statistics over the batches of every process, on any device (CPU included).

``torch.nn.SyncBatchNorm`` only runs on GPUs; :class:`SyncBatchNorm2d` does the same on every backend (gloo
on the CPU): the per-channel mean and variance are computed over the union of the processes' batches with
two differentiable all-reduces (the sum and count, then the sum of squared deviations from the global
mean, which is exact in float32 where E[x^2] - E[x]^2 is not), the running statistics are updated with the
global values (unbiased variance), and gradients flow back through the all-reduces to every process.
Outside training, or without a process group of more than one process, it is a plain BatchNorm2d. State
dict names are BatchNorm2d's, so checkpoints do not change.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """y = sum over the processes of x; the gradient of x is the sum over the processes of y's gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every process of the default group (see the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"SyncBatchNorm2d expects (N, C, H, W) input, got {tuple(x.shape)}")
        channels = x.shape[1]
        local_count = x.new_tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype)
        sums = _all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), local_count]))
        count = sums[channels]
        mean = sums[:channels] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = _all_reduce((centred**2).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None  # type: ignore[arg-type]
                            else self.momentum)
                unbiased = var.detach() * count / torch.clamp(count - 1, min=1)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by a :class:`SyncBatchNorm2d` holding the same parameters and
    statistics (in place for children; a BatchNorm2d root is returned converted)."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SyncBatchNorm2d):
        synced = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats, device=_device(module), dtype=_dtype(module))
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        synced.requires_grad_(any(p.requires_grad for p in module.parameters()) or not list(module.parameters()))
        return synced
    for name, child in list(module.named_children()):
        converted = convert_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _device(module: nn.Module) -> torch.device:
    return next(iter(module.state_dict().values())).device


def _dtype(module: nn.Module) -> torch.dtype:
    return next(v for v in module.state_dict().values() if v.is_floating_point()).dtype


__all__ = ["SyncBatchNorm2d", "convert_batchnorm"]
