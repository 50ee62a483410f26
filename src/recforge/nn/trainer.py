"""The neural training core: `TorchRecommender` (a PyTorch model behind the recforge model API)
and the `Trainer` that runs its mini-batch epochs.

A `TorchRecommender` subclass defines its ``torch.nn.Module`` (`_build_module`) and, when the
defaults do not fit, its epoch examples (`_epoch_examples`) and per-batch loss (`_batch_loss`).
Everything else is shared:

* the epoch loop of `IterativeRecommender`: ``history_``, progress bar, early stopping on the
  validation NDCG@10 with the best epoch's weights restored;
* examples drawn each epoch in bulk from the shared `NegativeSampler` and batched in memory
  (`recforge.nn.batching`): pointwise (``loss="bce"``, ``negatives`` sampled items with label
  0 per positive) or pairwise (``loss="bpr"``, Rendle et al., UAI 2009);
* Adam, AdamW or SGD; constant, step or cosine learning-rate schedules with linear warm-up
  (`recforge.nn.schedules`); gradient-norm clipping; weight decay;
* device selection, CUDA mixed precision and CPU threads (`recforge.nn.device`); optional
  ``torch.compile`` of the training forward pass;
* seeded determinism: weights are initialised from ``torch.manual_seed(seed)`` inside a
  forked random state (the caller's is untouched), batches are shuffled by a seeded
  ``torch.Generator`` and negatives drawn by a seeded numpy generator;
* one JSON line per epoch (``epoch``, ``loss``, ``samples``, ``samples_per_second``, the
  validation metric, ``seconds``) to the ``recforge.nn`` logger, to stderr when ``verbose``
  and appended to ``log_file`` when set;
* checkpoints every ``checkpoint_every`` epochs to ``checkpoint_dir`` (weights, optimiser,
  epoch loop, random states; `recforge.nn.checkpoint`), resumed with ``resume=True``;
* persistence through the generic `Recommender.save`: the module's ``state_dict`` becomes
  float32 arrays ``module.<name>`` in ``arrays.npz`` next to the JSON parameters, so loading
  never unpickles.

Training parameters (`TrainingConfig`) are ordinary flat model parameters of every subclass
(``GMF(factors=8, learning_rate=0.005)``); a subclass changes their defaults through
``training_defaults``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.sampling import NegativeSampler
from recforge.models.base import TrainingDivergedError
from recforge.models.iterative import IterativeRecommender, LoopState
from recforge.nn.batching import (
    Batch,
    example_count,
    pairwise_examples,
    pointwise_examples,
    shuffled_batches,
)
from recforge.nn.checkpoint import (
    has_checkpoint,
    join_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    split_optimizer_state,
    strip_prefix,
    with_prefix,
)
from recforge.nn.device import (
    resolve_device,
    resolve_precision,
    rng_devices,
    runtime,
    threads_limit,
)
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
    parameter_error,
)

logger = logging.getLogger("recforge.nn")

LossFn = Callable[[nn.Module, Batch], torch.Tensor]
OPTIMIZERS = ("adam", "adamw", "sgd")
LOSSES = ("bce", "bpr")
_MODULE_PREFIX = "module."
#: parameters that may change between a checkpoint and its resumption
_RUN_PARAMS = frozenset({"epochs", "patience", "verbose", "log_file", "checkpoint_dir",
                         "checkpoint_every", "resume", "threads", "device", "compile"})
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
    "resume": BOOLEAN,
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

    def __post_init__(self) -> None:
        check_all(TRAINING_RULES, dataclasses.asdict(self))


TRAINING_PARAMS = tuple(f.name for f in dataclasses.fields(TrainingConfig))


def make_optimizer(config: TrainingConfig, params: Any) -> torch.optim.Optimizer:
    """The configured optimiser, with fused updates (one kernel for all parameters; on the
    CPU PyTorch's ``foreach`` variant loops over the tensors, the fused one does not)."""
    common = {"lr": config.learning_rate, "weight_decay": config.weight_decay, "fused": True}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, **common)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, **common)
    return torch.optim.SGD(params, momentum=config.momentum, **common)


