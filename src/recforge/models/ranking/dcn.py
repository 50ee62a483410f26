"""Deep & Cross networks over the concatenated field vectors ``x_0`` (`FieldEmbedding`):

* **DCN** (Wang et al., ADKDD 2017): ``cross_layers`` cross layers
  ``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l`` (`CrossNet`, feature crosses of degree ``l + 1``
  with ``O(D)`` weights per layer) beside an MLP; ``logit = w^T [x_L, h_deep] + b``.
* **DCN-V2** (Wang et al., WWW 2021): cross layers ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``
  with full ``D x D`` matrices (``rank`` None) or, with ``rank`` r, a mixture of ``experts``
  low-rank experts ``x_0 * (U g(C g(V^T x_l)) + b_l)`` gated per layer (`CrossNetV2`);
  ``structure`` "parallel" (cross network beside the MLP, their outputs concatenated, as in
  DCN) or "stacked" (the MLP over the cross network's output), then a linear output layer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from recforge.models.ranking.base import ClickModel
from recforge.models.ranking.inputs import InputLayout
from recforge.models.ranking.layers import MLP, CrossNet, CrossNetV2, FieldEmbedding
from recforge.models.registry import register
from recforge.params import MAX_WIDTH, Choice, Integer, Optional, Rule

#: most cross layers (each a D x D matrix in DCN-V2)
MAX_CROSS_LAYERS = 64
#: most low-rank experts per DCN-V2 cross layer
MAX_EXPERTS = 1024


class CrossDeepModule(nn.Module):
    """Field embedding -> cross network ``cross`` and MLP (parallel or stacked) -> linear."""

    def __init__(self, layout: InputLayout, n_tasks: int, dim: int, init_std: float,
                 pooling: str, layers: tuple[int, ...], dropout: float, batch_norm: bool,
                 cross: nn.Module, structure: str):
        super().__init__()
        width = layout.n_fields * dim
        self.embedding = FieldEmbedding(layout, dim, init_std, pooling)
        self.cross = cross
        self.mlp = MLP(width, layers, dropout, batch_norm)
        self.stacked = structure == "stacked"
        self.out = nn.Linear(self.mlp.out_dim + (0 if self.stacked else width), n_tasks)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0 = self.embedding(batch).flatten(1)
        crossed = self.cross(x0)
        hidden = self.mlp(crossed) if self.stacked else torch.cat([crossed, self.mlp(x0)], 1)
        return self.out(hidden)


class _CrossModel(ClickModel):
    """What DCN and DCN-V2 share: the module, built around `_cross_network`."""

    cross_layers: int

    def _cross_network(self, width: int) -> nn.Module:
        raise NotImplementedError

    def _structure(self) -> str:
        return "parallel"

    def _build_module(self) -> nn.Module:
        cross = self._cross_network(self.layout.n_fields * self.embedding_dim)
        return CrossDeepModule(self.layout, len(self.tasks_), self.embedding_dim,
                               self.init_std, self.history_pooling, self.layers, self.dropout,
                               self.batch_norm, cross, self._structure())


CROSS_LAYERS = Integer(1, MAX_CROSS_LAYERS)


@register("dcn")
class DCN(_CrossModel):
    """DCN (module docstring): ``cross_layers`` cross layers beside an MLP of ``layers``.

    Paper: Wang et al., "Deep & Cross Network for ad click predictions", ADKDD 2017.
    Hyperparameters (defaults): ``cross_layers=3``, ``embedding_dim=16``, ``init_std=0.0001``,
        ``layers=(256,128)``, ``dropout=0.0``, ``batch_norm=False``, ``fields=None``,
        ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`).
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    param_rules: ClassVar[dict[str, Rule]] = {"cross_layers": CROSS_LAYERS}

    def __init__(self, cross_layers: int = 3, **common: Any):
        self.cross_layers = cross_layers
        super().__init__(**common)

    def _cross_network(self, width: int) -> nn.Module:
        return CrossNet(width, self.cross_layers)


@register("dcn-v2")
class DCNV2(_CrossModel):
    """DCN-V2 (module docstring): ``cross_layers`` cross layers, full rank (``rank`` None) or
    a mixture of ``experts`` rank-``rank`` experts, ``structure`` parallel or stacked.

    Paper: Wang et al., "DCN V2", WWW 2021.
    Hyperparameters (defaults): ``cross_layers=3``, ``rank=None``, ``experts=4``,
        ``structure='parallel'``, ``embedding_dim=16``, ``init_std=0.0001``,
        ``layers=(256,128)``, ``dropout=0.0``, ``batch_norm=False``, ``fields=None``,
        ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`); ``experts=4`` as in the paper.
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "cross_layers": CROSS_LAYERS, "rank": Optional(Integer(1, MAX_WIDTH)),
        "experts": Integer(1, MAX_EXPERTS), "structure": Choice("parallel", "stacked"),
    }

    def __init__(self, cross_layers: int = 3, rank: int | None = None, experts: int = 4,
                 structure: str = "parallel", **common: Any):
        self.cross_layers = cross_layers
        self.rank = rank
        self.experts = experts
        self.structure = structure
        super().__init__(**common)

    def _cross_network(self, width: int) -> nn.Module:
        return CrossNetV2(width, self.cross_layers, self.rank, self.experts)

    def _structure(self) -> str:
        return self.structure
