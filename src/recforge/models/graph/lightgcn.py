"""LightGCN (He, Deng, Wang, Li, Zhang & Wang, "LightGCN: Simplifying and Powering Graph
Convolution Network for Recommendation", SIGIR 2020), on the shared neural trainer.

Model. Every user and item has an ego (layer-0) embedding ``E``. Propagation over the
symmetric normalised user-item adjacency ``A = D^-1/2 [[0, R], [R^T, 0]] D^-1/2``
(`recforge.models.graph.adjacency`; ``R`` the binary training matrix) gives the layers
``E^(k) = A^k E``, combined by their mean ``(E + A E + ... + A^K E) / (K + 1)`` with ``K =
layers``; a user-item score is the inner product of the two combined embeddings.

Training. Each epoch draws one BPR triple (user, training item, sampled item the user never
interacted with) per training interaction, ``negatives`` per positive with more, from the
shared `recforge.data.sampling.NegativeSampler` (``sampling``), batched and stepped by the
shared `recforge.nn.Trainer` (Adam by default). Each mini-batch propagates the whole graph once
(``K`` sparse products forward, ``K`` backward) and takes the BPR loss of the batch's triples
(the trainer's `bpr_loss`; ``loss="bce"`` takes the pointwise log loss with ``negatives``
sampled items instead) plus ``reg / 2`` times the squared norms of the ego embeddings of the
batch's users and items, averaged over its examples (the paper's L2 on the layer-0
embeddings of the batch). The optimiser's ``weight_decay`` (0 by default) is a separate,
global L2. After every epoch the item side is propagated once more without gradient and kept
(``propagated_items_``, ``item_layer_sum_``), so scoring needs no graph.

Scoring and fold-in. A query's history ``H`` (its distinct items with training interactions;
other items are ignored) is folded into the graph as a new user node by one propagation step
from the item side: ``e_q = (e0_q + sum_{i in H} S_i / sqrt(|H| d_i)) / (K + 1)``, where
``S_i`` is the sum of item ``i``'s layers ``0 .. K - 1``, ``d_i`` its training degree and
``e0_q`` the ego embedding of the query's user when the model knows the user, else zero. For
a known user with their training history this is exactly their propagated embedding (the
user's row of the propagation is that sum), so user indices score as in the paper; a longer
or different history (a new session, events after training) and an anonymous user's history
are scored from the same trained embeddings without refitting. The item side is left as
trained (a new node would change the degree of its items by one). A query without such items
gets popularity scores (the cold-start fallback). The scores factorise:
`query_embeddings`/`user_embeddings`/`encode_users` give ``e_q`` and `item_embeddings` the
propagated items, so `recforge.retrieval.Retriever` and FAISS serve the model.

Defaults are the paper's (64-wide embeddings, 3 layers, ``reg`` 1e-4, initial weights
``N(0, 0.1^2)``) except the learning rate, batch size and epochs, chosen on a validation split
carved from ML-100K training data only (see ``benchmarks/bench_lightgcn.py --tune``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.models.graph.adjacency import (
    Graph,
    degree_scale,
    layer_sums,
    normalized_adjacency,
    propagate,
)
from recforge.models.neural.torch_base import TorchRecommender
from recforge.models.registry import register
from recforge.nn.batching import Batch
from recforge.nn.trainer import ScoringModule
from recforge.params import INIT_STD, PENALTY, WIDTH, Integer, Rule

#: most propagation layers (the paper uses 1 to 4; deeper ones over-smooth)
MAX_LAYERS = 16


class LightGCNModule(ScoringModule):
    """The ego embeddings of the ``n_users`` users, then the ``n_items`` items, and their
    propagation over a `Graph` (the normalised adjacency, given per call: it is not saved)."""

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int, init_std: float):
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.embeddings = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embeddings.weight, std=init_std)

    def propagate(self, graph: Graph) -> torch.Tensor:
        """``(n_users + n_items, dim)`` combined embeddings (the mean of the layers), in float32
        outside any autocast region."""
        with torch.autocast(graph.device.type, enabled=False):
            return propagate(graph, self.embeddings.weight.float(), self.layers)

    def layer_sums(self, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """`recforge.models.graph.adjacency.layer_sums` of the ego embeddings."""
        return layer_sums(graph, self.embeddings.weight, self.layers)

    def item_vectors(self) -> torch.Tensor:
        return self.embeddings.weight[self.n_users:]


class PairScores:
    """Logits of (user, item) pairs from combined node embeddings: what the trainer's losses
    (`recforge.nn.trainer.bpr_loss`, `pointwise_loss`) call as ``module(users, items)``."""

    def __init__(self, nodes: torch.Tensor, n_users: int):
        self.nodes, self.n_users = nodes, n_users

    def __call__(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.nodes[users] * self.nodes[self.n_users + items]).sum(-1)


def ego_penalty(ego: torch.Tensor, batch: Batch, n_users: int) -> torch.Tensor:
    """Half the squared norms of the ego embeddings of each example's user and items,
    averaged over the batch's examples."""
    items = [batch[key] for key in ("item", "positive", "negative") if key in batch]
    total = ego[batch["user"]].float().pow(2).sum()
    for column in items:
        total = total + ego[n_users + column].float().pow(2).sum()
    return total / (2 * len(batch["user"]))