class Trainer:
    """Runs epochs of mini-batch training of one module: shuffling, mixed precision, the
    optimiser step with clipping, the learning-rate schedule; saves and restores all of it."""

    def __init__(self, module: nn.Module, config: TrainingConfig, device: torch.device):
        self.module = module
        self.config = config
        self.device = device
        self.amp = resolve_precision(config.precision, device)
        self.forward = torch.compile(module) if config.compile else module
        self.optimizer = make_optimizer(config, module.parameters())
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp.scale_loss)
        self.generator = torch.Generator().manual_seed(config.seed)

    def run_epoch(self, epoch: int, examples: Batch, loss_fn: LossFn) -> dict[str, float]:
        """One pass over ``examples`` in a fresh random order; the mean loss and throughput."""
        n = example_count(examples)
        self.module.train()
        start = time.perf_counter()
        # numba's OpenMP layer resets the shared OpenMP thread count (PyTorch's too) when it
        # runs a parallel kernel (sampling, top-k in validation): set it again every epoch
        with threads_limit(self.config.threads):
            mean_loss = self._train_batches(epoch, examples, loss_fn).item() / n
        seconds = time.perf_counter() - start
        if not math.isfinite(mean_loss):
            raise TrainingDivergedError(f"training diverged in epoch {epoch + 1} (loss "
                                     f"{mean_loss}); lower the learning rate or clip gradients")
        return {"loss": mean_loss, "samples": n, "samples_per_second": round(n / seconds, 1)}

    def _train_batches(self, epoch: int, examples: Batch, loss_fn: LossFn) -> torch.Tensor:
        """One optimiser step per mini-batch; the summed loss (on the device, synced once)."""
        steps = math.ceil(example_count(examples) / self.config.train_batch_size)
        total = torch.zeros((), device=self.device)
        batches = shuffled_batches(examples, self.config.train_batch_size, self.generator,
                                   self.device)
        for step, batch in enumerate(batches):
            self._set_lr(epoch + step / steps)
            with self.amp.autocast(self.device):
                loss = loss_fn(self.forward, batch)
            self._step(loss)
            total += loss.detach().float() * example_count(batch)
        return total

    def _set_lr(self, progress: float) -> None:
        c = self.config
        lr = c.learning_rate * lr_factor(c.schedule, progress, c.epochs, c.warmup_epochs,
                                         c.lr_step_epochs, c.lr_gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.module.parameters(), self.config.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON-able state) of the optimiser, loss scaler and random generators."""
        optim_tensors, optim_rest = split_optimizer_state(self.optimizer.state_dict())
        tensors = with_prefix("optim/", optim_tensors)
        tensors["rng/shuffle"] = self.generator.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        for index in rng_devices(self.device):
            tensors[f"rng/cuda{index}"] = torch.cuda.get_rng_state(index)
        return tensors, {"optimizer": optim_rest, "scaler": self.scaler.state_dict()}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what `state` saved."""
        self.optimizer.load_state_dict(
            join_optimizer_state(strip_prefix("optim/", tensors), state["optimizer"]))
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


@dataclass
class _TrainingRun:
    """Per-fit objects, dropped when fitting ends."""

    sampler: NegativeSampler
    rng: np.random.Generator
    trainer: Trainer


