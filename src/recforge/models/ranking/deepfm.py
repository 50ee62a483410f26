"""DeepFM (Guo et al., IJCAI 2017): a factorization machine and an MLP that share one field
embedding; the logit is the FM's (bias, first-order weights, pairwise term) plus the MLP's
output over the concatenated field vectors."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from recforge.models.ranking.base import ClickModel
from recforge.models.ranking.inputs import InputLayout
from recforge.models.ranking.layers import MLP, FieldEmbedding, fm_interaction
from recforge.models.ranking.linear import LinearPart
from recforge.models.registry import register


class DeepFMModule(nn.Module):
    def __init__(self, layout: InputLayout, n_tasks: int, dim: int, init_std: float,
                 pooling: str, layers: tuple[int, ...], dropout: float, batch_norm: bool):
        super().__init__()
        self.linear = LinearPart(layout, n_tasks, init_std)
        self.embedding = FieldEmbedding(layout, dim, init_std, pooling)
        self.mlp = MLP(layout.n_fields * dim, layers, dropout, batch_norm, out=n_tasks)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)
        return self.linear(batch) + fm_interaction(emb) + self.mlp(emb.flatten(1))


@register("deepfm")
class DeepFM(ClickModel):
    """DeepFM (module docstring): ``embedding_dim`` shared by the FM and the MLP, whose hidden
    widths are ``layers``.

    Paper: Guo et al., "DeepFM", IJCAI 2017.
    Hyperparameters (defaults): ``embedding_dim=16``, ``init_std=0.0001``,
        ``layers=(256,128)``, ``dropout=0.0``, ``batch_norm=False``, ``fields=None``,
        ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`).
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """


    def __init__(self, **common: Any):
        super().__init__(**common)

    def _build_module(self) -> nn.Module:
        return DeepFMModule(self.layout, len(self.tasks_), self.embedding_dim, self.init_std,
                            self.history_pooling, self.layers, self.dropout, self.batch_norm)
