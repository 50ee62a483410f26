"""What the sequential models share: training windows cut from `Sequences`, negatives per
position, the sequence losses, and scoring of any query history (`SequentialRecommender`).

Order. A user's (or session's) training items are in the time order of
`recforge.data.sequences.Sequences` with the model's tie rule ``ties`` (the rules of
`recforge.data.splits.order_by_time`; default ``file-order``, the project's default; ``random``
is seeded by ``seed``). A query's history is put in the same order: by its timestamps when
it has them, equal ones by the model's tie rule (`user_time_order`, the one place that
decides it); without timestamps in the order given.

Windows. A model reads the last ``history_length`` items of a history, oldest first,
left-padded with the padding index ``n_items`` (`recforge.data.sequences.windows`). Training
windows (`causal_windows`) cut every sequence from its end into windows of
``history_length`` inputs, each position's target being the next item (``-1`` where there is
none), so every training event but each sequence's first is a target once per epoch.

Losses (``loss``; the trainer's pointwise/pairwise ``loss`` is replaced by these):

* ``bce``: binary log loss of each position's next item against ``negatives`` items drawn
  per position (uniformly, or by popularity with ``sampling``) among the items the user never
  interacted with in training (`recforge.data.sampling.NegativeSampler`; SASRec's loss with
  one negative);
* ``ce``: softmax cross-entropy over the whole catalogue;
* ``sampled-softmax``: softmax over the batch's distinct target items plus ``negatives``
  uniformly drawn items, each logit corrected by ``-log`` of the candidate's expected count
  (logQ correction, training frequencies; Yi et al., RecSys 2019), for large catalogues.

Scoring. ``score`` of a `QueryBatch` encodes each query's own history (a history the model
never saw in training, of a known user, an unknown user or a new session) and ranks the
catalogue by the inner product of that query vector with the output item embeddings (plus an
item bias where the model has one): no refitting. User indices stand for their whole training
sequence in time order (`training_history`, saved with the model). A query whose history
holds no catalogue item is scored by popularity (cold start). `user_embeddings`,
`query_embeddings` and `encode_users` give the query vectors and `item_embeddings` the item
vectors of that factorisation, so `recforge.retrieval.Retriever` and FAISS serve the model.
"""

from __future__ import annotations

from collections.abc import Sequence as AbcSequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.interactions import IdMap, Interactions
from recforge.data.query import QueryBatch
from recforge.data.sampling import NegativeSampler, ranges
from recforge.data.sequences import Sequences, last_window, user_time_order, windows
from recforge.data.splits import DEFAULT_TIES, TIES
from recforge.models.base import ValidationScore
from recforge.models.neural.torch_base import TorchRecommender
from recforge.nn.device import threads_limit
from recforge.nn.trainer import TRAINING_PARAMS, ScoringModule, TrainingConfig
from recforge.params import DROPOUT, WIDTH, Choice, Integer, Rule

#: longest history window a model reads
MAX_HISTORY = 10_000
#: the sequence losses (module docstring)
SEQUENCE_LOSSES = ("bce", "ce", "sampled-softmax")
#: queries encoded at once when scoring
SCORE_ROWS = 256
#: target of a position without a next item
NO_TARGET = -1