class TorchRecommender(IterativeRecommender):
    """Base of the PyTorch models: see the module docstring. Subclasses implement
    `_build_module` (from ``n_users_``, ``n_items_`` and their parameters) and may override
    `_epoch_examples` and `_batch_loss`; their ``__init__`` takes their own parameters
    explicitly and passes ``**training`` (`TrainingConfig` fields) to this one."""

    #: defaults of `TrainingConfig` fields that differ for this model
    training_defaults: ClassVar[dict[str, Any]] = {}
    param_rules = TRAINING_RULES
    module_: ScoringModule
    _training: _TrainingRun

    def __init__(self, **training: Any):
        unknown = [name for name in training if name not in TRAINING_PARAMS]
        if unknown:
            raise parameter_error(unknown[0], f"{type(self).__name__} got unknown parameter(s) "
                                              f"{', '.join(unknown)}")
        values = {**dataclasses.asdict(TrainingConfig()), **self.training_defaults, **training}
        for name in TRAINING_PARAMS:
            setattr(self, name, values[name])

    @classmethod
    def _param_names(cls) -> list[str]:
        own = super()._param_names()
        return own + [name for name in TRAINING_PARAMS if name not in own]

    def training_config(self) -> TrainingConfig:
        """The current training parameters, validated."""
        return TrainingConfig(**{name: getattr(self, name) for name in TRAINING_PARAMS})

    # ------------------------------------------------------------------ subclass hooks
    def _build_module(self) -> ScoringModule:
        raise NotImplementedError

    def _epoch_examples(self, sampler: NegativeSampler, rng: np.random.Generator) -> Batch:
        """This epoch's examples: pointwise for ``loss="bce"``, pairwise for ``"bpr"``."""
        if self.loss == "bce":
            return pointwise_examples(sampler, rng, self.negatives)
        return pairwise_examples(sampler, rng, self.negatives)

    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean log loss of labelled pairs, or mean BPR loss ``-ln sigma(x_ui - x_uj)``."""
        if "label" in batch:
            logits = module(batch["user"], batch["item"])
            return F.binary_cross_entropy_with_logits(logits.float(), batch["label"])
        diff = module(batch["user"], batch["positive"]) - module(batch["user"], batch["negative"])
        return -F.logsigmoid(diff.float()).mean()

    # ------------------------------------------------------------------ training
    @property
    def torch_device(self) -> torch.device:
        """The device the module lives on (resolved from ``device``)."""
        return resolve_device(self.device)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        config = self.training_config()
        device = self.torch_device
        with runtime(device, config.threads), torch.random.fork_rng(rng_devices(device)):
            torch.manual_seed(config.seed)
            try:
                super()._fit(train, valid)
            finally:
                self.__dict__.pop("_training", None)
        self.module_.eval()

    def _init_training(self, train: Interactions) -> None:
        config = self.training_config()
        device = self.torch_device
        self.module_ = self._build_module().to(device)
        sampler = NegativeSampler(train.binary_csr, method=config.sampling)
        rng = np.random.default_rng(config.seed)
        self._training = _TrainingRun(sampler, rng, Trainer(self.module_, config, device))

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        run = self._training
        examples = self._epoch_examples(run.sampler, run.rng)
        return run.trainer.run_epoch(epoch, examples, self._batch_loss)

    # ------------------------------------------------------------------ epoch loop hooks
    def _loop_start(self) -> LoopState:
        path = self._checkpoint_path()
        if self.resume and path is not None and has_checkpoint(path):
            return self._load_checkpoint(path)
        return LoopState()

    def _after_epoch(self, loop: LoopState) -> None:
        self._log_epoch(loop.history[-1])
        path = self._checkpoint_path()
        if path is not None and loop.epochs_done % self.checkpoint_every == 0:
            self._save_checkpoint(path, loop)

    def _log_epoch(self, record: dict[str, Any]) -> None:
        line = json.dumps({"model": self.name, **record})
        logger.info(line)
        if self.verbose:
            print(line, file=sys.stderr, flush=True)
        if self.log_file:
            with open(self.log_file, "a", encoding="utf-8") as out:
                out.write(line + "\n")

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / "checkpoint"

    def _data_signature(self) -> list[int]:
        return [int(self.n_users_), int(self.n_items_), int(self.seen_.nnz)]

    def _save_checkpoint(self, path: Path, loop: LoopState) -> None:
        tensors, trainer_state = self._training.trainer.state()
        tensors |= with_prefix("module/", self.module_.state_dict())
        best = {k: torch.from_numpy(np.ascontiguousarray(v))
                for k, v in (loop.best_state or {}).items()}
        tensors |= with_prefix("best/", best)
        state = {
            "model": self.name,
            "params": self.get_params(),
            "data": self._data_signature(),
            "loop": {"history": loop.history, "best_score": loop.best_score,
                     "best_epoch": loop.best_epoch, "waited": loop.waited,
                     "has_best": loop.best_state is not None},
            "trainer": trainer_state,
            "numpy_rng": self._training.rng.bit_generator.state,
        }
        save_checkpoint(path, tensors, json.loads(json.dumps(state, default=_json_value)))

    def _load_checkpoint(self, path: Path) -> LoopState:
        tensors, state = load_checkpoint(path)
        self._check_resumable(path, state)
        self.module_.load_state_dict(strip_prefix("module/", tensors))
        self._training.trainer.load_state(tensors, state["trainer"])
        self._training.rng.bit_generator.state = state["numpy_rng"]
        loop = state["loop"]
        best = {k: v.numpy() for k, v in strip_prefix("best/", tensors).items()}
        return LoopState(history=loop["history"], best_score=float(loop["best_score"]),
                         best_epoch=loop["best_epoch"], waited=loop["waited"],
                         best_state=best if loop["has_best"] else None)

    def _check_resumable(self, path: Path, state: dict[str, Any]) -> None:
        if state["model"] != self.name or state["data"] != self._data_signature():
            raise ValueError(f"checkpoint {path} was written by {state['model']!r} on data "
                             f"{state['data']} (users, items, positives), not by "
                             f"{self.name!r} on {self._data_signature()}")
        mine = json.loads(json.dumps(self.get_params(), default=_json_value))
        changed = sorted(k for k in mine if k not in _RUN_PARAMS
                         and state["params"].get(k) != mine[k])
        if changed:
            raise ValueError(f"checkpoint {path} was trained with other values of "
                             f"{', '.join(changed)}; resume with the same parameters")

    # ------------------------------------------------------------------ inference
    def _score(self, users: np.ndarray) -> np.ndarray:
        self.module_.eval()
        device = self.torch_device
        with torch.no_grad(), threads_limit(self.threads):
            logits = self.module_.score_all(torch.from_numpy(users).to(device))
        return logits.float().cpu().numpy()

    def item_vectors(self) -> np.ndarray | None:
        vectors = self.module_.item_vectors()
        return None if vectors is None else vectors.detach().float().cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, Any]:
        state = {k: v for k, v in super()._state().items() if k != "module_"}
        weights = {k: v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        return state | with_prefix(_MODULE_PREFIX, weights)

    def _restore(self, state: dict[str, Any]) -> None:
        weights = {k: torch.from_numpy(np.asarray(v))
                   for k, v in strip_prefix(_MODULE_PREFIX, state).items()}
        super()._restore({k: v for k, v in state.items() if not k.startswith(_MODULE_PREFIX)})
        if not weights:
            return
        if getattr(self, "module_", None) is None:
            with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten
                self.module_ = self._build_module().to(self.torch_device)
        self.module_.load_state_dict(weights)
        self.module_.eval()


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if torch.is_tensor(value):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
