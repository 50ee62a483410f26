"""Multi-task click models over the concatenated field vectors ``x`` (`FieldEmbedding`), one
output per task of `ClickModel` (``tasks``, weighted by ``task_weights``):

* **shared-bottom**: one MLP (``layers``) shared by every task, then per-task towers
  (``tower_layers``): ``y_k = h^k(f(x))``.
* **MMoE** (Ma et al., KDD 2018): ``experts`` expert MLPs and one softmax gate per task,
  ``y_k = h^k(sum_i g^k(x)_i f_i(x))`` with ``g^k(x) = softmax(W_gk x)``.
* **PLE** (Tang et al., RecSys 2020): ``levels`` extraction layers, each with
  ``shared_experts`` shared experts and ``task_experts`` experts per task; task ``k``'s gate
  mixes its own and the shared experts, ``g^k(x) = softmax(W_gk x)`` over
  ``[E_k, E_shared]``; between levels a shared gate mixes every expert into the next level's
  shared input, each task's mixture being that task's next input. The last level feeds the
  towers.

All three are one structure (`Extraction` layers, then `ParallelMLP` towers): shared-bottom
is a single level with one shared expert and no gate, MMoE a single level of shared experts.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from recforge.models.ranking.base import CLICK_RULES, ClickModel
from recforge.models.ranking.inputs import InputLayout
from recforge.models.ranking.layers import FieldEmbedding, ParallelMLP
from recforge.models.registry import register
from recforge.params import WIDTH, Integer, Rule
from recforge.params import Sequence as SequenceRule

#: most experts of one kind
MAX_EXPERTS = 1024
#: most PLE extraction levels
MAX_LEVELS = 16


class Extraction(nn.Module):
    """One extraction layer over ``T + 1`` inputs ``(B, T + 1, in_dim)`` (task ``k``'s input,
    then the shared one): ``task_experts`` experts per task read their task's input and
    ``shared_experts`` experts the shared input; gate ``k < T`` mixes task ``k``'s and the
    shared experts from task ``k``'s input, and (unless ``last``) gate ``T`` mixes every
    expert from the shared input. Output ``(B, T + 1, H)`` (``(B, T, H)`` when ``last``)."""

    def __init__(self, in_dim: int, n_tasks: int, shared_experts: int, task_experts: int,
                 hidden: tuple[int, ...], dropout: float, batch_norm: bool, last: bool):
        super().__init__()
        group = torch.arange(n_tasks + 1).repeat_interleave(
            torch.tensor([task_experts] * n_tasks + [shared_experts]))
        self.register_buffer("group", group, persistent=False)  # input row of each expert
        gates = n_tasks + (not last)
        allowed = (group == torch.arange(gates).unsqueeze(1)) | (group == n_tasks)
        allowed[n_tasks:] = True  # the shared gate (between levels) mixes every expert
        self.register_buffer("allowed", allowed, persistent=False)  # (gates, experts)
        self.experts = ParallelMLP(in_dim, len(group), hidden, dropout, batch_norm)
        self.out_dim = self.experts.out_dim
        self.gate = ParallelMLP(in_dim, gates, (), out=len(group)) if len(group) > 1 else None

    def gate_weights(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, G, E)`` each gate's softmax weights (zero where the gate may not look)."""
        gates = len(self.allowed)
        if self.gate is None:
            return inputs.new_ones(len(inputs), gates, 1)
        logits = self.gate(inputs[:, :gates]).masked_fill(~self.allowed, float("-inf"))
        return torch.softmax(logits, dim=-1)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed outputs ``(B, G, H)`` and the gate weights ``(B, G, E)``."""
        experts = self.experts(inputs[:, self.group])
        weights = self.gate_weights(inputs)
        return torch.einsum("bge,beh->bgh", weights, experts), weights


class MultiTaskModule(nn.Module):
    """Field embedding -> ``levels`` `Extraction` layers -> one tower per task."""

    def __init__(self, layout: InputLayout, n_tasks: int, dim: int, init_std: float,
                 pooling: str, layers: tuple[int, ...], dropout: float, batch_norm: bool,
                 tower_layers: tuple[int, ...], shared_experts: int, task_experts: int,
                 levels: int):
        super().__init__()
        self.n_tasks = n_tasks
        self.embedding = FieldEmbedding(layout, dim, init_std, pooling)
        width = layout.n_fields * dim
        self.levels = nn.ModuleList()
        for level in range(levels):
            self.levels.append(Extraction(width, n_tasks, shared_experts, task_experts,
                                          layers, dropout, batch_norm, level == levels - 1))
            width = self.levels[-1].out_dim
        self.towers = ParallelMLP(width, n_tasks, tower_layers, dropout, batch_norm, out=1)

    def extract(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                               list[torch.Tensor]]:
        """Each task's tower input ``(B, T, H)`` and every level's gate weights."""
        x = self.embedding(batch).flatten(1)
        hidden = x.unsqueeze(1).expand(-1, self.n_tasks + 1, -1)
        gates = []
        for level in self.levels:
            hidden, weights = level(hidden)
            gates.append(weights)
        return hidden, gates

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.towers(self.extract(batch)[0]).squeeze(-1)


class _MultiTaskModel(ClickModel):
    """What the three share: the module, from `_experts` (shared, per task, levels)."""

    param_rules: ClassVar[dict[str, Rule]] = {
        "layers": SequenceRule(WIDTH, min_len=1, max_len=64),
        "tower_layers": CLICK_RULES["layers"],
    }
    tower_layers: tuple[int, ...]

    def _experts(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def _build_module(self) -> nn.Module:
        return MultiTaskModule(self.layout, len(self.tasks_), self.embedding_dim, self.init_std,
                               self.history_pooling, self.layers, self.dropout,
                               self.batch_norm, self.tower_layers, *self._experts())


EXPERTS = Integer(1, MAX_EXPERTS)


@register("shared-bottom")
class SharedBottom(_MultiTaskModel):
    """Shared-bottom multi-task model (module docstring): the bottom MLP's widths are
    ``layers``, each task's tower's ``tower_layers``.

    Paper: Caruana, "Multitask learning", Machine Learning 1997.
    Hyperparameters (defaults): ``tower_layers=(64,)``, ``embedding_dim=16``,
        ``init_std=0.0001``, ``layers=(256,128)``, ``dropout=0.0``, ``batch_norm=False``,
        ``fields=None``, ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`).
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    def __init__(self, tower_layers: tuple[int, ...] = (64,), **common: Any):
        self.tower_layers = tower_layers
        super().__init__(**common)

    def _experts(self) -> tuple[int, int, int]:
        return 1, 0, 1


@register("mmoe")
class MMoE(_MultiTaskModel):
    """MMoE (module docstring): ``experts`` expert MLPs of widths ``layers``, a softmax gate
    and a tower of ``tower_layers`` per task.

    Paper: Ma et al., "Modeling task relationships in multi-task learning with multi-gate
        mixture-of-experts", KDD 2018.
    Hyperparameters (defaults): ``experts=3``, ``tower_layers=(64,)``, ``embedding_dim=16``,
        ``init_std=0.0001``, ``layers=(256,128)``, ``dropout=0.0``, ``batch_norm=False``,
        ``fields=None``, ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`).
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    param_rules: ClassVar[dict[str, Rule]] = {"experts": EXPERTS}

    def __init__(self, experts: int = 3, tower_layers: tuple[int, ...] = (64,),
                 **common: Any):
        self.experts = experts
        self.tower_layers = tower_layers
        super().__init__(**common)

    def _experts(self) -> tuple[int, int, int]:
        return self.experts, 0, 1


