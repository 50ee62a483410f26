"""BERT4Rec (Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer", CIKM 2019): a bidirectional transformer over a user's
items trained with the cloze task, read at inference with a mask token appended.

Training: each epoch, every window of ``history_length`` items cut from the training
sequences (`recforge.models.sequential.base.item_windows`) has each item replaced by the mask
token with probability ``mask_probability`` (at least one per window: else the last item),
drawn afresh from the seeded generator; the loss (``loss``: ``ce`` over the whole catalogue
by default, or ``bce``/``sampled-softmax``, `sequence_loss`) scores the masked items from
the outputs at their positions (output bias per item). Scoring: a query's last
``history_length - 1`` items followed by the mask token; the mask position's output is the
query vector. Published replications (Petrov & Macdonald, RecSys 2022) needed far longer
training than the paper; the number of epochs comes from validation curves (BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recforge.data.query import QueryBatch
from recforge.data.sampling import NegativeSampler
from recforge.data.splits import DEFAULT_TIES
from recforge.models.registry import register
from recforge.models.sequential.base import (
    NO_TARGET,
    SequentialRecommender,
    item_windows,
    position_negatives,
    query_windows,
)
from recforge.models.sequential.transformer import MAX_BLOCKS, TransformerModule, check_heads
from recforge.nn.batching import Batch, as_batch
from recforge.params import FRACTION, Integer, Rule


@register("bert4rec")
class BERT4Rec(SequentialRecommender):
    """Bidirectional transformer trained with the cloze task (module docstring).

    ``history_length``: items per window (a query reads one fewer, then the mask);
    ``embedding_dim``; ``blocks``; ``heads`` (dividing ``embedding_dim``); ``dropout``;
    ``mask_probability``: share of items masked in training; ``loss``: ``ce``, ``bce`` or
    ``sampled-softmax``; ``negatives``; ``ties``: the tie rule of equal timestamps.
    Training parameters: `recforge.nn.TrainingConfig`.

    Paper: Sun et al., "BERT4Rec", CIKM 2019.
    Hyperparameters (defaults): ``history_length=50``, ``embedding_dim=64``, ``blocks=2``,
        ``heads=2``, ``dropout=0.1``, ``mask_probability=0.2``, ``ties='file-order'``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``loss='ce'``, ``epochs=60``,
        ``train_batch_size=128``, ``learning_rate=0.003``, ``negatives=1``.
    Defaults: the epochs from validation curves on validation splits carved from training data
        only, never a test split (module docstring, BENCHMARKS.md).
    Consumes: interactions, sequences.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 60, "train_batch_size": 128, "learning_rate": 0.003, "negatives": 1}
    param_rules: ClassVar[dict[str, Rule]] = {
        "blocks": Integer(1, MAX_BLOCKS), "heads": Integer(1, MAX_BLOCKS),
        "mask_probability": FRACTION}

    def __init__(self, history_length: int = 50, embedding_dim: int = 64, blocks: int = 2,
                 heads: int = 2, dropout: float = 0.1, mask_probability: float = 0.2,
                 loss: str = "ce", ties: str = DEFAULT_TIES, **training: Any):
        self.blocks = blocks
        self.heads = heads
        self.mask_probability = mask_probability
        super().__init__(history_length=history_length, embedding_dim=embedding_dim,
                         dropout=dropout, loss=loss, ties=ties, **training)

    def _check_own_params(self) -> None:
        super()._check_own_params()
        check_heads(self)

    @property
    def mask_token(self) -> int:
        return self.n_items_ + 1

    def _build_module(self) -> TransformerModule:
        check_heads(self)
        return TransformerModule(self.n_items_, self.embedding_dim, self.history_length,
                                 self.blocks, self.heads, self.dropout, causal=False,
                                 feedforward=4 * self.embedding_dim, activation="gelu",
                                 extra_tokens=2, bias=True)

    def _init_training(self, train: Any) -> None:
        super()._init_training(train)
        self._examples = item_windows(self._sequences, self.history_length, self.n_items_)

    def _epoch_examples(self, sampler: NegativeSampler, rng: np.random.Generator) -> Batch:
        """Every window with this epoch's masked positions as targets."""
        users, items = self._examples
        real = items != self.n_items_
        masked = real & (rng.random(items.shape) < self.mask_probability)
        masked[~masked.any(1), -1] = True  # the last item of a window without a mask
        examples = {"input": np.where(masked, self.mask_token, items),
                    "target": np.where(masked, items, NO_TARGET)}
        if self.loss == "bce":
            examples["negative"] = position_negatives(sampler, users, examples["target"],
                                                      self.negatives, rng)
        return as_batch(examples)

    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        net: TransformerModule = getattr(module, "_orig_mod", module)
        return self._loss(net, net.encode(batch["input"]), batch)

    def _windows(self, queries: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        """The last ``history_length - 1`` items, then the mask token."""
        windows, has_items = query_windows(queries, self.history_length - 1, self.n_items_,
                                           self.ties, self.seed)
        mask = np.full((len(windows), 1), self.mask_token, dtype=np.int64)
        return np.concatenate([windows, mask], axis=1), has_items