@register("lightgcn")
class LightGCN(TorchRecommender):
    """LightGCN: mean of ``layers`` propagations over the normalised user-item graph, BPR loss
    with L2 on the ego embeddings (module docstring).

    ``embedding_dim``: width of every embedding; ``layers``: propagation steps (1 to
    `MAX_LAYERS`); ``reg``: L2 weight on the batch's ego embeddings; ``init_std``: spread of the
    initial embeddings. Training parameters: see `recforge.nn.TrainingConfig` (``loss`` is
    ``bpr``, with ``negatives`` triples per positive; ``compile`` does not apply: the
    propagation is a custom sparse product)."""

    training_defaults: ClassVar[dict[str, Any]] = {
        "loss": "bpr", "negatives": 1, "learning_rate": 0.001, "train_batch_size": 2048,
        "epochs": 200,
    }
    training_state = ("_training", "_graph")
    param_rules: ClassVar[dict[str, Rule]] = {
        "embedding_dim": WIDTH, "layers": Integer(1, MAX_LAYERS), "reg": PENALTY,
        "init_std": INIT_STD,
    }
    module_: LightGCNModule
    #: mean of the item layers ``0 .. K`` (the item side of every score)
    propagated_items_: np.ndarray
    #: sum of the item layers ``0 .. K - 1`` (what a folded-in user node aggregates)
    item_layer_sum_: np.ndarray
    #: ``1 / sqrt(training degree)`` of each item (0 without training interactions)
    item_scale_: np.ndarray

    def __init__(self, embedding_dim: int = 64, layers: int = 3, reg: float = 1e-4,
                 init_std: float = 0.1, **training: Any):
        self.embedding_dim = embedding_dim
        self.layers = layers
        self.reg = reg
        self.init_std = init_std
        super().__init__(**training)

    # ------------------------------------------------------------------ training
    def _build_module(self) -> LightGCNModule:
        return LightGCNModule(self.n_users_, self.n_items_, self.embedding_dim, self.layers,
                              self.init_std)

    def _init_training(self, train: Interactions) -> None:
        super()._init_training(train)
        self._graph = Graph(normalized_adjacency(train.binary_csr), self.torch_device)
        self.item_scale_ = degree_scale(np.bincount(train.binary_csr.indices,
                                                    minlength=self.n_items_))

    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """The trainer's BPR (or log) loss of the propagated embeddings plus ``reg`` times
        `ego_penalty`."""
        net: LightGCNModule = getattr(module, "_orig_mod", module)
        scores = PairScores(net.propagate(self._graph), self.n_users_)
        loss = super()._batch_loss(scores, batch)  # type: ignore[arg-type]
        if self.reg:
            loss = loss + self.reg * ego_penalty(net.embeddings.weight, batch, self.n_users_)
        return loss

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        record = super()._run_epoch(epoch)
        self._propagate_items()
        return record

    def _propagate_items(self) -> None:
        """Keep the item side of the propagation (`propagated_items_`, `item_layer_sum_`)."""
        before_last, total = self.module_.layer_sums(self._graph)
        items = slice(self.n_users_, None)
        self.item_layer_sum_ = before_last[items].cpu().numpy()
        self.propagated_items_ = (total[items] / (self.layers + 1)).cpu().numpy()

    # ------------------------------------------------------------------ scoring
    def query_embeddings(self, queries: QueryBatch) -> np.ndarray:
        """``(len(queries), embedding_dim)`` vectors of the queries' histories folded into the
        graph (module docstring; zero for a query without items of the training graph)."""
        return self._fold_in(queries)[0]

    def _fold_in(self, queries: QueryBatch) -> tuple[np.ndarray, np.ndarray]:
        """(`query_embeddings`, which queries have items of the training graph)."""
        self.check_fitted()
        history = self._history_matrix(queries)
        degree = np.diff(history.indptr)
        out = np.asarray(sp.diags(degree_scale(degree)) @ history @ self.item_layer_sum_,
                         dtype=np.float32)
        has_items = degree > 0
        own = np.flatnonzero(has_items & self.is_known_user(queries.users))
        if len(own):
            ego = self.module_.embeddings.weight.detach()
            index = torch.from_numpy(queries.users[own]).to(ego.device)
            out[own] += ego[index].float().cpu().numpy()
        out /= self.layers + 1
        return out, has_items

    def _history_matrix(self, queries: QueryBatch) -> sp.csr_matrix:
        """``(len(queries), n_items)``: ``1 / sqrt(d_i)`` for each distinct item ``i`` of a
        query's history with training degree ``d_i > 0``."""
        rows = np.repeat(np.arange(len(queries)), queries.lengths)
        items = queries.items.astype(np.int64)
        keep = (items >= 0) & (items < self.n_items_)
        rows, items = rows[keep], items[keep]
        keep = self.item_scale_[items] > 0
        matrix = sp.csr_matrix((np.ones(keep.sum(), dtype=np.float32),
                                (rows[keep], items[keep])), shape=(len(queries), self.n_items_))
        matrix.sum_duplicates()
        matrix.data = self.item_scale_[matrix.indices]
        return matrix

    def _score_batch(self, queries: QueryBatch) -> np.ndarray:
        """Every item's score for each query's folded-in history; popularity without one."""
        vectors, has_items = self._fold_in(queries)
        out = np.empty((len(queries), self.n_items_), dtype=np.float32)
        out[~has_items] = self.popularity_
        out[has_items] = vectors[has_items] @ self.propagated_items_.T
        return out

    # ------------------------------------------------------------------ embeddings
    def item_embeddings(self) -> np.ndarray:
        """``(n_items, embedding_dim)`` propagated item embeddings: a query's scores are its
        vector's inner products with them."""
        self.check_fitted()
        return self.propagated_items_

    def item_vectors(self) -> np.ndarray:
        """The propagated item embeddings (for `similar_items`)."""
        return self.item_embeddings()

    def user_embeddings(self, users: Any) -> np.ndarray:
        """Propagated embeddings of known ``users`` (their training history folded in, which is
        their row of the propagation), such that ``score(u) == user_embeddings([u]) @
        item_embeddings().T``; zero for a user without training interactions."""
        return self.query_embeddings(self.training_history(self._user_index(users)))

    def encode_users(self, features: Any = None,
                     history: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        """Query vectors (as `user_embeddings`) of new users from the item indices they
        interacted with; the model reads no user features."""
        if history is None:
            raise ValueError(f"{type(self).__name__} encodes users from a history of items")
        queries = QueryBatch.from_ids([None] * len(history), history, user_map=None,
                                      item_map=None)
        return self.query_embeddings(queries)
