"""The neural training engine, which knows no model: `TrainingConfig` (the training parameters
every neural model shares, each a flat model parameter), `Trainer` (runs the mini-batch epochs
of one ``torch.nn.Module``: shuffling, mixed precision, the optimiser step with clipping, the
learning-rate schedule, its saved state) and `ScoringModule` (what a module offers for scoring).
Under ``torchrun`` the step runs data-parallel (`recforge.nn.distributed`): DDP over each
rank's shard of every mini-batch. Embeddings built with ``sparse=True`` get sparse gradients
and their own optimiser (`make_optimizers`).
The PyTorch model behind the recforge model API, `TorchRecommender`, is
`recforge.models.neural.torch_base`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recforge.errors import InputError, TrainingDivergedError
from recforge.nn.batching import (
    Batch,
    example_count,
    shuffled_batches,
)
from recforge.nn.checkpoint import (
    join_optimizer_state,
    split_optimizer_state,
    strip_prefix,
    with_prefix,
)
from recforge.nn.device import (
    resolve_precision,
    rng_devices,
    threads_limit,
)
from recforge.nn.distributed import current as current_shard
from recforge.nn.distributed import data_parallel
from recforge.nn.schedules import SCHEDULES, lr_factor
from recforge.params import (
    BOOLEAN,
    EPOCHS,
    LEARNING_RATE,
    MAX_COUNT,
    MAX_EPOCHS,
    PATIENCE,
    PENALTY,
    SEED,
    THREADS,
    Choice,
    Integer,
    Optional,
    Real,
    Rule,
    Text,
    check_all,
)

LossFn = Callable[[nn.Module, Batch], torch.Tensor]
OPTIMIZERS = ("adam", "adamw", "sgd")
LOSSES = ("bce", "bpr")
#: most sampled negatives per positive (the epoch's examples are held in memory)
MAX_NEGATIVES = 1000

#: the rule of every `TrainingConfig` field (the model parameter of the same name)
TRAINING_RULES: dict[str, Rule] = {
    "epochs": EPOCHS, "train_batch_size": Integer(1, MAX_COUNT),
    "optimizer": Choice(*OPTIMIZERS), "learning_rate": LEARNING_RATE, "weight_decay": PENALTY,
    "momentum": Real(0, 1, high_open=True), "schedule": Choice(*SCHEDULES),
    "warmup_epochs": Real(0, MAX_EPOCHS), "lr_step_epochs": Integer(1, MAX_EPOCHS),
    "lr_gamma": Real(0, 1, low_open=True), "clip_norm": Optional(Real(0, low_open=True)),
    "loss": Choice(*LOSSES), "negatives": Integer(1, MAX_NEGATIVES),
    "sampling": Choice("uniform", "popularity"), "patience": PATIENCE,
    "device": Text(r"auto|cpu|cuda(:\d+)?", "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "precision": Choice("auto", "fp32", "bf16", "fp16"), "threads": THREADS,
    "compile": BOOLEAN, "seed": SEED, "verbose": BOOLEAN, "log_file": Optional(Text()),
    "checkpoint_dir": Optional(Text()), "checkpoint_every": Integer(1, MAX_EPOCHS),
    "resume": BOOLEAN, "chunk_rows": Optional(Integer(1, MAX_COUNT)),
}


@dataclass(frozen=True)
class TrainingConfig:
    """Training parameters shared by every `TorchRecommender` (each is a model parameter).

    ``epochs``: passes over the training data (fewer with early stopping).
    ``train_batch_size``: examples per optimiser step (``batch_size``, inherited from
    `Recommender`, is the number of users scored at once by ``recommend``).
    ``optimizer``: ``adam``, ``adamw`` (decoupled weight decay) or ``sgd`` (with ``momentum``).
    ``learning_rate``, ``weight_decay`` (L2 through the optimiser), ``momentum`` (SGD only).
    ``schedule``: ``constant``, ``step`` (times ``lr_gamma`` every ``lr_step_epochs``) or
    ``cosine``; ``warmup_epochs`` of linear warm-up first (fractions allowed).
    ``clip_norm``: clip the global gradient norm to this value (None: no clipping).
    ``loss``: ``bce`` (pointwise log loss) or ``bpr`` (pairwise); ``negatives`` sampled items
    per positive, drawn ``uniform``-ly or by ``popularity`` (``sampling``).
    ``patience``: epochs without validation improvement before stopping (given validation data).
    ``device``: ``auto``, ``cpu``, ``cuda``; ``precision``: ``auto``, ``fp32``, ``bf16``,
    ``fp16`` (mixed precision on CUDA only); ``threads``: CPU threads (0: PyTorch's setting);
    ``compile``: ``torch.compile`` the training forward pass.
    ``seed``: every random choice. ``verbose``: progress bar and JSON lines on stderr;
    ``log_file``: append the JSON lines there. ``checkpoint_dir``/``checkpoint_every``: save
    a checkpoint every so many epochs; ``resume``: continue from it when it exists.
    ``chunk_rows``: None builds each epoch's examples in memory at once; a number streams the
    epoch: the positives in a seeded random order, cut into chunks of that many, each chunk's
    examples drawn and shuffled on their own, so memory holds one chunk of examples plus the
    positives (models trained on a `recforge.data.streaming.ParquetInteractions` stream the
    file's chunks whatever this is).
    """

    epochs: int = 20
    train_batch_size: int = 1024
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    clip_norm: float | None = None
    loss: str = "bce"
    negatives: int = 4
    sampling: str = "uniform"
    patience: int = 5
    device: str = "auto"
    precision: str = "auto"
    threads: int = 1
    compile: bool = False
    seed: int = 0
    verbose: bool = False
    log_file: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    resume: bool = False
    chunk_rows: int | None = None

    def __post_init__(self) -> None:
        check_all(TRAINING_RULES, dataclasses.asdict(self))


TRAINING_PARAMS = tuple(f.name for f in dataclasses.fields(TrainingConfig))


def pointwise_loss(module: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean log loss of the logits of labelled pairs (``user``, ``item``, ``label``)."""
    logits = module(batch["user"], batch["item"])
    return F.binary_cross_entropy_with_logits(logits.float(), batch["label"])


def bpr_loss(module: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean BPR loss ``-ln sigma(x_ui - x_uj)`` of triples (``user``, ``positive``,
    ``negative``) (Rendle et al., UAI 2009)."""
    diff = module(batch["user"], batch["positive"]) - module(batch["user"], batch["negative"])
    return -F.logsigmoid(diff.float()).mean()


def make_optimizer(config: TrainingConfig, params: Any) -> torch.optim.Optimizer:
    """The configured optimiser, with fused updates (one kernel for all parameters; on the
    CPU PyTorch's ``foreach`` variant loops over the tensors, the fused one does not)."""
    common = {"lr": config.learning_rate, "weight_decay": config.weight_decay, "fused": True}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, **common)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, **common)
    return torch.optim.SGD(params, momentum=config.momentum, **common)


def sparse_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The weights of the embeddings built with ``sparse=True`` (their gradients are sparse:
    only the rows a batch looks up)."""
    return [m.weight for m in module.modules()
            if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse]


def make_optimizers(config: TrainingConfig, module: nn.Module
                    ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
    """(the configured optimiser of the dense parameters, the optimiser of the sparse
    embeddings or None): ``SparseAdam`` for ``adam``/``adamw`` (lazy Adam: the moments of the
    rows a batch touches), plain ``SGD`` for ``sgd``. Sparse updates take no weight decay and
    no momentum (a decay or momentum would touch every row each step), so those are refused."""
    sparse = sparse_parameters(module)
    if not sparse:
        return make_optimizer(config, module.parameters()), None
    for name in ("weight_decay", "momentum"):
        if getattr(config, name):
            raise InputError(f"{name} must be 0 with sparse embeddings (a sparse update "
                             f"touches only the rows of the batch), got {getattr(config, name)}")
    taken = {id(p) for p in sparse}
    dense = [p for p in module.parameters() if id(p) not in taken]
    sparse_opt: torch.optim.Optimizer = (
        torch.optim.SGD(sparse, lr=config.learning_rate) if config.optimizer == "sgd"
        else torch.optim.SparseAdam(sparse, lr=config.learning_rate))
    return make_optimizer(config, dense), sparse_opt


class Trainer:
    """Runs epochs of mini-batch training of one module: shuffling, mixed precision, the
    optimiser step with clipping, the learning-rate schedule; saves and restores all of it."""

    def __init__(self, module: nn.Module, config: TrainingConfig, device: torch.device):
        self.module = module
        self.config = config
        self.device = device
        self.amp = resolve_precision(config.precision, device)
        self.forward = torch.compile(module) if config.compile else module
        self.optimizer, self.sparse_optimizer = make_optimizers(config, module)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp.scale_loss)
        self.generator = torch.Generator().manual_seed(config.seed)
        #: this rank's place in a torchrun group and the DDP step (None: one process)
        self.shard = current_shard()
        self.parallel = None if self.shard is None else \
            data_parallel(module, self.forward, device)

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimisers stepped together: the dense one, then the sparse one if any."""
        return [self.optimizer] + ([self.sparse_optimizer] if self.sparse_optimizer else [])

    def run_epoch(self, epoch: int, examples: Batch, loss_fn: LossFn) -> dict[str, float]:
        """One pass over in-memory ``examples`` in a fresh random order; the mean loss and
        throughput."""
        batches = shuffled_batches(examples, self.config.train_batch_size, self.generator,
                                   self.device)
        return self.run_batches(epoch, batches, example_count(examples), loss_fn)

    def run_batches(self, epoch: int, batches: Iterable[Batch], n_examples: int,
                    loss_fn: LossFn) -> dict[str, float]:
        """One pass over ``batches`` (e.g. streamed by `recforge.data.streaming` through
        `recforge.nn.batching.tensor_batches`) of ``n_examples`` examples in all, which paces
        the learning-rate schedule; the mean loss and throughput."""
        self.module.train()
        start = time.perf_counter()
        # numba's OpenMP layer resets the shared OpenMP thread count (PyTorch's too) when it
        # runs a parallel kernel (sampling, top-k in validation): set it again every epoch
        with threads_limit(self.config.threads):
            total, n, local = self._train_batches(epoch, batches, n_examples, loss_fn)
            mean_loss = total.item() / max(local, 1)
            if self.shard is not None:  # the mean over every rank's examples
                loss_sum, local_sum = self.shard.sum(total.item(), local)
                mean_loss = loss_sum / max(local_sum, 1)
        seconds = time.perf_counter() - start
        if not math.isfinite(mean_loss):
            raise TrainingDivergedError(f"training diverged in epoch {epoch + 1} (loss "
                                     f"{mean_loss}); lower the learning rate or clip gradients")
        return {"loss": mean_loss, "samples": n, "samples_per_second": round(n / seconds, 1)}

    def _train_batches(self, epoch: int, batches: Iterable[Batch], n_examples: int,
                       loss_fn: LossFn) -> tuple[torch.Tensor, int, int]:
        """One optimiser step per mini-batch (on this rank's shard of it under torchrun);
        the summed loss of the examples this process ran (on the device, synced once), the
        number of examples in the batches and the number this process ran."""
        steps = math.ceil(n_examples / self.config.train_batch_size)
        total = torch.zeros((), device=self.device)
        n = local = 0
        for step, batch in enumerate(batches):
            self._set_lr(epoch + step / steps)
            n += example_count(batch)
            if self.shard is not None:
                batch = self.shard.take(batch)
            with self.amp.autocast(self.device):
                loss = (loss_fn(self.forward, batch) if self.parallel is None
                        else self.parallel(batch, loss_fn))
            self._step(loss)
            size = example_count(batch)
            total += loss.detach().float() * size
            local += size
        return total, n, local

    def _set_lr(self, progress: float) -> None:
        c = self.config
        lr = c.learning_rate * lr_factor(c.schedule, progress, c.epochs, c.warmup_epochs,
                                         c.lr_step_epochs, c.lr_gamma)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def _step(self, loss: torch.Tensor) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.clip_norm is not None:
            for optimizer in self.optimizers:
                self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(self.module.parameters(), self.config.clip_norm)
        for optimizer in self.optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON-able state) of the optimiser, loss scaler and random generators."""
        optim_tensors, optim_rest = split_optimizer_state(self.optimizer.state_dict())
        tensors = with_prefix("optim/", optim_tensors)
        rest = {"optimizer": optim_rest, "scaler": self.scaler.state_dict()}
        if self.sparse_optimizer is not None:
            sparse_tensors, rest["sparse_optimizer"] = split_optimizer_state(
                self.sparse_optimizer.state_dict())
            tensors |= with_prefix("sparse_optim/", sparse_tensors)
        tensors["rng/shuffle"] = self.generator.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        for index in rng_devices(self.device):
            tensors[f"rng/cuda{index}"] = torch.cuda.get_rng_state(index)
        return tensors, rest

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what `state` saved."""
        self.optimizer.load_state_dict(
            join_optimizer_state(strip_prefix("optim/", tensors), state["optimizer"]))
        if self.sparse_optimizer is not None:
            self.sparse_optimizer.load_state_dict(join_optimizer_state(
                strip_prefix("sparse_optim/", tensors), state["sparse_optimizer"]))
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(tensors["rng/shuffle"])
        torch.set_rng_state(tensors["rng/torch"])
        for index in rng_devices(self.device):
            torch.cuda.set_rng_state(tensors[f"rng/cuda{index}"], index)


class ScoringModule(nn.Module):
    """What the default `TorchRecommender` hooks expect of a module: ``forward(users, items)``
    gives the logits of (user, item) pairs, `score_all` every item's logits for some users."""

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` logits (override with something faster than pairs)."""
        raise NotImplementedError

    def item_vectors(self) -> torch.Tensor | None:
        """Item embeddings for `Recommender.similar_items` (None when there are none)."""
        return None


