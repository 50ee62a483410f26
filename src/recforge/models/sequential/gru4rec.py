"""GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016; Hidasi & Karatzoglou, "Recurrent Neural Networks with Top-k Gains for
Session-based Recommendations", CIKM 2018): a GRU reads a session's (or a user's) items one
at a time and its hidden state scores the next item against the item embeddings (input and
output embeddings shared).

Training uses session-parallel mini-batches (`session_parallel`): ``train_batch_size``
lanes each run through sequences one after another (a sequence taking the first lane that
is free, in a seeded random order each epoch); one step feeds every lane's current item
and predicts its next item, the hidden state is carried from step to step (truncated back-
propagation of one step) and reset to zero where a new sequence starts. Losses (``loss``):
``ce``, softmax cross-entropy over the whole catalogue; ``bpr-max`` and ``top1-max``
(CIKM 2018) over the other lanes' targets plus ``negatives`` additional items drawn per step
(uniformly, or by training popularity with ``sampling="popularity"``), with the score
regularisation ``reg`` of BPR-max.

Defaults (128-wide, dropout 0.3, Adam at 0.001, 64 lanes, 6 epochs, ``ce``) were chosen on
a validation split carved from ML-100K's training data only (BENCHMARKS.md): validation HR@10
peaks at epoch 6 and falls after it.

Sessions work as user histories do: give `Interactions` whose user column is the session id
(one sequence per session). Scoring reads a query's last ``history_length`` items from a
zero state (`SequentialRecommender`), so a new session is scored without refitting.
"""

from __future__ import annotations

import heapq
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recforge.data.sampling import ranges
from recforge.data.sequences import Sequences
from recforge.data.splits import DEFAULT_TIES
from recforge.models.registry import register
from recforge.models.sequential.base import NO_TARGET, SequenceModule, SequentialRecommender
from recforge.nn.batching import Batch
from recforge.params import PENALTY, Choice, Rule

LOSSES = ("ce", "bpr-max", "top1-max")


