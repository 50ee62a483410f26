"""`ClickModel`: the base of the ranking-stage models (logistic regression, FM, Wide & Deep,
DeepFM, xDeepFM, DCN, DCN-V2, multi-task), trained on `Events` by the shared neural trainer.

A subclass builds a ``torch.nn.Module`` from the `InputLayout` (`_build_module`) whose
``forward(batch)`` returns ``(B, T)`` logits, one per task; everything else is here:

* **inputs** (`recforge.models.ranking.inputs`): the ``fields`` (FeatureCodec declarations;
  default: ids, every side-table column and every context column) encoded once, user and item
  features looked up per row, and the user's ``history_length`` most recent items before each
  event (time order; ties in file order);
* **labels**: ``tasks`` names the `Events` label columns (default: the first label); a task
  whose training values are all 0/1 is binary (log loss), any other is a regression (squared
  error on the standardised label); ``task_weights`` weight the task losses. Trained on
  `Interactions` instead (implicit feedback, e.g. leave-last-out), each training pair is a
  positive and ``negatives`` unobserved items per positive (``sampling``, redrawn each epoch)
  are negatives with the positive's context and history;
* **streaming**: trained on a `recforge.data.ctr_formats.ParquetEvents`, each epoch reads the
  file chunk by chunk (row groups in a seeded random order), so the data need not fit in
  memory; the codec (vocabularies, means, bins) is fitted on the first ``codec_rows`` rows
  (values first seen later are unknown, index 0; hashed fields learn nothing and lose
  nothing), and the field declarations stored in the file are used unless ``fields`` is given;
* **training**: the `TrainingConfig` parameters (Adam, batch size, schedules, clipping,
  device, threads, seed, checkpoints) through `TorchRecommender`; early stopping on
  validation `Events` by the mean ROC-AUC of the binary tasks (``patience`` epochs), the best
  epoch's weights restored;
* **scoring** under the common contract: a query's user (or none), fresh history and context
  (``timestamp`` gives ``hour``/``weekday``) against candidates, or the whole catalogue, in
  blocks of ``score_rows`` rows; the first task's logit ranks. `predict_proba` gives the
  probabilities of events (their history continues the user's training history);
* **persistence**: weights, codec, side encodings and recent items as JSON and arrays (no
  pickle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.codec import Field
from recforge.data.ctr_formats import ParquetEvents
from recforge.data.events import Events, time_context
from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.data.sampling import NegativeSampler
from recforge.data.sequences import previous_items
from recforge.errors import InputError, ParameterError
from recforge.models.base import ValidationScore
from recforge.models.neural.torch_base import TorchRecommender
from recforge.models.ranking.inputs import FeatureInputs, InputLayout, default_fields
from recforge.nn.batching import Batch, shuffled_batches
from recforge.nn.device import threads_limit
from recforge.nn.trainer import TRAINING_RULES
from recforge.numerics import mann_whitney_auc
from recforge.params import (
    DROPOUT,
    INIT_STD,
    MAX_COUNT,
    WIDTH,
    Boolean,
    Choice,
    Integer,
    Optional,
    Real,
    Rule,
    Sequence,
    Text,
    parameter_error,
)

#: most recent items per user kept for the history input
MAX_HISTORY = 1000


class FieldRule(Rule):
    """One `Field` declaration as a table (``name``, ``kind`` and the kind's options)."""

    def describe(self) -> str:
        return "a field table (name, kind, options)"

    def check(self, name: str, value: Any) -> dict[str, Any]:
        if isinstance(value, Field):
            value = dataclasses.asdict(value)
        if not isinstance(value, Mapping):
            raise parameter_error(name, f"must be {self.describe()}, got {value!r}")
        known = {f.name for f in dataclasses.fields(Field)}
        unknown = [key for key in value if key not in known]
        if unknown:
            raise parameter_error(name, f"unknown field option {unknown[0]!r}; valid: "
                                        f"{', '.join(sorted(known))}")
        if "name" not in value or "kind" not in value:
            raise parameter_error(name, "a field needs a name and a kind")
        try:
            return dataclasses.asdict(Field(**value))
        except ParameterError as exc:
            raise parameter_error(name, str(exc)) from None


#: the parameters every click model shares (besides `TrainingConfig`'s)
CLICK_RULES: dict[str, Rule] = {
    **TRAINING_RULES,
    "loss": Choice("bce"),
    "embedding_dim": WIDTH, "init_std": INIT_STD,
    "layers": Sequence(WIDTH, min_len=0, max_len=64), "dropout": DROPOUT,
    "batch_norm": Boolean(),
    "fields": Optional(Sequence(FieldRule(), min_len=1)),
    "tasks": Optional(Sequence(Text(), min_len=1)),
    "task_weights": Optional(Sequence(Real(0), min_len=1)),
    "history_length": Integer(0, MAX_HISTORY),
    "history_pooling": Choice("mean", "attention"),
    "score_rows": Integer(1, MAX_COUNT), "codec_rows": Integer(1, MAX_COUNT),
}


class ClickModel(TorchRecommender):
    """Base of the click models (module docstring). Subclasses take their own parameters and
    pass the shared ones (`CLICK_RULES`) through ``**common``.

    Defaults: shared by every click model (embedding 16, MLP 256-128, Adam 1e-3, batches of
        1,024, up to 10 epochs, early stopping on validation AUC with patience 2); the DeepFM
        validation grid on the ML-100K CTR split (weight decay 0, 1e-6, 1e-5; learning rate
        3e-4; BENCHMARKS.md, issue 12) found none better, so they were kept.
    """

    trains_on: ClassVar[tuple[type, ...]] = (Events, Interactions, ParquetEvents)
    cold_start: ClassVar[str] = "features"
    param_rules: ClassVar[dict[str, Rule]] = CLICK_RULES
    training_defaults: ClassVar[dict[str, Any]] = {"epochs": 10, "patience": 2,
                                                    "negatives": 4}
    #: defaults of the shared click-model parameters (a subclass may change some)
    click_defaults: ClassVar[dict[str, Any]] = {
        "embedding_dim": 16, "init_std": 1e-4, "layers": (256, 128), "dropout": 0.0,
        "batch_norm": False, "fields": None, "tasks": None, "task_weights": None,
        "history_length": 20, "history_pooling": "mean", "score_rows": 1 << 16,
        "codec_rows": 1 << 20,
    }
    #: the shared click parameters this model uses (others are not its parameters)
    click_params: ClassVar[tuple[str, ...]] = tuple(click_defaults)
    inputs_: FeatureInputs

    def __init__(self, **common: Any):
        own = {k: common.pop(k) for k in list(common) if k in self.click_defaults}
        values = {k: v for k, v in self.click_defaults.items() if k in self.click_params}
        for name, value in {**values, **own}.items():
            setattr(self, name, value)
        super().__init__(**common)

    @classmethod
    def _param_names(cls) -> list[str]:
        own = super()._param_names()
        return own + [name for name in cls.click_params if name not in own]

    # ------------------------------------------------------------------ subclass hook
    def _build_module(self) -> nn.Module:
        """The network for ``self.layout_`` and ``len(self.tasks_)`` outputs."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def _fit(self, train: Events | Interactions,
             valid: Events | ValidationScore | None) -> None:
        if valid is not None and not (isinstance(valid, Events) or callable(valid)):
            raise InputError(f"{type(self).__name__} stops early on validation Events (or a "
                             f"ValidationScore), not {type(valid).__name__}")
        super()._fit(train, valid)

    def _init_training(self, train: Events | Interactions | ParquetEvents) -> None:
        implicit = isinstance(train, Interactions)
        stream = train if isinstance(train, ParquetEvents) else None
        events = (_implicit_events(train) if implicit else
                  train.head(self.codec_rows) if stream is not None else train)
        self.tasks_, self.task_kinds_ = self._tasks(events)
        self._label_scaling(events)
        fields = [Field(**spec) for spec in self.fields] if self.fields else \
            (stream.fields if stream is not None and stream.fields else default_fields(events))
        self.inputs_ = FeatureInputs(fields, self.history_length).fit(events)
        self.layout_ = self.inputs_.layout.to_dict()
        self.recent_ = _recent_items(events, self.history_length)
        super()._init_training(events)
        run = self._training
        run.stream = stream
        run.implicit = None
        if stream is None:
            history = self._event_history(events)
            run.examples = self._examples(events, history)
            run.implicit = (events, history) if implicit else None

    def _examples(self, events: Events, history: np.ndarray | None) -> Batch:
        """The encoded inputs and scaled labels of ``events`` as tensors."""
        rows = self.inputs_.events(events, history)
        labels = np.stack([self._scaled(events, t) for t in self.tasks_], axis=1)
        examples = {k: torch.from_numpy(v) for k, v in rows.items()}
        examples["label"] = torch.from_numpy(labels.astype(np.float32))
        return examples

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        """In memory (`_epoch_examples`), or streamed chunk by chunk from a `ParquetEvents`:
        its row groups in a seeded random order, each chunk encoded and shuffled on its own."""
        run = self._training
        if run.stream is None:
            return super()._run_epoch(epoch)
        trainer = run.trainer
        batches = (batch for chunk in run.stream.chunks(run.rng)
                   for batch in shuffled_batches(self._examples(chunk, self._event_history(chunk)),
                                                 self.train_batch_size, trainer.generator,
                                                 trainer.device))
        return trainer.run_batches(epoch, batches, len(run.stream), self._batch_loss)

    def _tasks(self, events: Events) -> tuple[list[str], list[str]]:
        names = list(self.tasks) if self.tasks else [next(iter(events.labels))]
        for name in names:
            events.label(name)  # UnknownNameError naming the labels there are
        if self.task_weights is not None and len(self.task_weights) != len(names):
            raise parameter_error("task_weights", f"has {len(self.task_weights)} weights for "
                                                  f"{len(names)} tasks")
        kinds = ["binary" if np.isin(events.labels[n], (0.0, 1.0)).all() else "regression"
                 for n in names]
        return names, kinds

    def _label_scaling(self, events: Events) -> None:
        """Mean and std of the regression labels (binary: 0 and 1)."""
        stats = [(0.0, 1.0) if kind == "binary" else
                 (float(events.labels[n].mean()), float(events.labels[n].std()) or 1.0)
                 for n, kind in zip(self.tasks_, self.task_kinds_)]
        self.label_mean_ = np.array([m for m, _ in stats], dtype=np.float32)
        self.label_std_ = np.array([s for _, s in stats], dtype=np.float32)

    def _scaled(self, events: Events, task: str) -> np.ndarray:
        k = self.tasks_.index(task)
        return (events.labels[task] - self.label_mean_[k]) / self.label_std_[k]

    def _event_history(self, events: Events) -> np.ndarray | None:
        """Each event's previous items: the events' own ``history`` (`Events.with_history`)
        when they carry one, else computed within ``events`` (None without timestamps)."""
        length = self.history_length
        if not length:
            return None
        if events.history is not None:
            return _last_columns(events.history, length)
        if events.timestamps is None:
            return None
        return previous_items(events, length, ties="file-order")

    def _epoch_examples(self, sampler: NegativeSampler, rng: np.random.Generator) -> Batch:
        run = self._training
        if run.implicit is None:
            return run.examples
        return self._implicit_examples(sampler, rng)

    def _implicit_examples(self, sampler: NegativeSampler, rng: np.random.Generator) -> Batch:
        """The positives and ``negatives`` freshly drawn items per positive (label 0), each
        negative with its positive's user, context and history."""
        events, history = self._training.implicit
        n = len(events)
        drawn = sampler.sample(events.users, self.negatives, rng).ravel()
        rows = np.repeat(np.arange(n), self.negatives)
        negative = events.subset(rows)
        negative.items = drawn.astype(np.int32)
        inputs = self.inputs_.events(negative, None if history is None else history[rows])
        examples = {k: torch.cat([v, torch.from_numpy(inputs[k])])
                    for k, v in self._training.examples.items() if k != "label"}
        labels = self._training.examples["label"]
        examples["label"] = torch.cat([labels, torch.zeros(len(rows), labels.shape[1])])
        return examples

    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Weighted sum over tasks of the mean log loss (binary) or squared error (regression)."""
        logits = module(batch).float()
        labels = batch["label"]
        weights = self.task_weights or (1.0,) * len(self.tasks_)
        total = logits.new_zeros(())
        for k, kind in enumerate(self.task_kinds_):
            loss = (F.binary_cross_entropy_with_logits(logits[:, k], labels[:, k])
                    if kind == "binary" else F.mse_loss(logits[:, k], labels[:, k]))
            total = total + weights[k] * loss
        return total

    def validation_score(self, valid: Events | ValidationScore) -> tuple[str, float]:
        """Mean ROC-AUC of the binary tasks on validation events (higher is better)."""
        if not isinstance(valid, Events):
            return super().validation_score(valid)
        binary = [k for k, kind in enumerate(self.task_kinds_) if kind == "binary"]
        if not binary:
            raise InputError("early stopping needs a binary task (ROC-AUC); every task here "
                             "is a regression")
        probs = self.predict_proba(valid).reshape(len(valid), -1)
        aucs = [mann_whitney_auc(valid.labels[self.tasks_[k]], probs[:, k]) for k in binary]
        return "auc", float(np.nanmean(aucs))

    # ------------------------------------------------------------------ prediction
    @property
    def layout(self) -> InputLayout:
        return InputLayout.from_dict(self.layout_)

    def predict_proba(self, events: Events) -> np.ndarray:
        """Per event: the probability of each binary task and the predicted value of each
        regression task, ``(n,)`` for one task else ``(n, T)``. Events index the training id
        space (subsets of the same data); each event's history is its ``history`` when the
        events carry one, else the user's training history followed by the user's earlier
        events in ``events``."""
        self.check_fitted()
        if events.n_users != self.n_users_ or events.n_items != self.n_items_:
            raise InputError(f"events over {events.n_users} users x {events.n_items} items, "
                             f"the model was trained on {self.n_users_} x {self.n_items_}")
        history = self._event_history(events)
        if self.layout.history_length and events.history is None:
            own = _empty(len(events), self.recent_) if history is None else history
            history = _continue(self.recent_[events.users], own)
        rows = self.inputs_.events(events, history)
        out = self._outputs(self._logits(rows))
        return out[:, 0] if out.shape[1] == 1 else out

    def _outputs(self, logits: np.ndarray) -> np.ndarray:
        binary = np.array([kind == "binary" for kind in self.task_kinds_])
        values = logits * self.label_std_ + self.label_mean_
        return np.where(binary, 1 / (1 + np.exp(-logits)), values).astype(np.float32)

    def _logits(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(n, T)`` logits in blocks of ``score_rows``."""
        self.module_.eval()
        device = self.torch_device
        n = len(rows["sparse"])
        out = np.empty((n, len(self.tasks_)), dtype=np.float32)
        with torch.no_grad(), threads_limit(self.threads):
            for lo in range(0, n, self.score_rows):
                block = {k: torch.from_numpy(np.ascontiguousarray(v[lo:lo + self.score_rows]))
                         .to(device) for k, v in rows.items()}
                out[lo:lo + self.score_rows] = self.module_(block).float().cpu().numpy()
        return out

    def training_history(self, users: Any) -> QueryBatch:
        """Queries of ``users`` whose history is their most recent training items, oldest
        first (unknown users: empty)."""
        self.check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        inside = (users >= 0) & (users < self.n_users_)
        recent = np.where(inside[:, None], self.recent_[np.where(inside, users, 0)], -1)
        keep = recent >= 0
        indptr = np.r_[0, np.cumsum(keep.sum(1))]
        return QueryBatch(users, indptr, recent[keep])

    def _score_block(self, queries: QueryBatch, candidates: np.ndarray | None) -> np.ndarray:
        """The first task's logit of every (query, candidate) row (every item without
        candidates); padding and items outside the catalogue score ``-inf``."""
        n = len(queries)
        cands = np.broadcast_to(np.arange(self.n_items_), (n, self.n_items_)) \
            if candidates is None else candidates
        m = cands.shape[1]
        valid = (cands >= 0) & (cands < self.n_items_)
        users = np.where((queries.users >= 0) & (queries.users < self.n_users_),
                         queries.users, -1)
        history = _query_history(queries, self.layout.history_length)
        context = {k: np.repeat(np.asarray(v), m) for k, v in _query_context(queries).items()}
        rows = self.inputs_.pairs(np.repeat(users, m), np.where(valid, cands, 0).ravel(),
                                  context, None if history is None else np.repeat(history, m, 0))
        scores = self._logits(rows)[:, 0].reshape(n, m)
        scores[~valid] = -np.inf
        return scores

    def item_vectors(self) -> np.ndarray | None:
        """None: a click model's scores do not come from item vectors alone."""
        return None

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, Any]:
        state = {k: v for k, v in super()._state().items() if k != "inputs_"}
        inputs = self.inputs_.state()
        state["inputs_"] = inputs["meta"]
        return state | {f"codes.{k}": v for k, v in inputs["arrays"].items()}

    def _restore(self, state: dict[str, Any]) -> None:
        codes = {k[len("codes."):]: v for k, v in state.items() if k.startswith("codes.")}
        rest = {k: v for k, v in state.items() if not k.startswith("codes.")}
        if "inputs_" in rest:  # a best-epoch snapshot carries weights and arrays only
            rest["inputs_"] = FeatureInputs.restore(rest["inputs_"], codes)
        super()._restore(rest)


