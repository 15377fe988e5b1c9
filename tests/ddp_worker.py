"""One process of the distributed tests, started by torchrun (``python -m torch.distributed.run``).

usage: ddp_worker.py REPORT_DIR fomm-lab-train-arguments...

1. Synchronised batch norm: this process's half of a fixed batch through SyncBatchNorm2d must give what
   BatchNorm2d gives on the whole batch (outputs, input gradients, running statistics); the differences go to
   ``REPORT_DIR/syncbn-RANK.json``.
2. ``fomm-lab train ARGS`` as the command line runs it; afterwards this process's parameters are hashed into
   ``REPORT_DIR/weights-RANK.txt`` (the networks are taken from train()'s result).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path

import torch


def digest(modules) -> str:
    sha = hashlib.sha256()
    for name, module in modules:
        for key, value in sorted(module.state_dict().items()):
            sha.update(f"{name}.{key}".encode())
            sha.update(value.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def check_syncbn(report: Path, rank: int, world: int) -> None:
    import torch.distributed as dist

    from fomm_lab.train.syncbn import convert_batchnorm

    dist.init_process_group("gloo")  # kept for the training, which joins it (a group is not made twice)
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.BatchNorm2d(5))
    synced = convert_batchnorm(copy.deepcopy(reference))
    batch = torch.rand(4, 3, 9, 9) * 3 + 1
    weights = torch.rand(4, 5, 7, 7)
    full = batch.clone().requires_grad_(True)
    (reference(full) * weights).sum().backward()
    part = batch[rank * 2:(rank + 1) * 2].clone().requires_grad_(True)
    out = synced(part)
    (out * weights[rank * 2:(rank + 1) * 2]).sum().backward()
    with torch.no_grad():
        expected = reference.eval()(batch)[rank * 2:(rank + 1) * 2]  # with the updated running statistics ...
        reference.train()
    summed = synced[0].weight.grad.clone()
    dist.all_reduce(summed)  # what DistributedDataParallel adds up (before dividing by the processes)
    diffs = {
        "output": float((synced.eval()(part).detach() - expected).abs().max()),  # ... equal to the synced ones
        "input_grad": float((part.grad - full.grad[rank * 2:(rank + 1) * 2]).abs().max()),
        "running_mean": float((synced[1].running_mean - reference[1].running_mean).abs().max()),
        "running_var": float((synced[1].running_var - reference[1].running_var).abs().max()),
        "weight_grad": float((summed - reference[0].weight.grad).abs().max()),
    }
    (report / f"syncbn-{rank}.json").write_text(json.dumps(diffs))


def main() -> int:
    report = Path(sys.argv[1])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    check_syncbn(report, rank, world)

    from fomm_lab.cli import main as cli
    from fomm_lab.train import trainer

    results = []
    run = trainer.train

    def keep(options, say=trainer.log.info):
        result = run(options, say)
        results.append(result)
        return result

    trainer.train = keep
    code = cli(["train", *sys.argv[2:]])
    if code == 0:
        nets = results[0].networks
        (report / f"weights-{rank}.txt").write_text(digest(nets.named().items()))
    return code


if __name__ == "__main__":
    sys.exit(main())
