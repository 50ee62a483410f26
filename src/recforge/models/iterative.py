"""The epoch loop shared by iteratively trained models.

Subclasses implement `_init_training` (allocate parameters) and `_run_epoch` (one pass,
returning the training loss). The loop records ``history_`` (one dict per epoch), shows a
progress bar when ``verbose``, and, given validation data, stops early when the validation
score has not improved for ``patience`` epochs and restores the best epoch's parameters.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from recforge.data.interactions import Interactions
from recforge.models.base import Recommender


class IterativeRecommender(Recommender):
    """Base for models trained epoch by epoch (SGD, ALS, CG, ...)."""

    #: hyperparameters every subclass exposes in ``__init__``
    epochs: int
    patience: int
    verbose: bool

    def _init_training(self, train: Interactions) -> None:
        raise NotImplementedError

    def _run_epoch(self, epoch: int) -> float:
        raise NotImplementedError

    def validation_score(self, train: Interactions, valid: Interactions) -> tuple[str, float]:
        """(name, value) of the early-stopping criterion, higher is better: -RMSE for rating
        models, NDCG@10 over the full catalogue for ranking models."""
        if self.predicts_ratings and valid.ratings is not None:
            err = self.predict(valid.users, valid.items) - valid.ratings
            return "neg_rmse", -float(np.sqrt(np.mean(err.astype(np.float64) ** 2)))
        from recforge.evaluation import Evaluator

        result = Evaluator(train, valid, metrics=["ndcg@10"]).evaluate(self)
        return "ndcg@10", float(result.metrics["NDCG@10"])

    def _snapshot(self) -> dict[str, Any]:
        return {k: v.copy() for k, v in self._state().items() if isinstance(v, np.ndarray)}

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self._init_training(train)
        history: list[dict[str, Any]] = []
        best_score, best_state, best_epoch, waited = -np.inf, None, 0, 0
        with _progress(self.verbose, type(self).__name__, self.epochs) as advance:
            for epoch in range(self.epochs):
                start = time.perf_counter()
                record: dict[str, Any] = {"epoch": epoch + 1, "loss": float(self._run_epoch(epoch))}
                if valid is not None:
                    name, score = self.validation_score(train, valid)
                    record[name] = score
                    if score > best_score:
                        best_score, best_state, best_epoch, waited = score, self._snapshot(), epoch + 1, 0
                    else:
                        waited += 1
                record["seconds"] = round(time.perf_counter() - start, 4)
                history.append(record)
                advance(record)
                if valid is not None and waited >= self.patience:
                    break
        if best_state is not None:
            self._restore(best_state)
        self.history_ = history
        self.best_epoch_ = best_epoch if valid is not None else len(history)


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
