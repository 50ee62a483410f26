"""The epoch loop shared by iteratively trained models.

Subclasses implement `_init_training` (allocate parameters) and `_run_epoch` (one pass,
returning the training loss, or a dict with ``loss`` and other per-epoch figures). The loop
records ``history_`` (one dict per epoch), shows a progress bar when ``verbose``, and, given
validation data, stops early when the validation score has not improved for ``patience``
epochs and restores the best epoch's parameters. Two optional hooks let a subclass resume an
interrupted loop: `_loop_start` returns the `LoopState` to continue from (a fresh one by
default) and `_after_epoch` sees the state after every epoch (e.g. to checkpoint it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from recforge.data.interactions import Interactions
from recforge.errors import InputError
from recforge.models.base import Recommender, ValidationScore
from recforge.params import BOOLEAN, EPOCHS, PATIENCE, Rule


@dataclass
class LoopState:
    """Progress of the epoch loop: the history and the early-stopping bookkeeping."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -np.inf
    best_epoch: int = 0
    best_state: dict[str, np.ndarray] | None = None
    waited: int = 0

    @property
    def epochs_done(self) -> int:
        return len(self.history)


class IterativeRecommender(Recommender):
    """Base for models trained epoch by epoch (SGD, ALS, CG, ...)."""

    #: hyperparameters every subclass exposes in ``__init__``
    epochs: int
    patience: int
    verbose: bool
    param_rules: ClassVar[dict[str, Rule]] = {
        "epochs": EPOCHS, "patience": PATIENCE, "verbose": BOOLEAN,
    }
    #: attributes holding training-only state (buffers, optimisers, samplers), dropped when
    #: fitting ends, also on an error
    training_state: ClassVar[tuple[str, ...]] = ("_training",)

    def _init_training(self, train: Interactions) -> None:
        raise NotImplementedError

    def _run_epoch(self, epoch: int) -> float | dict[str, float]:
        raise NotImplementedError

    def _loop_start(self) -> LoopState:
        """Where the epoch loop starts (called after `_init_training`): a fresh state."""
        return LoopState()

    def _after_epoch(self, loop: LoopState) -> None:
        """Called after each epoch's record is added to ``loop.history``."""

    def validation_score(self, valid: Interactions | ValidationScore) -> tuple[str, float]:
        """(name, value) of the early-stopping criterion, higher is better: what ``valid``
        returns when it is a `ValidationScore` (for ranking models, NDCG@10 over the full
        catalogue from `recforge.evaluation.early_stopping`), else -RMSE on ``valid``'s
        ratings. Models never import the evaluation layer: the caller passes its score."""
        if callable(valid):
            return valid(self)
        if not (self.predicts_ratings and valid.ratings is not None):
            raise InputError(f"{type(self).__name__} stops early on a ranking metric: pass "
                             "valid=recforge.evaluation.early_stopping(train, valid) to fit")
        err = self.predict(valid.users, valid.items) - valid.ratings
        return "neg_rmse", -float(np.sqrt(np.mean(err.astype(np.float64) ** 2)))

    def _snapshot(self) -> dict[str, Any]:
        return {k: v.copy() for k, v in self._state().items() if isinstance(v, np.ndarray)}

    def _fit(self, train: Interactions, valid: Interactions | ValidationScore | None) -> None:
        try:
            self._epoch_loop(train, valid)
        finally:
            for name in self.training_state:
                self.__dict__.pop(name, None)

    def _epoch_loop(self, train: Interactions,
                    valid: Interactions | ValidationScore | None) -> None:
        self._init_training(train)
        loop = self._loop_start()
        stopped = valid is not None and loop.waited >= self.patience
        remaining = self.epochs - loop.epochs_done
        with _progress(self.verbose, type(self).__name__, remaining) as advance:
            for epoch in range(loop.epochs_done, self.epochs if not stopped else 0):
                start = time.perf_counter()
                result = self._run_epoch(epoch)
                record: dict[str, Any] = {"epoch": epoch + 1}
                record |= result if isinstance(result, dict) else {"loss": float(result)}
                if valid is not None:
                    name, score = self.validation_score(valid)
                    record[name] = score
                    if score > loop.best_score:
                        loop.best_score, loop.best_state = score, self._snapshot()
                        loop.best_epoch, loop.waited = epoch + 1, 0
                    else:
                        loop.waited += 1
                record["seconds"] = round(time.perf_counter() - start, 4)
                loop.history.append(record)
                advance(record)
                self._after_epoch(loop)
                if valid is not None and loop.waited >= self.patience:
                    break
        if loop.best_state is not None:
            self._restore(loop.best_state)
        self.history_ = loop.history
        self.best_epoch_ = loop.best_epoch if valid is not None else len(loop.history)


class _NullProgress:
    def __enter__(self):
        return lambda record: None

    def __exit__(self, *exc: object) -> None:
        return None


class _RichProgress:
    def __init__(self, label: str, total: int):
        from rich.progress import Progress

        self.progress = Progress(*Progress.get_default_columns(), "{task.fields[info]}")
        self.task = self.progress.add_task(label, total=total, info="")

    def __enter__(self):
        self.progress.__enter__()

        def advance(record: dict[str, Any]) -> None:
            info = " ".join(f"{k}={v:.4f}" for k, v in record.items()
                            if k not in ("epoch", "seconds") and isinstance(v, float))
            self.progress.update(self.task, advance=1, info=info)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


def _progress(verbose: bool, label: str, total: int) -> Any:
    return _RichProgress(label, total) if verbose else _NullProgress()