@register("ple")
class PLE(_MultiTaskModel):
    """PLE (module docstring): ``levels`` extraction layers of ``shared_experts`` shared and
    ``task_experts`` per-task expert MLPs of widths ``layers``; towers of ``tower_layers``.

    Paper: Tang et al., "Progressive Layered Extraction", RecSys 2020.
    Hyperparameters (defaults): ``levels=2``, ``shared_experts=1``, ``task_experts=1``,
        ``tower_layers=(64,)``, ``embedding_dim=16``, ``init_std=0.0001``,
        ``layers=(256,128)``, ``dropout=0.0``, ``batch_norm=False``, ``fields=None``,
        ``tasks=None``, ``task_weights=None``, ``history_length=20``,
        ``history_pooling='mean'``, ``score_rows=65536``, ``codec_rows=1048576``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``patience=2``.
    Defaults: the click-model defaults (`ClickModel`).
    Consumes: interactions; trained on `Events` (labels, context) or on interactions as
        implicit feedback, reading the side tables.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "levels": Integer(1, MAX_LEVELS), "shared_experts": Integer(0, MAX_EXPERTS),
        "task_experts": EXPERTS,
    }

    def __init__(self, levels: int = 2, shared_experts: int = 1, task_experts: int = 1,
                 tower_layers: tuple[int, ...] = (64,), **common: Any):
        self.levels = levels
        self.shared_experts = shared_experts
        self.task_experts = task_experts
        self.tower_layers = tower_layers
        super().__init__(**common)

    def _experts(self) -> tuple[int, int, int]:
        return self.shared_experts, self.task_experts, self.levels
