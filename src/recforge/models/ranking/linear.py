"""The baselines every click-model paper reports: logistic regression over one-hot (and
multi-hot, numeric) features, and the factorization machine (Rendle, ICDM 2010), whose
pairwise term ``sum_{i<j} <v_i, v_j>`` models every two-field interaction with one vector per
feature value."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from recforge.models.ranking.base import ClickModel
from recforge.models.ranking.inputs import InputLayout
from recforge.models.ranking.layers import FieldEmbedding, fm_interaction
from recforge.models.registry import register

Batch = dict[str, torch.Tensor]


class LinearPart(nn.Module):
    """First-order weights of every field, one per task, plus a bias: ``(B, T)``."""

    def __init__(self, layout: InputLayout, n_tasks: int, init_std: float):
        super().__init__()
        self.weights = FieldEmbedding(layout, n_tasks, init_std)
        self.bias = nn.Parameter(torch.zeros(n_tasks))

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.weights(batch).sum(1) + self.bias


class _FMModule(nn.Module):
    def __init__(self, layout: InputLayout, n_tasks: int, dim: int, init_std: float,
                 pooling: str, pairwise: bool):
        super().__init__()
        self.linear = LinearPart(layout, n_tasks, init_std)
        self.embedding = FieldEmbedding(layout, dim, init_std, pooling) if pairwise else None

    def forward(self, batch: Batch) -> torch.Tensor:
        out = self.linear(batch)
        if self.embedding is not None:
            out = out + fm_interaction(self.embedding(batch))
        return out


@register("logistic-regression")
class LogisticRegression(ClickModel):
    """Logistic regression: a bias plus one weight per feature value (module docstring).

    Paper: none (the baseline of every click-model paper).
    Hyperparameters (defaults): ``init_std=0.0001``, ``fields=None``, ``tasks=None``,
        ``task_weights=None``, ``history_length=20``, ``score_rows=65536``,
        ``codec_rows=1048576``; training (`recforge.nn.TrainingConfig`, the rest at its
        defaults): ``epochs=10``, ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`).
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    click_params: ClassVar[tuple[str, ...]] = ("init_std", "fields", "tasks", "task_weights",
                                               "history_length", "score_rows", "codec_rows")

    def __init__(self, **common: Any):
        super().__init__(**common)

    def _build_module(self) -> nn.Module:
        return _FMModule(self.layout, len(self.tasks_), 1, self.init_std, "mean", False)


@register("fm")
class FactorizationMachine(ClickModel):
    """Factorization machine of order 2 (module docstring); ``embedding_dim`` is the width
    of the factors.

    Paper: Rendle, "Factorization machines", ICDM 2010.
    Hyperparameters (defaults): ``embedding_dim=16``, ``init_std=0.0001``, ``fields=None``,
        ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`).
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    click_params: ClassVar[tuple[str, ...]] = ("embedding_dim", "init_std", "fields", "tasks",
                                               "task_weights", "history_length",
                                               "history_pooling", "score_rows", "codec_rows")

    def __init__(self, **common: Any):
        super().__init__(**common)

    def _build_module(self) -> nn.Module:
        return _FMModule(self.layout, len(self.tasks_), self.embedding_dim, self.init_std,
                         self.history_pooling, True)