# ---------------------------------------------------------------------- batches
def session_parallel(seq: Sequences, lanes: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inputs, targets, resets)``, each ``(steps, lanes)``: the sequences of two or more
    items in a random order, each given to the lane that is free first (ties: the lower
    lane), laid out one step per event; ``resets`` marks a sequence's first step. As in
    GRU4Rec, the epoch ends when a lane has no sequence left: the others' remaining steps are
    left out (another part of the data each epoch), so no step trains on a few lanes only.
    With fewer sequences than lanes, the idle lanes have input ``seq.n_items`` and target
    `NO_TARGET`."""
    order = rng.permutation(np.flatnonzero(seq.lengths >= 2))
    steps = seq.lengths[order] - 1
    lane_of = np.empty(len(order), dtype=np.int64)
    start_of = np.empty(len(order), dtype=np.int64)
    free = [(0, lane) for lane in range(min(lanes, max(len(order), 1)))]
    for k, n in enumerate(steps.tolist()):
        at, lane = heapq.heappop(free)
        lane_of[k], start_of[k] = lane, at
        heapq.heappush(free, (at + n, lane))
    total = int(min(at for at, _ in free) if len(order) >= lanes else steps.max(initial=0))
    inputs = np.full((total, lanes), seq.n_items, dtype=np.int64)
    targets = np.full((total, lanes), NO_TARGET, dtype=np.int64)
    resets = np.zeros((total, lanes), dtype=bool)
    source = ranges(seq.indptr[order], steps)
    row = ranges(start_of, steps)
    column = np.repeat(lane_of, steps)
    kept = row < total
    inputs[row[kept], column[kept]] = seq.items[source[kept]]
    targets[row[kept], column[kept]] = seq.items[source[kept] + 1]
    started = start_of < total
    resets[start_of[started], lane_of[started]] = True
    return inputs, targets, resets


# ---------------------------------------------------------------------- module
class GRUModule(SequenceModule):
    """Item embeddings, input dropout and one GRU layer of the embedding's width."""

    def __init__(self, n_items: int, dim: int, dropout: float):
        super().__init__(n_items, dim)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, batch_first=True)

    def step(self, items: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The next hidden state ``(B, dim)`` after reading ``items`` ``(B,)``."""
        out, _ = self.gru(self.dropout(self.items(items))[:, None], hidden[None])
        return out[:, 0]

    def query(self, windows: torch.Tensor) -> torch.Tensor:
        """The hidden state after each left-padded window's items, read from a zero state."""
        lengths = (windows != self.n_items).sum(1)
        width = windows.shape[1]
        shift = (torch.arange(width, device=windows.device) + (width - lengths)[:, None]) % width
        packed = nn.utils.rnn.pack_padded_sequence(
            self.items(windows.gather(1, shift)), lengths.clamp_min(1).cpu(),
            batch_first=True, enforce_sorted=False)
        return self.gru(packed)[1][0]


def max_losses(kind: str, scores: torch.Tensor, positive: torch.Tensor,
               negative: torch.Tensor, reg: float) -> torch.Tensor:
    """Mean BPR-max or TOP1-max loss of rows with ``positive`` scores ``(N,)`` against the
    ``scores`` ``(N, C)`` of candidates, where ``negative`` ``(N, C)`` marks the negatives:
    each negative weighted by its softmax over the row's negatives."""
    weights = torch.softmax(scores.masked_fill(~negative, -torch.inf), dim=1)
    gap = positive[:, None] - scores
    if kind == "bpr-max":
        hit = (weights * torch.sigmoid(gap)).sum(1)
        return (-torch.log(hit + 1e-24) + reg * (weights * scores ** 2).sum(1)).mean()
    return (weights * (torch.sigmoid(-gap) + torch.sigmoid(scores ** 2))).sum(1).mean()


# ---------------------------------------------------------------------- recommender
@register("gru4rec")
class GRU4Rec(SequentialRecommender):
    """GRU over session-parallel mini-batches (module docstring).

    ``history_length``: items read per query; ``embedding_dim``: item embedding and hidden
    width; ``dropout`` on the input embeddings; ``loss``: ``ce``, ``bpr-max`` or
    ``top1-max``; ``negatives``: additional sampled items per step (the max losses);
    ``reg``: BPR-max's score regularisation; ``ties``: the tie rule of equal timestamps.
    ``train_batch_size`` is the number of parallel lanes. Training parameters:
    `recforge.nn.TrainingConfig`.

    Paper: Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018.
    Hyperparameters (defaults): ``history_length=200``, ``embedding_dim=128``, ``dropout=0.3``,
        ``reg=1.0``, ``ties='file-order'``; training (`recforge.nn.TrainingConfig`, the rest at
        its defaults): ``loss='ce'``, ``epochs=6``, ``train_batch_size=64``, ``negatives=128``.
    Defaults: on validation splits carved from training data only, never a test split (module
        docstring).
    Consumes: interactions, sequences.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 6, "train_batch_size": 64, "learning_rate": 0.001, "negatives": 128}
    training_state = (*SequentialRecommender.training_state, "_hidden")
    param_rules: ClassVar[dict[str, Rule]] = {"loss": Choice(*LOSSES), "reg": PENALTY}

    def __init__(self, history_length: int = 200, embedding_dim: int = 128,
                 dropout: float = 0.3, loss: str = "ce", reg: float = 1.0,
                 ties: str = DEFAULT_TIES, **training: Any):
        self.reg = reg
        super().__init__(history_length=history_length, embedding_dim=embedding_dim,
                         dropout=dropout, loss=loss, ties=ties, **training)

    def _build_module(self) -> GRUModule:
        return GRUModule(self.n_items_, self.embedding_dim, self.dropout)

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        run = self._training
        lanes = self.train_batch_size
        inputs, targets, resets = session_parallel(self._sequences, lanes, run.rng)
        device = run.trainer.device
        self._hidden = torch.zeros((lanes, self.embedding_dim), device=device)
        steps = ({"input": torch.from_numpy(i).to(device), "target": torch.from_numpy(t).to(device),
                  "reset": torch.from_numpy(r).to(device)}
                 for i, t, r in zip(inputs, targets, resets))
        return run.trainer.run_batches(epoch, steps, len(inputs) * lanes, self._batch_loss)

    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        net: GRUModule = getattr(module, "_orig_mod", module)
        previous = self._hidden.masked_fill(batch["reset"][:, None], 0.0)
        hidden = net.step(batch["input"], previous)
        self._hidden = hidden.detach()
        target = batch["target"]
        if self.loss == "ce":  # every step has a lane with a target
            return self._loss(net, hidden, batch)
        valid = target != NO_TARGET
        h, t = hidden[valid], target[valid]
        candidates = torch.cat([t, self._extra_negatives(t.device)])
        scores = net.pair_logits(h, candidates.expand(len(h), -1))
        negative = candidates[None, :] != t[:, None]
        positive = scores[torch.arange(len(t), device=t.device), torch.arange(len(t))]
        return max_losses(self.loss, scores, positive, negative, self.reg)

    def _extra_negatives(self, device: torch.device) -> torch.Tensor:
        """``negatives`` items drawn uniformly or by training popularity."""
        if self.sampling == "popularity":
            return torch.multinomial(self._frequency, self.negatives, replacement=True)
        return torch.randint(self.n_items_, (self.negatives,), device=device)
