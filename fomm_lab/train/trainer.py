"""``fomm-lab train``: the training loop of the paper (Sec. 3.3) on a dataset in the official layout, for every
family the engine knows (:mod:`fomm_lab.train.family`: FOMM, TPSMM and TPSMM's AVD stage, chosen from the config).

For FOMM (:mod:`fomm_lab.train.fomm`) each step draws a batch of (source, driving) frame pairs, runs
:class:`~fomm_lab.train.model.GeneratorFull` (keypoints, reconstruction, perceptual and equivariance losses) and,
for the ``-adv`` configs, the generator's LSGAN and feature-matching terms; the generator and keypoint detector
step together, then the discriminator steps on its LSGAN loss. Optimisers are Adam with betas (0.5, 0.999) and the
learning rates of ``train_params``, divided by 10 at each of ``epoch_milestones``; an epoch is ``num_repeats``
passes over the training videos (identities, with ``id_sampling``), in batches of ``batch_size`` (the last
partial batch dropped). A TPSMM config trains the Thin-Plate Spline Motion Model the same way with its own
networks, losses and optimisers (:mod:`fomm_lab.train.tpsmm`); with ``avd`` its second stage, the AVD network,
on a first-stage checkpoint (``train_avd_params``).

What a run folder ``RUN`` holds (only process 0 writes):

* ``last-checkpoint.pth.tar``: the latest state (every ``checkpoint_every`` steps, at the end, and when the run
  is stopped with Ctrl-C); ``NNNNNNNN-checkpoint.pth.tar`` after every ``checkpoint_freq`` epochs (the
  official names). The official format (:mod:`fomm_lab.train.checkpoint`), written atomically.
* ``log.jsonl``: one JSON object per step: ``step``, ``epoch``, ``time`` (seconds since the run started),
  ``lr``, ``losses`` (each weighted, averaged over the processes) and ``loss`` (their generator total).
* ``train-vis/step-NNNNNNNN.png`` every ``visualize_every`` steps and after every epoch
  (:mod:`fomm_lab.train.visualize`); ``config.yaml``: the config the run started with.

``resume`` continues a run where its last checkpoint left it (optimiser states, epoch and step, the same
samples as an uninterrupted run would have drawn); ``checkpoint`` alone starts a new run from a checkpoint's
weights (fine-tuning; a registry name such as ``vox`` is downloaded first).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..engine.config import check_frame_size
from ..errors import CheckpointError, ConfigError, DatasetError, Remedy, TrainingError
from ..hub.registry import MODELS, RemoteFile
from ..io.atomic import atomic_output
from . import distributed
from .checkpoint import LAST, NamedModules, RunState, epoch_checkpoint_name, run_state, save_checkpoint
from .family import BETAS as BETAS
from .family import LR_DROP as LR_DROP
from .family import TrainingFamily
from .family import lr_at as lr_at
from .params import TpsmmTrainingConfig, TrainingConfig, load_any_training_config

log = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"
VIS_FOLDER = "train-vis"


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """One training run.

    config: a shipped config name or yaml (its ``train_params`` drive the run). data: the dataset folder
    (``DIR/train``, ``DIR/test``). out: the run folder. checkpoint: a checkpoint file or registry name to start
    from (fine-tuning), or with ``resume`` the checkpoint to continue (default: ``out``'s last one).
    device: None: one GPU per process when there are GPUs, else the CPU. seed: every random draw of the run.
    max_steps: stop once the run has made this many steps (None: run every epoch). epochs, batch_size (global),
    num_repeats: replace the yaml's values. num_workers: data-loading processes per training process.
    visualize_every / checkpoint_every: steps between pictures / checkpoints (0: only at epoch ends).
    perceptual_weights: the VGG19 weights -- None: the registry's ``vgg19`` (fetched once into the cache), a
    file, or another registry entry (a private mirror). progress: show progress bars. avd: train TPSMM's second
    stage, the AVD network (``train_avd_params``), on the frozen networks of ``checkpoint``.
    """

    config: str | Path
    data: Path
    out: Path
    checkpoint: str | Path | None = None
    resume: bool = False
    device: str | None = None
    seed: int = 0
    max_steps: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    num_repeats: int | None = None
    num_workers: int = 2
    visualize_every: int = 500
    checkpoint_every: int = 1000
    cache_dir: Path | None = None
    perceptual_weights: Path | RemoteFile | None = None
    progress: bool = True
    avd: bool = False


@dataclass
class TrainResult:
    """Where a run ended: its folder, last checkpoint, step and completed epochs, the last step's losses,
    and whether Ctrl-C stopped it."""

    out: Path
    checkpoint: Path
    step: int
    epoch: int
    losses: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    main: bool = True
    """Whether this process is the one that wrote (rank 0)."""
    networks: NamedModules | None = field(default=None, repr=False)
    """The trained networks, in this process (train mode, on the run's device)."""

    @property
    def log(self) -> Path:
        return self.out / LOG_NAME


Say = Callable[[str], None]


def epoch_batches(n: int, *, epoch: int, seed: int, global_batch: int, process: distributed.Process,
                  skip: int = 0) -> list[int]:
    """This process's sample indices for ``epoch``: a permutation of ``range(n)`` seeded by (seed, epoch), cut
    into global batches (the last partial one dropped), each shared out to the processes in rank order;
    the first ``skip`` batches left out (resuming mid-epoch)."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence((seed, epoch)).generate_state(1)[0]))
    order = torch.randperm(n, generator=generator).tolist()
    local = global_batch // process.world_size
    indices: list[int] = []
    for b in range(skip, n // global_batch):
        start = b * global_batch + process.rank * local
        indices += order[start:start + local]
    return indices


def resolve_checkpoint(value: str | Path, cache_dir: Path | None, progress: bool) -> Path:
    """A checkpoint file, or the cached file of a registry name (downloaded and verified when missing)."""
    path = Path(value)
    if isinstance(value, str) and value in MODELS and not path.exists():
        from ..engine.weights import ensure_checkpoint

        return ensure_checkpoint(value, cache_dir=cache_dir, progress=progress)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give a .pth.tar file or a registry name "
                              f"({', '.join(MODELS)})")
    return path


def _load_vgg(options: TrainOptions, layers: int, device: torch.device):
    from .vgg import ensure_vgg19, load_vgg19

    weights = options.perceptual_weights
    if isinstance(weights, Path):
        path = weights
    else:
        path = ensure_vgg19(options.cache_dir, progress=options.progress, entry=weights)
    return load_vgg19(path, layers).to(device)


def training_family(config: TrainingConfig | TpsmmTrainingConfig, avd: bool = False) -> TrainingFamily:
    """The training stage of ``config``'s family (:mod:`fomm_lab.train.family`); ``avd``: TPSMM's second stage
    (ConfigError for a FOMM config, which has no AVD network)."""
    if isinstance(config, TpsmmTrainingConfig):
        from .tpsmm import AvdTraining, TpsmmTraining

        return AvdTraining(config) if avd else TpsmmTraining(config)
    if avd:
        raise ConfigError(f"config {config.path or config.model.name} is a First Order Motion Model: --avd trains the "
                          "AVD network of a Thin-Plate Spline Motion Model (a TPSMM config, with train_avd_params)")
    from .fomm import FommTraining

    return FommTraining(config)


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines of steps up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut short by a crash
    with atomic_output(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


class _Run:
    """One process's part of a training run (see :func:`train`)."""

    def __init__(self, options: TrainOptions, process: distributed.Process, say: Say) -> None:
        self.options, self.process, self.say = options, process, say
        self.config = load_any_training_config(options.config)
        check_frame_size(self.config.model)
        self.family = training_family(self.config, options.avd)
        self.family.check()
        self.params = self.family.schedule
        self.out = Path(options.out)
        self.main = process.main

    # ------------------------------------------------------------------------------------- setting up

    def dataset(self):
        from .augment import Augmentation
        from .data import PairDataset, dataset_layout, describe, open_videos

        layout = dataset_layout(self.options.data)
        videos = open_videos(layout.train, self.config.frame_size, progress=self.options.progress and self.main,
                             what="training videos")
        if self.main:
            self.say(f"training set {layout.root / 'train'}: {describe(videos)}")
        repeats = self.options.num_repeats or self.params.num_repeats
        return PairDataset(videos, size=self.config.frame_size,
                           augmentation=Augmentation(self.config.dataset.augmentation),
                           id_sampling=self.config.dataset.id_sampling, num_repeats=repeats, seed=self.options.seed)

    def starting_point(self) -> tuple[Path | None, bool]:
        """(checkpoint to load, whether it is resumed); TrainingError when ``out`` holds a run not resumed."""
        last = self.out / LAST
        if self.options.resume:
            if self.options.checkpoint is not None:
                return resolve_checkpoint(self.options.checkpoint, self.options.cache_dir, self.options.progress), True
            if not last.is_file():
                raise TrainingError(f"nothing to resume: {self.out} holds no {LAST}; start the run without resume "
                                    "(or give the checkpoint to resume)")
            return last, True
        if last.is_file():
            raise TrainingError(f"{self.out} already holds a training run ({LAST})",
                                remedies=[Remedy("continue it ({})", "train.resume", True),
                                          Remedy("choose another run folder ({})", "train.out", "RUN")])
        if self.options.checkpoint is not None:
            return resolve_checkpoint(self.options.checkpoint, self.options.cache_dir, self.options.progress), False
        if self.family.needs_start:
            raise TrainingError("the AVD stage trains the AVD network on a trained TPSMM: give the first stage's "
                                "checkpoint (--checkpoint FILE), or resume an AVD run (--resume)")
        return None, False

    def networks(self, start: Path | None, resumed: bool) -> tuple[NamedModules, dict | None]:
        torch.manual_seed(self.options.seed)
        data = self.family.read_checkpoint(start) if start is not None else None
        networks = self.family.build(data, start, resumed)
        if start is not None and self.main:
            self.say(f"{'resuming' if resumed else 'starting from the weights of'} {start}")
        for module in networks.named().values():
            module.to(self.process.device)
            distributed.synchronise_batchnorm(module, self.process)
        return networks, data

    # ---------------------------------------------------------------------------------------- running

    def run(self) -> TrainResult:
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        options, process, p, family = self.options, self.process, self.params, self.family
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        start, resumed = self.starting_point()
        dataset = self.dataset()
        global_batch = options.batch_size or p.batch_size
        local = distributed.local_batch(global_batch, process)
        steps_per_epoch = len(dataset) // global_batch
        if steps_per_epoch == 0:
            raise DatasetError(f"the training set gives {len(dataset)} samples per epoch ({len(dataset.items)} "
                               f"{'identities' if self.config.dataset.id_sampling else 'videos'} x num_repeats "
                               f"{dataset.num_repeats}) but one batch needs {global_batch}: lower the batch size or "
                               "raise num_repeats")
        num_epochs = options.epochs or p.num_epochs
        networks, data = self.networks(start, resumed)
        optimizers = family.optimizers(networks)
        state = RunState(seed=options.seed, batch_size=global_batch, world_size=process.world_size)
        if resumed and data is not None:
            family.load_optimizers(data, start or self.out / LAST, optimizers)
            state = run_state(data)
            if state.step is None:
                state = RunState(epoch=state.epoch, step=state.epoch * steps_per_epoch)
            if state.batch_size not in (None, global_batch) and self.main:
                log.warning("the run was made with batch size %s, it continues with %s", state.batch_size, global_batch)
            if state.epoch_step >= steps_per_epoch:
                state = RunState(epoch=state.epoch + 1, step=state.step, epoch_step=0)
        seed = options.seed if state.seed is None else state.seed
        state = RunState(epoch=state.epoch, step=state.step, epoch_step=state.epoch_step, seed=seed,
                         batch_size=global_batch, world_size=process.world_size)
        del data

        vgg = _load_vgg(options, family.vgg_layers, process.device) if family.vgg_layers else None
        train_step = family.step(networks, optimizers, vgg, process, seed=seed, last_checkpoint=self.out / LAST)
        family.train_mode(networks)

        log_path = self.out / LOG_NAME
        if self.main:
            if resumed:
                _truncate_log(log_path, state.step or 0)
            if self.config.path is not None and not (self.out / "config.yaml").exists():
                with atomic_output(self.out / "config.yaml") as tmp:
                    shutil.copyfile(self.config.path, tmp)
        step = state.step or 0
        target = num_epochs * steps_per_epoch
        if options.max_steps is not None:
            target = min(target, options.max_steps)
        last = self.out / LAST
        epoch, epoch_step = state.epoch, state.epoch_step
        losses: dict[str, float] = {}
        started = time.monotonic()

        def checkpoint(path: Path) -> None:
            if self.main:
                save_checkpoint(path, networks, optimizers,
                                RunState(epoch=epoch, step=step, epoch_step=epoch_step, seed=seed,
                                         batch_size=global_batch, world_size=process.world_size))

        if self.main:
            self.say(f"training {self.config.model.name} on {process.device} ({process.world_size} process(es)): "
                     f"{steps_per_epoch} steps per epoch of batch {global_batch}, epochs {epoch}..{num_epochs}, "
                     f"step {step} -> {target}")
        bar = tqdm(total=target, initial=min(step, target), desc="training", unit="step",
                   disable=not (options.progress and self.main))
        interrupted = False
        try:
            with open(log_path, "a", encoding="utf-8") if self.main else _NoLog() as log_file:
                while epoch < num_epochs and step < target:
                    rates = family.set_learning_rates(optimizers, epoch)
                    dataset.set_epoch(epoch)
                    indices = epoch_batches(len(dataset), epoch=epoch, seed=seed, global_batch=global_batch,
                                            process=process, skip=epoch_step)
                    loader = DataLoader(dataset, batch_size=local, sampler=indices, drop_last=True,
                                        num_workers=options.num_workers, pin_memory=process.device.type == "cuda")
                    generated = batch = None
                    for batch in loader:
                        source = batch["source"].to(process.device, non_blocking=True)
                        driving = batch["driving"].to(process.device, non_blocking=True)
                        values, generated = train_step(source, driving, step, epoch)
                        step += 1
                        epoch_step += 1
                        losses = {k: v for k, v in values.items() if k != "loss"}
                        if self.main:
                            log_file.write(json.dumps({
                                "step": step, "epoch": epoch, "time": round(time.monotonic() - started, 3),
                                "lr": rates, "losses": losses, "loss": values["loss"]}) + "\n")
                            log_file.flush()
                            if options.visualize_every and step % options.visualize_every == 0:
                                self.picture(batch, generated, step)
                            if options.checkpoint_every and step % options.checkpoint_every == 0:
                                checkpoint(last)
                        bar.update(1)
                        bar.set_postfix(loss=f"{values['loss']:.4g}", epoch=epoch)
                        if step >= target:
                            break
                    if epoch_step >= steps_per_epoch:
                        epoch, epoch_step = epoch + 1, 0
                        if self.main:
                            if generated is not None and batch is not None:
                                self.picture(batch, generated, step)
                            if epoch % p.checkpoint_freq == 0:
                                checkpoint(self.out / epoch_checkpoint_name(epoch - 1))
        except KeyboardInterrupt:
            interrupted = True
            if self.main:
                bar.close()
                checkpoint(last)
                log.warning("stopped at step %d; saved %s (continue the run with resume)", step, last)
            raise
        finally:
            bar.close()
            if not interrupted:
                checkpoint(last)
        return TrainResult(out=self.out, checkpoint=last, step=step, epoch=epoch, losses=losses, main=self.main,
                           networks=networks)

    def picture(self, batch: dict, generated, step: int) -> None:
        from ..io.image import save_png

        image = self.family.picture(batch, generated)
        save_png(self.out / VIS_FOLDER / f"step-{step:08d}.png", image)


class _NoLog:
    """Stands in for the log file in the processes that do not write."""

    def __enter__(self) -> _NoLog:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, text: str) -> None:
        return None

    def flush(self) -> None:
        return None


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """CPU floats below 1.2e-38 (denormals) read and written as zero inside the block, off again after it.

    As a run goes on, small weights, Adam moments and gradients fall into the denormal range, where x86 CPUs take
    a slow path for every multiply: a CPU run slows down step after step (measured in docs/performance.md,
    "Training"). Values that small move no update of Adam (its epsilon is 1e-8)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def train(options: TrainOptions, say: Say = log.info) -> TrainResult:
    """Run (or continue) a training run in this process; under torchrun, this process's share of it.

    Raises ConfigError, DatasetError, CheckpointError or TrainingError (before any step where it can);
    KeyboardInterrupt after saving ``last-checkpoint.pth.tar`` when stopped with Ctrl-C.
    """
    process = distributed.start(options.device)
    try:
        with flushed_denormals():
            return _Run(options, process, say).run()
    finally:
        distributed.stop(process)
