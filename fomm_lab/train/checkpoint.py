"""Training checkpoints in the official format, written atomically and read without running code.

A checkpoint is a dict of state dicts -- ``generator``, ``kp_detector``, ``discriminator``,
``optimizer_generator``, ``optimizer_kp_detector``, ``optimizer_discriminator`` -- and ``epoch``, the layout the
paper's code saves and loads, so either code reads the other's files (animation reads ``generator`` and
``kp_detector`` with :func:`fomm_lab.engine.model.load_model`). ``epoch`` is the number of epochs completed, the
epoch the paper's trainer resumes at. One extra entry, ``fomm_lab``, holds what resuming in the middle of an
epoch needs (``step``: optimisation steps done; ``epoch_step``: steps done in the current epoch; the ``seed``,
``batch_size`` and ``world_size`` of the run); the paper's code ignores it.

A file the paper's code saved has no ``fomm_lab`` entry; its ``epoch`` is the index of its last completed
epoch (it saves after each epoch), so it resumes at ``epoch + 1``.

A TPSMM run (:mod:`fomm_lab.train.tpsmm`) saves its authors' layout the same way: ``kp_detector``,
``dense_motion_network``, ``inpainting_network``, ``bg_predictor`` (configs with ``bg``), ``optimizer`` (one Adam
over the first three) and ``optimizer_bg_predictor``; after the second stage also ``avd_network`` and
``optimizer_avd`` -- :func:`save_checkpoint` writes whatever networks and optimisers it is given, by name.

Files are read with :func:`fomm_lab.engine.checkpoint.read_checkpoint` (``torch.load(weights_only=True)``),
optimiser states included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ..engine.checkpoint import describe_mismatch, mismatch, non_finite, read_checkpoint, strip_prefix
from ..errors import CheckpointError, Remedy, TrainingError, shorten
from ..io.atomic import atomic_output
from .model import TrainingNetworks

log = logging.getLogger(__name__)

LAST = "last-checkpoint.pth.tar"
"""The run's latest checkpoint (rewritten as training goes, and on Ctrl-C)."""


def epoch_checkpoint_name(epoch: int) -> str:
    """The official name of the checkpoint saved after 0-based epoch ``epoch``: ``00000009-checkpoint.pth.tar``."""
    return f"{epoch:08d}-checkpoint.pth.tar"


class NamedModules(Protocol):
    """Networks saved by checkpoint entry name (:class:`TrainingNetworks`, TPSMM's ``TpsmmNets``)."""

    def named(self) -> dict[str, nn.Module]: ...


class NamedOptimizers(Protocol):
    """Optimisers saved by checkpoint entry name (:class:`Optimizers`, TPSMM's)."""

    def named(self) -> dict[str, torch.optim.Optimizer]: ...


@dataclass
class Optimizers:
    """The three Adam optimisers of the paper (betas 0.5, 0.999), one per network."""

    generator: torch.optim.Optimizer
    kp_detector: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer

    def named(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer_generator": self.generator, "optimizer_kp_detector": self.kp_detector,
                "optimizer_discriminator": self.discriminator}


@dataclass(frozen=True)
class RunState:
    """Where a run is: ``epoch`` epochs completed, ``step`` optimisation steps done (None: unknown, a file of
    the paper's code), ``epoch_step`` of them in the epoch under way."""

    epoch: int = 0
    step: int | None = 0
    epoch_step: int = 0
    seed: int | None = None
    batch_size: int | None = None
    world_size: int | None = None


def save_checkpoint(path: str | Path, networks: NamedModules, optimizers: NamedOptimizers, state: RunState) -> Path:
    """Write the checkpoint atomically (nothing at ``path`` until it is complete); returns ``path``."""
    data: dict[str, object] = {name: module.state_dict() for name, module in networks.named().items()}
    data.update({name: opt.state_dict() for name, opt in optimizers.named().items()})
    data["epoch"] = state.epoch
    data["fomm_lab"] = {"step": state.step, "epoch_step": state.epoch_step, "seed": state.seed,
                        "batch_size": state.batch_size, "world_size": state.world_size}
    path = Path(path)
    with atomic_output(path) as tmp:
        torch.save(data, tmp)
    return path


