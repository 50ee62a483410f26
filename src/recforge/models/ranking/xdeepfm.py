"""xDeepFM (Lian et al., KDD 2018): a linear part, the Compressed Interaction Network and an
MLP over one shared field embedding,

    logit = w_linear^T a + w_cin^T p^+ + w_dnn^T x^k_dnn + b,

where ``p^+`` are the CIN's sum-pooled feature maps (`recforge.models.ranking.layers.CIN`:
``X^k_h = sum_{i,j} W^{k,h}_{ij} (X^{k-1}_i * X^0_j)``, vector-wise interactions of bounded
degree, layer widths ``cin_layers``, half of each hidden layer's maps passed on) and
``x^k_dnn`` the MLP's last hidden layer over the concatenated field vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from recforge.models.ranking.base import ClickModel
from recforge.models.ranking.inputs import InputLayout
from recforge.models.ranking.layers import CIN, MLP, FieldEmbedding
from recforge.models.ranking.linear import LinearPart
from recforge.models.registry import register
from recforge.params import MAX_WIDTH, Integer, Rule
from recforge.params import Sequence as SequenceRule


class XDeepFMModule(nn.Module):
    def __init__(self, layout: InputLayout, n_tasks: int, dim: int, init_std: float,
                 pooling: str, layers: tuple[int, ...], dropout: float, batch_norm: bool,
                 cin_layers: Sequence[int]):
        super().__init__()
        self.linear = LinearPart(layout, n_tasks, init_std)
        self.embedding = FieldEmbedding(layout, dim, init_std, pooling)
        self.cin = CIN(layout.n_fields, cin_layers, split_half=True)
        self.cin_out = nn.Linear(self.cin.out_dim, n_tasks, bias=False)
        self.mlp = MLP(layout.n_fields * dim, layers, dropout, batch_norm, out=n_tasks)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = self.embedding(batch)
        return self.linear(batch) + self.cin_out(self.cin(emb)) + self.mlp(emb.flatten(1))


@register("xdeepfm")
class XDeepFM(ClickModel):
    """xDeepFM (module docstring): ``cin_layers`` the feature maps of each CIN layer (at least
    2, half of them passed on), ``layers`` the MLP's hidden widths.

    Paper: Lian et al., "xDeepFM", KDD 2018.
    Hyperparameters (defaults): ``cin_layers=(128,128)``, ``embedding_dim=16``,
        ``init_std=0.0001``, ``layers=(256,128)``, ``dropout=0.0``, ``batch_norm=False``,
        ``fields=None``, ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`); ``cin_layers`` as in the paper's code.
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "cin_layers": SequenceRule(Integer(2, MAX_WIDTH), min_len=1, max_len=16),
    }

    def __init__(self, cin_layers: Sequence[int] = (128, 128), **common: Any):
        self.cin_layers = cin_layers
        super().__init__(**common)

    def _build_module(self) -> nn.Module:
        return XDeepFMModule(self.layout, len(self.tasks_), self.embedding_dim, self.init_std,
                             self.history_pooling, self.layers, self.dropout, self.batch_norm,
                             self.cin_layers)
