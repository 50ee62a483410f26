"""What an experiment run produced, in memory: the input of `recforge.report`.

`recforge.experiments` fills these records (one `ModelRecord` per model and seed) and the
report reads them; neither side reaches into the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recforge.data.interactions import Interactions
from recforge.evaluation.evaluator import EvaluationResult
from recforge.models.base import Recommender


@dataclass
class ModelRecord:
    """One fitted model of the lineup, evaluated under every protocol of the experiment.

    ``results`` maps a protocol name (``"full"``, ``"sampled-99"``) to its evaluation.
    ``top_items[j]`` is the full-ranking top-``max_k`` list (dense item indices, seen items
    excluded) of user ``ExperimentRecord.test_users[j]``. ``history`` holds the per-epoch
    records of iterative models (``epoch``, ``loss``, validation metric), empty otherwise.
    """

    label: str
    model: Recommender
    seed: int
    fit_seconds: float
    results: dict[str, EvaluationResult]
    top_items: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ExperimentRecord:
    """A whole run: the data it used, the lineup's records and the resolved configuration.

    ``split`` is the split's JSON summary; ``test_users`` the dense indices of the users with
    test interactions (the rows of every ``ModelRecord.top_items``); ``config`` the resolved
    experiment configuration as plain JSON-ready values.
    """

    name: str
    dataset: str
    split: dict[str, Any]
    train: Interactions
    test: Interactions
    test_users: np.ndarray
    metrics: list[str]
    protocols: list[str]
    models: list[ModelRecord]
    config: dict[str, Any]
    max_k: int = 50

    def labels(self) -> list[str]:
        """Model labels in lineup order, each once."""
        return list(dict.fromkeys(record.label for record in self.models))