# ---------------------------------------------------------------------- helpers
def _implicit_events(data: Interactions) -> Events:
    """Interactions as events with the label ``interaction`` = 1 and, with timestamps, the
    ``hour`` and ``weekday`` context."""
    context = None if data.timestamps is None else time_context(data.timestamps)
    return Events(data.users, data.items, user_map=data.user_map, item_map=data.item_map,
                  labels={"interaction": np.ones(len(data), np.float32)},
                  timestamps=data.timestamps, context=context,
                  user_features=data.user_features, item_features=data.item_features,
                  name=data.name)


def _recent_items(events: Events, length: int) -> np.ndarray:
    """``(n_users, length)`` each user's last training items, oldest first, -1 padded."""
    from recforge.data.sequences import last_window, user_time_order

    order = user_time_order(events, ties="file-order")
    return last_window(events.users[order], events.items[order].astype(np.int64),
                       events.n_users, max(length, 1), -1)[:, -length:] if length else \
        np.zeros((events.n_users, 0), dtype=np.int64)


def _last_columns(history: np.ndarray, length: int) -> np.ndarray:
    """The last ``length`` columns of a -1 padded history, padded on the left if narrower."""
    out = np.full((len(history), length), -1, dtype=np.int64)
    width = min(length, history.shape[1])
    if width:
        out[:, length - width:] = history[:, history.shape[1] - width:]
    return out


def _empty(n: int, like: np.ndarray) -> np.ndarray:
    return np.full((n, like.shape[1]), -1, dtype=np.int64)


def _continue(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Row-wise: the last ``L`` valid items of ``before`` followed by ``after`` (both
    left-padded with -1), left-padded with -1."""
    joined = np.concatenate([before, after], axis=1)
    order = np.argsort(joined >= 0, axis=1, kind="stable")
    return np.take_along_axis(joined, order, axis=1)[:, -before.shape[1]:]


def _query_history(queries: QueryBatch, length: int) -> np.ndarray | None:
    """``(n, length)`` each query's last ``length`` history items, -1 padded."""
    if not length:
        return None
    from recforge.data.sequences import windows

    ends = queries.indptr[1:]
    return windows(queries.items.astype(np.int64), ends, queries.indptr[:-1], length, -1)


def _query_context(queries: QueryBatch) -> dict[str, np.ndarray]:
    return {str(k): np.asarray(v) for k, v in queries.context.items()}

