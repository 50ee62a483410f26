"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018): causal
self-attention over a user's last items with learned position embeddings; the output at each
position scores the next item by its inner product with the (shared) item embeddings.

Training: each epoch, every training window (`recforge.models.sequential.base.causal_windows`)
with its next item at every position; ``loss="ce"`` (default) the full-catalogue softmax,
``"bce"`` the paper's binary log loss with ``negatives`` sampled items per position (the
paper's one), or ``"sampled-softmax"`` with a logQ correction (`sequence_loss`). Scoring: the last
position's output for a query's history (`SequentialRecommender`), so a history never seen in
training is scored without refitting.

Defaults were chosen on a validation split carved from ML-100K's training data only
(leave-last-out of the leave-last-out training part, file-order ties;
``benchmarks/bench_sequential.py --tune``), never on its test split: see BENCHMARKS.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recforge.data.sampling import NegativeSampler
from recforge.data.splits import DEFAULT_TIES
from recforge.models.registry import register
from recforge.models.sequential.base import (
    SequentialRecommender,
    causal_windows,
    position_negatives,
)
from recforge.models.sequential.transformer import MAX_BLOCKS, TransformerModule, check_heads
from recforge.nn.batching import Batch, as_batch
from recforge.params import Integer, Rule


@register("sasrec")
class SASRec(SequentialRecommender):
    """Causal self-attention sequential recommender (module docstring).

    ``history_length``: items read per history (the window); ``embedding_dim``; ``blocks``:
    transformer layers; ``heads``: attention heads (dividing ``embedding_dim``);
    ``dropout``; ``loss``: ``bce``, ``ce`` or ``sampled-softmax``; ``negatives``: per position
    (``bce``) or per batch (``sampled-softmax``); ``ties``: the tie rule of equal timestamps
    (`recforge.models.sequential.base`). Training parameters: `recforge.nn.TrainingConfig`.

    Paper: Kang & McAuley, "Self-attentive sequential recommendation", ICDM 2018.
    Hyperparameters (defaults): ``history_length=50``, ``embedding_dim=64``, ``blocks=2``,
        ``heads=1``, ``dropout=0.2``, ``ties='file-order'``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``loss='ce'``, ``epochs=30``,
        ``train_batch_size=128``, ``learning_rate=0.003``, ``negatives=1``.
    Defaults: on a validation split carved from ML-100K's training data (module docstring).
    Consumes: interactions, sequences.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 30, "train_batch_size": 128, "learning_rate": 0.003, "negatives": 1}
    param_rules: ClassVar[dict[str, Rule]] = {
        "blocks": Integer(1, MAX_BLOCKS), "heads": Integer(1, MAX_BLOCKS)}

    def __init__(self, history_length: int = 50, embedding_dim: int = 64, blocks: int = 2,
                 heads: int = 1, dropout: float = 0.2, loss: str = "ce",
                 ties: str = DEFAULT_TIES, **training: Any):
        self.blocks = blocks
        self.heads = heads
        super().__init__(history_length=history_length, embedding_dim=embedding_dim,
                         dropout=dropout, loss=loss, ties=ties, **training)

    def _check_own_params(self) -> None:
        super()._check_own_params()
        check_heads(self)

    def _build_module(self) -> TransformerModule:
        check_heads(self)
        return TransformerModule(self.n_items_, self.embedding_dim, self.history_length,
                                 self.blocks, self.heads, self.dropout, causal=True,
                                 feedforward=self.embedding_dim, activation="relu")

    def _init_training(self, train: Any) -> None:
        super()._init_training(train)
        self._examples = causal_windows(self._sequences, self.history_length)

    def _epoch_examples(self, sampler: NegativeSampler, rng: np.random.Generator) -> Batch:
        """Every training window with its targets (and this epoch's negatives for ``bce``)."""
        users, inputs, targets = self._examples
        examples = {"input": inputs, "target": targets}
        if self.loss == "bce":
            examples["negative"] = position_negatives(sampler, users, targets,
                                                      self.negatives, rng)
        return as_batch(examples)

    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        net: TransformerModule = getattr(module, "_orig_mod", module)
        return self._loss(net, net.encode(batch["input"]), batch)
