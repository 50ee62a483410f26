"""`TorchRecommender`: a PyTorch model behind the recforge model API, trained by the
model-free engine of `recforge.nn`.

A `TorchRecommender` subclass defines its ``torch.nn.Module`` (`_build_module`) and, when the
defaults do not fit, its epoch examples (`_epoch_examples`) and per-batch loss (`_batch_loss`).
Everything else is shared:

* the epoch loop of `IterativeRecommender`: ``history_``, progress bar, early stopping on the
  validation NDCG@10 with the best epoch's weights restored;
* examples drawn each epoch in bulk from the shared `NegativeSampler` and batched in memory
  (`recforge.nn.batching`): pointwise (``loss="bce"``, ``negatives`` sampled items with label
  0 per positive) or pairwise (``loss="bpr"``, Rendle et al., UAI 2009);
* streamed epochs: with ``chunk_rows`` the positives are taken in a seeded random order and
  cut into chunks; each chunk's examples are drawn by the same functions
  (`recforge.data.streaming.pointwise_arrays`/`pairwise_arrays`), shuffled within the chunk
  and fed to `Trainer.run_batches`, so memory holds one chunk of examples plus the
  positives. A model whose ``trains_on`` lists `recforge.data.streaming.ParquetInteractions`
  fits on one by streaming the file's chunks (its row groups in a seeded random order) each
  epoch. Models whose epoch cannot be cut into chunks set ``streams_epochs = False``;
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
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recforge.data.interactions import Interactions, PairData
from recforge.data.sampling import NegativeSampler
from recforge.data.streaming import (
    Chunk,
    ParquetInteractions,
    pairwise_arrays,
    pointwise_arrays,
    shuffled_chunks,
)
from recforge.errors import InputError
from recforge.io import json_default
from recforge.models.base import ValidationScore
from recforge.models.iterative import IterativeRecommender, LoopState
from recforge.nn.batching import Batch, as_batch, chunked_batches
from recforge.nn.checkpoint import (
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
    strip_prefix,
    with_prefix,
)
from recforge.nn.device import (
    resolve_device,
    rng_devices,
    runtime,
    threads_limit,
)
from recforge.nn.trainer import (
    TRAINING_PARAMS,
    TRAINING_RULES,
    ScoringModule,
    Trainer,
    TrainingConfig,
    bpr_loss,
    pointwise_loss,
)

logger = logging.getLogger("recforge.nn")

_MODULE_PREFIX = "module."
#: parameters that may change between a checkpoint and its resumption
_RUN_PARAMS = frozenset({"epochs", "patience", "verbose", "log_file", "checkpoint_dir",
                         "checkpoint_every", "resume", "threads", "device", "compile"})


ChunkSource = Callable[[np.random.Generator], Iterable[Chunk]]


@dataclass
class _TrainingRun:
    """Per-fit objects, dropped when fitting ends. ``chunks`` (None: the epoch is built in
    memory) gives an epoch's chunks of positives, ``rows`` of them in all."""

    sampler: NegativeSampler
    rng: np.random.Generator
    trainer: Trainer
    chunks: ChunkSource | None = None
    rows: int = 0


class TorchRecommender(IterativeRecommender):
    """Base of the PyTorch models: see the module docstring. Subclasses implement
    `_build_module` (from ``n_users_``, ``n_items_`` and their parameters) and may override
    `_epoch_examples` and `_batch_loss`; their ``__init__`` takes their own parameters
    explicitly and passes ``**training`` (`TrainingConfig` fields) to this one."""

    #: defaults of `TrainingConfig` fields that differ for this model
    training_defaults: ClassVar[dict[str, Any]] = {}
    #: whether the epoch can be streamed in chunks of positives (``chunk_rows``); False for a
    #: subclass that overrides `_epoch_examples` unless it says otherwise
    streams_epochs: ClassVar[bool] = True
    param_rules = TRAINING_RULES
    module_: ScoringModule
    _training: _TrainingRun

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_epoch_examples" in vars(cls) and "streams_epochs" not in vars(cls):
            cls.streams_epochs = False  # its own epoch is not the chunks' examples

    def __init__(self, **training: Any):
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
        """This epoch's examples, built in memory: those of every positive at once."""
        return self._chunk_examples(sampler.users, sampler.items, sampler, rng)

    def _chunk_examples(self, users: np.ndarray, items: np.ndarray, sampler: NegativeSampler,
                        rng: np.random.Generator) -> Batch:
        """The examples of the positives ``(users[n], items[n])``: pointwise for
        ``loss="bce"``, pairwise for ``"bpr"``."""
        build = pointwise_arrays if self.loss == "bce" else pairwise_arrays
        return as_batch(build(users, items, sampler, rng, self.negatives))

    def _examples_per_positive(self) -> int:
        """How many examples `_chunk_examples` makes of one positive."""
        return self.negatives + (self.loss == "bce")

    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean log loss of labelled pairs, or mean BPR loss ``-ln sigma(x_ui - x_uj)``."""
        return pointwise_loss(module, batch) if "label" in batch else bpr_loss(module, batch)

    # ------------------------------------------------------------------ training
    @property
    def torch_device(self) -> torch.device:
        """The device the module lives on (resolved from ``device``)."""
        return resolve_device(self.device)

    def _fit(self, train: PairData, valid: Interactions | ValidationScore | None) -> None:
        config = self.training_config()
        if config.chunk_rows is not None and not self.streams_epochs:
            raise InputError(f"{type(self).__name__} builds its epoch in memory; "
                             f"chunk_rows must be None, not {config.chunk_rows}")
        device = self.torch_device
        with runtime(device, config.threads), torch.random.fork_rng(rng_devices(device)):
            torch.manual_seed(config.seed)
            super()._fit(train, valid)
        self.module_.eval()

    def _init_training(self, train: PairData) -> None:
        config = self.training_config()
        device = self.torch_device
        self.module_ = self._build_module().to(device)
        sampler = NegativeSampler(train.binary_csr, method=config.sampling)
        rng = np.random.default_rng(config.seed)
        chunks, rows = _chunk_source(train, sampler, config.chunk_rows)
        self._training = _TrainingRun(sampler, rng, Trainer(self.module_, config, device),
                                      chunks, rows)

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        run = self._training
        if run.chunks is None:
            examples = self._epoch_examples(run.sampler, run.rng)
            return run.trainer.run_epoch(epoch, examples, self._batch_loss)
        build = partial(self._chunk_examples, sampler=run.sampler, rng=run.rng)
        batches = chunked_batches(run.chunks(run.rng), build, self.train_batch_size,
                                  run.trainer.generator, run.trainer.device)
        return run.trainer.run_batches(epoch, batches, run.rows * self._examples_per_positive(),
                                       self._batch_loss)

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
        save_checkpoint(path, tensors, json.loads(json.dumps(state, default=json_default)))

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
        mine = json.loads(json.dumps(self.get_params(), default=json_default))
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


def _chunk_source(train: PairData, sampler: NegativeSampler,
                  chunk_rows: int | None) -> tuple[ChunkSource | None, int]:
    """How an epoch reads its positives, and how many rows it reads: a Parquet file's chunks
    (every row of the file), the positives shuffled and cut into ``chunk_rows`` chunks, or
    (None, 0) for the in-memory epoch."""
    if isinstance(train, ParquetInteractions):
        return train.chunks, len(train)
    if chunk_rows is None:
        return None, 0
    return partial(shuffled_chunks, sampler.users, sampler.items, chunk_rows), len(sampler.users)
