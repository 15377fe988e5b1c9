"""One training process or many: ``torchrun --nproc_per_node N [--nnodes M ...] -m fomm_lab train ...``.

torchrun starts one process per GPU (or per CPU worker) and tells each its place through the environment
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``). :func:`start` reads it, joins the
process group -- NCCL on GPUs (process ``LOCAL_RANK`` uses GPU ``LOCAL_RANK``), gloo on the CPU -- and
:func:`wrap` turns a module into a DistributedDataParallel one whose batch-norm statistics are synchronised
(torch's SyncBatchNorm on GPUs, :class:`~fomm_lab.train.syncbn.SyncBatchNorm2d` elsewhere, since torch's runs
on GPUs only). Only process 0 writes checkpoints, logs and pictures. Without torchrun (or with one
process) nothing is wrapped.

The global batch is ``train_params.batch_size`` as in the paper; each of the N processes takes batch_size / N
samples of it.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ..errors import FommLabError, Remedy
from .syncbn import convert_batchnorm

TIMEOUT = datetime.timedelta(minutes=30)
"""How long a process waits for the others at a collective operation before giving up."""


@dataclass(frozen=True)
class Process:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its machine), its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """The process that writes (rank 0)."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise FommLabError(f"environment variable {name}={value!r} is not a whole number; it is set by torchrun, "
                           "start the run with torchrun or unset it") from None


def launched_processes() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return _env_int("WORLD_SIZE") or 1


def start(device: str | None = None) -> Process:
    """This process's :class:`Process`; joins the process group when torchrun started several.

    ``device``: None picks CUDA when available (one GPU per process) else the CPU (single process: the best
    of cuda > mps > cpu); ``"cpu"`` forces gloo on the CPU.
    """
    from ..device import pick_device

    world = launched_processes()
    if world <= 1:
        return Process(device=pick_device(device))
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None or local is None:
        raise FommLabError("WORLD_SIZE is set but RANK or LOCAL_RANK is not: start distributed training with "
                           "torchrun (torchrun --nproc_per_node N -m fomm_lab train ...)")
    wants_cuda = (device is None and torch.cuda.is_available()) or (device is not None and device.startswith("cuda"))
    if wants_cuda:
        if not torch.cuda.is_available():
            raise FommLabError(f"device {device!r} was asked for but CUDA is not available here",
                               remedies=[Remedy("use the CPU ({})", "runtime.device", "cpu")])
        if local >= torch.cuda.device_count():
            raise FommLabError(f"process {local} on this machine has no GPU of its own: {torch.cuda.device_count()} "
                               "GPU(s) here; start at most that many processes per machine (--nproc_per_node)")
        chosen, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(chosen)
    else:
        chosen, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    return Process(rank=rank, local_rank=local, world_size=world, device=chosen, backend=backend)


def stop(process: Process) -> None:
    """Leave the process group (if this process joined one)."""
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()


def synchronise_batchnorm(module: nn.Module, process: Process) -> nn.Module:
    """``module`` with synchronised batch norm (see the module's description); unchanged for one process."""
    if not process.distributed:
        return module
    if process.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return convert_batchnorm(module)


def wrap(module: nn.Module, process: Process, find_unused: bool = False) -> nn.Module:
    """``module`` in DistributedDataParallel (parameters and buffers broadcast from process 0 now, gradients
    averaged at every backward); unchanged for one process. ``find_unused``: some parameters take no part in
    some steps (TPSMM's background predictor before ``bg_start``)."""
    if not process.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [process.device.index] if process.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def mean_over_processes(values: dict[str, float], process: Process) -> dict[str, float]:
    """The average of each value over the processes (the same keys in every process)."""
    if not process.distributed or not values:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=process.device)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / process.world_size).tolist()))


def barrier(process: Process) -> None:
    if process.distributed:
        dist.barrier()


def local_batch(global_batch: int, process: Process) -> int:
    """Samples per process of a ``global_batch``; FommLabError when it cannot be shared out evenly."""
    if global_batch % process.world_size:
        raise FommLabError(f"batch size {global_batch} cannot be shared by {process.world_size} processes: give a "
                           f"multiple of {process.world_size} (train_params.batch_size or --batch-size)")
    return global_batch // process.world_size