# ---------------------------------------------------------------------- windows
def _cuts(seq: Sequences, spans: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(users, offsets)`` of the windows of ``length`` that cut each sequence's span of
    ``spans[u]`` items (sequences of two or more items only) from its end: window ``w`` ends
    ``offsets[w]`` items before its user's span ends."""
    count = np.where(seq.lengths >= 2, -(-spans // length), 0)
    users = np.repeat(np.arange(seq.n_users), count)
    back = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return users, back * length


def item_windows(seq: Sequences, length: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """``(users, windows)``: every sequence of two or more items cut from its end into
    windows of ``length`` items, oldest first, the first left-padded with ``pad``.
    ``users[w]`` is window ``w``'s user."""
    users, offsets = _cuts(seq, seq.lengths, length)
    ends = seq.indptr[1:][users] - offsets
    return users, windows(seq.items.astype(np.int64), ends, seq.indptr[:-1][users], length, pad)


def causal_windows(seq: Sequences, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(users, inputs, targets)``: every sequence of two or more items cut from its end into
    windows of ``length`` inputs, each with the next item of every input as its target (left
    padding: input ``seq.n_items``, target `NO_TARGET`). ``users[w]`` is window ``w``'s user."""
    users, offsets = _cuts(seq, seq.lengths - 1, length)
    ends = seq.indptr[1:][users] - 1 - offsets  # one past each window's last input
    starts = seq.indptr[:-1][users]
    values = seq.items.astype(np.int64)
    inputs = windows(values, ends, starts, length, seq.n_items)
    targets = windows(values, ends + 1, starts + 1, length, NO_TARGET)
    return users, inputs, targets


def position_negatives(sampler: NegativeSampler, users: np.ndarray, targets: np.ndarray,
                       n: int, rng: np.random.Generator) -> np.ndarray:
    """``(windows, length, n)``: ``n`` negatives of window ``w``'s user at every position
    with a target (drawn by ``sampler`` among the items the user never interacted with in
    training), 0 elsewhere."""
    out = np.zeros((*targets.shape, n), dtype=np.int64)
    rows, cols = np.nonzero(targets != NO_TARGET)
    out[rows, cols] = sampler.sample(users[rows], n, rng)
    return out


def query_windows(queries: QueryBatch, length: int, n_items: int, ties: str,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``((len(queries), length) windows, has_items)``: each query's last ``length`` history
    items inside the catalogue, oldest first, left-padded with ``n_items``; with timestamps,
    in time order with equal times by the tie rule ``ties`` (`user_time_order`)."""
    rows = np.repeat(np.arange(len(queries)), queries.lengths)
    items = queries.items.astype(np.int64)
    keep = (items >= 0) & (items < n_items)
    rows, items = rows[keep], items[keep]
    if queries.timestamps is not None and len(items):
        events = Interactions(rows, items, timestamps=queries.timestamps[keep],
                              user_map=IdMap(np.arange(len(queries))),
                              item_map=IdMap(np.arange(n_items)))
        order = user_time_order(events, ties, seed)
        rows, items = rows[order], items[order]
    has_items = np.bincount(rows, minlength=len(queries)) > 0
    return last_window(rows, items, len(queries), length, n_items), has_items


# ---------------------------------------------------------------------- module
class SequenceModule(ScoringModule):
    """Item embeddings (rows ``n_items``: padding, and any extra tokens after it) with an
    optional output bias; a subclass encodes windows (`encode`) into one hidden state per
    position, and `query` reads the query vector from them (the last position's)."""

    def __init__(self, n_items: int, dim: int, extra_tokens: int = 1, bias: bool = False):
        super().__init__()
        self.n_items = n_items
        self.items = nn.Embedding(n_items + extra_tokens, dim, padding_idx=n_items)
        nn.init.normal_(self.items.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.items.weight[n_items].zero_()
        self.bias = nn.Parameter(torch.zeros(n_items)) if bias else None

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """``(B, L, dim)`` hidden states of ``(B, L)`` item windows."""
        raise NotImplementedError

    def query(self, windows: torch.Tensor) -> torch.Tensor:
        """``(B, dim)`` query vectors: the hidden state of the last position."""
        return self.encode(windows)[:, -1]

    def item_vectors(self) -> torch.Tensor:
        return self.items.weight[:self.n_items]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item for each row of ``hidden`` (``(N, dim)``)."""
        out = hidden @ self.item_vectors().T
        return out if self.bias is None else out + self.bias

    def pair_logits(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` (``(N, ...)``) for the rows of ``hidden`` (``(N, dim)``)."""
        vectors = self.items(items)
        out = torch.einsum("nd,n...d->n...", hidden, vectors)
        return out if self.bias is None else out + self.bias[items]

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("sequential models score query histories (_score_batch)")


def sequence_loss(net: SequenceModule, loss: str, hidden: torch.Tensor,
                  targets: torch.Tensor, negatives: torch.Tensor | None,
                  frequency: torch.Tensor | None, extra: int) -> torch.Tensor:
    """Mean ``loss`` (`SEQUENCE_LOSSES`) of the positions of ``hidden`` (``(..., dim)``) with a
    target; ``negatives`` (``(..., n)``) for ``bce``; the training item ``frequency`` and
    ``extra`` uniform candidates for ``sampled-softmax``."""
    valid = targets != NO_TARGET
    h, t = hidden[valid].float(), targets[valid]
    if loss == "ce":
        return F.cross_entropy(net.logits(h), t)
    if loss == "bce":
        positive = net.pair_logits(h, t)
        negative = net.pair_logits(h, negatives[valid])
        return (F.softplus(-positive).sum() + F.softplus(negative).sum()) / (
            len(t) * (1 + negative.shape[1]))
    uniform = torch.randint(net.n_items, (extra,), device=t.device)
    candidates, column = torch.unique(torch.cat([t, uniform]), return_inverse=True)
    logits = net.pair_logits(h, candidates.expand(len(h), -1))
    expected = len(t) * frequency[candidates] + extra / net.n_items
    return F.cross_entropy(logits - torch.log(expected.clamp_min(1e-12)), column[:len(t)])


# ---------------------------------------------------------------------- recommender
class SequentialRecommender(TorchRecommender):
    """Base of the sequential models (module docstring). Subclasses build a `SequenceModule`
    (`_build_module`), their epoch's examples (`_epoch_examples`) and loss (`_batch_loss`,
    usually through `sequence_loss`), and may change how a query window is made
    (`_windows`)."""

    consumes: ClassVar[frozenset[str]] = frozenset({"interactions", "sequences"})
    streams_epochs = False
    training_state = ("_training", "_sequences", "_examples", "_frequency")
    param_rules: ClassVar[dict[str, Rule]] = {
        "history_length": Integer(2, MAX_HISTORY), "embedding_dim": WIDTH, "dropout": DROPOUT,
        "ties": TIES, "loss": Choice(*SEQUENCE_LOSSES),
    }
    module_: SequenceModule

    def __init__(self, history_length: int = 200, embedding_dim: int = 64, dropout: float = 0.2,
                 ties: str = DEFAULT_TIES, **training: Any):
        self.history_length = history_length
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.ties = ties
        super().__init__(**training)

    def training_config(self) -> TrainingConfig:
        """The training parameters; the trainer gets its default ``loss``, which it does not
        read (the sequence loss is this model's, `SEQUENCE_LOSSES`)."""
        values = {name: getattr(self, name) for name in TRAINING_PARAMS}
        return TrainingConfig(**values | {"loss": TrainingConfig.loss})

    # ------------------------------------------------------------------ training
    def _fit(self, train: Interactions, valid: Interactions | ValidationScore | None) -> None:
        self._sequences = Sequences.from_interactions(train, ties=self.ties, seed=self.seed)
        self.sequence_indptr_ = self._sequences.indptr
        self.sequence_items_ = self._sequences.items.astype(np.int64)
        counts = train.item_counts.astype(np.float64)
        self._frequency = torch.from_numpy(counts / counts.sum()).float().to(self.torch_device)
        super()._fit(train, valid)

    def _loss(self, net: SequenceModule, hidden: torch.Tensor, batch: dict[str, torch.Tensor]
              ) -> torch.Tensor:
        """`sequence_loss` of ``hidden`` against the batch's ``target`` (and ``negative``)."""
        return sequence_loss(net, self.loss, hidden, batch["target"], batch.get("negative"),
                             self._frequency, self.negatives)

    # ------------------------------------------------------------------ queries
    def training_history(self, users: Any) -> QueryBatch:
        """Queries of ``users`` whose history is their whole training sequence in time order
        (unknown users: empty)."""
        self.check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        inside = (users >= 0) & (users < self.n_users_)
        safe = np.where(inside, users, 0)
        starts = self.sequence_indptr_[safe]
        lengths = np.where(inside, self.sequence_indptr_[safe + 1] - starts, 0)
        items = self.sequence_items_[ranges(starts, lengths)]
        return QueryBatch(users, np.concatenate([[0], np.cumsum(lengths)]), items)

    def _windows(self, queries: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        """The module's input windows of ``queries`` and which queries have items."""
        return query_windows(queries, self.history_length, self.n_items_, self.ties, self.seed)

    def query_embeddings(self, queries: QueryBatch) -> np.ndarray:
        """``(len(queries), embedding_dim)`` query vectors of the histories (zero for a query
        without catalogue items)."""
        return self._encode(queries)[0]

    def _encode(self, queries: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        """(`query_embeddings`, which queries have catalogue items)."""
        self.check_fitted()
        windows, has_items = self._windows(queries)
        out = np.zeros((len(queries), self.module_.items.embedding_dim), dtype=np.float32)
        rows = np.flatnonzero(has_items)
        self.module_.eval()
        device = self.torch_device
        with torch.no_grad(), threads_limit(self.threads):
            for lo in range(0, len(rows), SCORE_ROWS):
                part = rows[lo:lo + SCORE_ROWS]
                block = torch.from_numpy(windows[part]).to(device)
                out[part] = self.module_.query(block).float().cpu().numpy()
        return out, has_items

    def _score_batch(self, queries: QueryBatch) -> np.ndarray:
        """Every item's score for each query's history; popularity without one."""
        vectors, has_items = self._encode(queries)
        out = np.empty((len(queries), self.n_items_), dtype=np.float32)
        out[~has_items] = self.popularity_
        if has_items.any():
            out[has_items] = self._with_bias(vectors[has_items], np.ones(has_items.sum())) \
                @ self.item_embeddings().T
        return out

    # ------------------------------------------------------------------ embeddings
    def _with_bias(self, vectors: np.ndarray, last: np.ndarray) -> np.ndarray:
        if self.module_.bias is None:
            return vectors
        return np.concatenate([vectors, last[:, None].astype(np.float32)], axis=1)

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, dim)`` output item vectors (then the item bias, where the model has
        one): a history's scores are its query vector's inner products with them."""
        self.check_fitted()
        bias = self.module_.bias
        return self._with_bias(self.item_vectors(),
                               None if bias is None else bias.detach().cpu().numpy())

    def query_vectors(self, queries: QueryBatch) -> np.ndarray:
        """`query_embeddings` in the space of `item_embeddings` (a 1 for the bias)."""
        vectors = self.query_embeddings(queries)
        return self._with_bias(vectors, np.ones(len(vectors)))

    def user_embeddings(self, users: Any) -> np.ndarray:
        """Query vectors of known ``users``' training sequences (zero for a user without
        one), such that ``score(u) == user_embeddings([u]) @ item_embeddings().T``."""
        return self.query_vectors(self.training_history(self._user_index(users)))

    def encode_users(self, features: Any = None,
                     history: AbcSequence[AbcSequence[int]] | None = None) -> np.ndarray:
        """Query vectors (as `user_embeddings`) of new users from their recent item indices,
        oldest first; the models read no user features."""
        if history is None:
            raise ValueError(f"{type(self).__name__} encodes users from a history of items")
        lengths = np.array([len(h) for h in history], dtype=np.int64)
        items = np.concatenate([np.asarray(h, dtype=np.int64).ravel() for h in history]
                               + [np.zeros(0, np.int64)])
        queries = QueryBatch(np.full(len(lengths), -1, dtype=np.int64),
                             np.concatenate([[0], np.cumsum(lengths)]), items)
        return self.query_vectors(queries)