def run_state(data: dict) -> RunState:
    """The :class:`RunState` of a checkpoint dict (see the module's description for the paper's files)."""
    extra = data.get("fomm_lab")
    epoch = data.get("epoch")
    if not isinstance(epoch, int):
        return RunState(epoch=0, step=None)
    if not isinstance(extra, dict):
        return RunState(epoch=epoch + 1, step=None)
    ints = {k: extra.get(k) if isinstance(extra.get(k), int) else None
            for k in ("step", "epoch_step", "seed", "batch_size", "world_size")}
    return RunState(epoch=epoch, step=ints["step"], epoch_step=ints["epoch_step"] or 0, seed=ints["seed"],
                    batch_size=ints["batch_size"], world_size=ints["world_size"])


def _fit(name: str, module: nn.Module, state: dict) -> list[str]:
    return describe_mismatch(name, *mismatch(module, state)) if any(mismatch(module, state)) else []


def load_networks(data: dict, path: Path, networks: TrainingNetworks, config_label: str,
                  need_discriminator: bool) -> None:
    """Load a checkpoint's networks strictly: ``generator`` and ``kp_detector`` always; ``discriminator`` when it
    is there and fits -- otherwise, unless ``need_discriminator``, it keeps its fresh weights (a warning says so,
    as when fine-tuning a non-adversarial checkpoint with an ``-adv`` config)."""
    states = {name: strip_prefix(data[name]) for name in ("kp_detector", "generator")
              if isinstance(data.get(name), dict)}
    problems = [line for name in ("kp_detector", "generator")
                for line in _fit(name, getattr(networks, name), states.get(name, {}))]
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit config {config_label}", details=problems,
                              remedies=[Remedy("give the yaml config it was trained with ({})", "model",
                                               "CONFIG.yaml")])
    disc = data.get("discriminator")
    disc_state = strip_prefix(disc) if isinstance(disc, dict) else None
    disc_problems = _fit("discriminator", networks.discriminator, disc_state) if disc_state is not None else [
        "discriminator: not in the file"]
    if disc_problems and need_discriminator:
        raise CheckpointError(f"checkpoint {path}: its discriminator does not fit config {config_label}",
                              details=disc_problems)
    loaded = {**states, **({"discriminator": disc_state} if disc_state is not None and not disc_problems else {})}
    bad = [f"{name}.{key}" for name, state in loaded.items() for key in non_finite(state)]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights ({shorten(bad, 3)}): its training "
                              "diverged or the file is damaged; use an earlier checkpoint")
    for name, state in loaded.items():
        getattr(networks, name).load_state_dict(state, strict=True)
    if disc_problems:
        log.warning("checkpoint %s: the discriminator starts from fresh weights (%s)", path, disc_problems[0])


def load_optimizers(data: dict, path: Path, optimizers: NamedOptimizers, optional: tuple[str, ...] = ()) -> None:
    """Restore the optimiser states (they must be there and fit the networks; those named in ``optional`` keep
    their fresh state when the file has none)."""
    for name, optimizer in optimizers.named().items():
        state = data.get(name)
        if state is None and name in optional:
            continue
        if not isinstance(state, dict):
            raise TrainingError(f"checkpoint {path} has no {name}: it cannot be resumed (it holds weights only); "
                                "start a new run from its weights with --checkpoint instead of --resume")
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise TrainingError(f"checkpoint {path}: {name} does not fit the networks of this config, so the run "
                                "cannot be resumed with it", details=[str(exc)]) from exc


def read_training_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict (read safely; CheckpointError when it is not a FOMM checkpoint)."""
    return read_checkpoint(path)
