"""Data-parallel training on PyTorch's own engine: ``torch.distributed`` started by
``torchrun`` and ``DistributedDataParallel`` (DDP; Li et al., "PyTorch Distributed:
Experiences on Accelerating Data Parallel Training", VLDB 2020).

How a fit runs on ``N`` processes (ranks):

* `init_from_env` joins the process group described by torchrun's environment (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): the ``gloo`` backend on
  the CPU, ``nccl`` on CUDA GPUs (one GPU per process, ``cuda:LOCAL_RANK``). Outside torchrun
  (no ``WORLD_SIZE``, or 1) nothing is started and training is the single-process one.
* Every rank builds the same model (same seed) and draws the same epoch (same negatives,
  same shuffle: the generators are seeded alike), so nothing about the data has to be sent.
  `Trainer` (``recforge.nn.trainer``) wraps the step's forward pass in DDP and gives rank
  ``r`` its shard of every mini-batch (`Shard.take`: rows ``r, r + N, r + 2N, ...``, padded
  by repeating rows so every rank holds the same count, as ``DistributedSampler`` does).
  DDP averages the ranks' gradients, so each optimiser step is the step of one process on
  the whole mini-batch (up to floating-point summation order): the same number of steps at
  the same global batch size, hence the same quality; each rank does ``1/N`` of the forward
  and backward work. Weights stay identical on every rank (DDP broadcasts rank 0's at the
  start, the averaged gradients are the same everywhere).
* Rank 0 alone writes checkpoints (`recforge.nn.checkpoint.save_checkpoint`, followed by a
  barrier), logs and the saved model (`rank_params`, ``recforge train``). Nothing in a
  checkpoint depends on the number of processes, so a fit resumes with any ``N``.

In-batch-negative losses (the two-tower's sampled softmax) see the rank's shard of the batch
as their negatives: with ``N`` ranks each softmax is over ``batch / N`` candidates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from recforge.errors import InputError

#: the torchrun variables that say a process is one rank of a group
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Shard:
    """This process's place in the group: ``rank`` of ``world`` processes, ``local_rank``
    on its machine."""

    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes)."""
        return self.rank == 0

    def take(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This rank's rows of a mini-batch: ``rank, rank + world, ...``, wrapping around to
        the first rows so that every rank gets ``ceil(n / world)`` of them."""
        n = len(next(iter(batch.values())))
        per_rank = math.ceil(n / self.world)
        device = next(iter(batch.values())).device
        rows = (torch.arange(per_rank, device=device) * self.world + self.rank) % n
        return {key: value[rows] for key, value in batch.items()}

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks (every rank gets the sums)."""
        tensor = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()


def env_shard() -> Shard | None:
    """The `Shard` torchrun's environment describes, or None outside a group of two or
    more processes."""
    if "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world, local = (int(os.environ.get(name, "0")) for name in ENV_VARS)
    except ValueError:
        raise InputError(f"torchrun environment: {', '.join(ENV_VARS)} must be integers "
                         f"(got {[os.environ.get(n) for n in ENV_VARS]})") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"torchrun environment: RANK={rank} is not in 0..WORLD_SIZE-1 "
                         f"(WORLD_SIZE={world})")
    return Shard(rank, world, local) if world > 1 else None


def current() -> Shard | None:
    """The group this process trains in (None: single-process training)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return Shard(dist.get_rank(), dist.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def backend_for(device: str) -> str:
    """``nccl`` for a CUDA device (``auto`` with a visible GPU), else ``gloo``."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


def init_from_env(device: str = "auto") -> Shard | None:
    """Join the process group of torchrun's environment (module docstring) for training on
    ``device`` (a model's ``device`` parameter); None (nothing started) outside torchrun."""
    shard = env_shard()
    if shard is None:
        return None
    if not dist.is_initialized():
        backend = backend_for(device)
        if backend == "nccl":
            torch.cuda.set_device(shard.local_rank)
        dist.init_process_group(backend)
    return current()


def shutdown() -> None:
    """Leave the process group (after a barrier, so no rank exits while another waits)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing outside a group)."""
    if current() is not None:
        dist.barrier()


def is_main() -> bool:
    """Whether this process writes: rank 0, or the only process."""
    shard = current()
    return shard is None or shard.is_main


def rank_params(params: dict[str, Any], shard: Shard | None) -> dict[str, Any]:
    """Model parameters for this rank: on a CUDA group each rank's own GPU
    (``cuda:LOCAL_RANK``); off rank 0, no progress output and no log file."""
    if shard is None:
        return params
    out = dict(params)
    if backend_for(str(out.get("device", "auto"))) == "nccl" and dist.is_initialized():
        out["device"] = f"cuda:{shard.local_rank}"
    if not shard.is_main:
        out["verbose"] = False
        out["log_file"] = None
    return out


LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


class StepForward(nn.Module):
    """One training step's forward pass as a module, ``loss_fn(network, batch)``, so that
    DDP sees exactly one forward call per step (a pairwise loss calls the network twice).
    ``network`` is ``module`` or its ``torch.compile`` d form."""

    def __init__(self, module: nn.Module, network: nn.Module):
        super().__init__()
        self.module = module
        self.__dict__["network"] = network  # not a second registration of the same weights

    def forward(self, batch: dict[str, torch.Tensor], loss_fn: LossFn) -> torch.Tensor:
        return loss_fn(self.network, batch)


def data_parallel(module: nn.Module, network: nn.Module,
                  device: torch.device) -> nn.Module:
    """`StepForward` wrapped in ``DistributedDataParallel`` for ``device``."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return DistributedDataParallel(StepForward(module, network), device_ids=ids)
