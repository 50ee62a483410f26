"""LightGCN (He, Deng, Wang, Li, Zhang & Wang, "LightGCN: Simplifying and Powering Graph
Convolution Network for Recommendation", SIGIR 2020), on the shared neural trainer.

Model. Every user and item has an ego (layer-0) embedding ``E``. Propagation over the
symmetric normalised user-item adjacency ``A = D^-1/2 [[0, R], [R^T, 0]] D^-1/2``
(`recforge.models.graph.adjacency`; ``R`` the binary training matrix) gives the layers
``E^(k) = A^k E``, combined by their mean ``(E + A E + ... + A^K E) / (K + 1)`` with ``K =
layers``; a user-item score is the inner product of the two combined embeddings.

Training. Each epoch draws as many BPR triples (user, training item, sampled item the user
never interacted with; ``negatives`` triples per positive with more) as there are training
interactions: with ``uniform_users`` (the default) each starts from a user drawn uniformly
among those with training interactions and one of their items, as the LightGCN authors'
sampler does; without, every training interaction once (as RecBole does). Negatives come
from the shared `recforge.data.sampling.NegativeSampler` (``sampling``); batches are
shuffled and stepped by the shared `recforge.nn.Trainer` (Adam by default). Each mini-batch
propagates the whole graph once (``K`` sparse products forward, ``K`` backward) and takes the
BPR loss of the batch's triples
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

Defaults. 64-wide embeddings, 3 layers and initial weights ``N(0, 0.1^2)`` are the paper's;
``reg``, the learning rate, batch size, sampler and epochs were chosen on validation data
carved from ML-100K training data only (``benchmarks/bench_lightgcn.py --tune``: the per-user
random 80/20 training part split again the same way, full-ranking Recall@20 and NDCG@20 every
10 epochs; ``benchmarks/results/lightgcn_tuning.json``). The paper's setting (``reg`` 1e-4,
Adam at 0.001, batches of 2,048) climbed to Recall@20 0.298 / NDCG@20 0.280 by epoch 220 of
300; with batches of 8,192 (a quarter of the epoch's full-graph propagations, so an epoch over
1M interactions takes 10 s on 2 cores instead of 34 s) and a learning rate of 0.01 nearly the
same peak (0.295 / 0.277) came by epoch 90, then overfitted; ``reg`` 1e-3 held it (0.305 /
0.287 at 200); 3e-3, 4 negatives per positive and 128-wide embeddings were level, 1e-2 and
1e-5 lower; the user-uniform sampler raised it to 0.309 / 0.293 (flat from epoch 170
to 200; 0.308 / 0.292 with 4 negatives, 0.307 / 0.292 with a cosine schedule, 0.299 / 0.285
with ``reg`` 3e-3). Fewer layers overfit sooner and want a larger ``reg``: 1e-2 for one layer
(0.303 / 0.288), 3e-3 for two (0.309 / 0.296). For reference, iALS and BPR with their defaults
scored 0.315 / 0.299 and 0.273 / 0.255 on the same validation split.
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
from recforge.data.sampling import NegativeSampler
from recforge.models.graph.adjacency import (
    Graph,
    degree_scale,
    layer_sums,
    normalized_adjacency,
    propagate,
)
from recforge.models.iterative import LoopState
from recforge.models.neural.torch_base import TorchRecommender
from recforge.models.registry import register
from recforge.nn.batching import Batch
from recforge.nn.trainer import ScoringModule
from recforge.params import BOOLEAN, INIT_STD, PENALTY, WIDTH, Integer, Rule

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


def user_uniform_positives(indptr: np.ndarray, items: np.ndarray, n: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positives ``(users, items)`` of the CSR rows ``indptr``/``items``: each a user
    drawn uniformly among those with positives, then one of their items uniformly (the
    sampler of the LightGCN authors' code)."""
    counts = np.diff(indptr)
    active = np.flatnonzero(counts)
    users = active[rng.integers(len(active), size=n)]
    picked = indptr[users] + (rng.random(n) * counts[users]).astype(np.int64)
    return users, items[picked]


@register("lightgcn")
class LightGCN(TorchRecommender):
    """LightGCN: mean of ``layers`` propagations over the normalised user-item graph, BPR loss
    with L2 on the ego embeddings (module docstring).

    ``embedding_dim``: width of every embedding; ``layers``: propagation steps (1 to
    `MAX_LAYERS`); ``reg``: L2 weight on the batch's ego embeddings; ``init_std``: spread of the
    initial embeddings; ``uniform_users``: each epoch's positives drawn user-uniformly (else
    every training interaction once). Training parameters: see `recforge.nn.TrainingConfig`
    (``loss`` is ``bpr``, with ``negatives`` triples per positive; ``compile`` does not
    apply: the propagation is a custom sparse product).

    Paper: He et al., "LightGCN", SIGIR 2020.
    Hyperparameters (defaults): ``embedding_dim=64``, ``layers=3``, ``reg=0.001``,
        ``init_std=0.1``, ``uniform_users=True``; training (`recforge.nn.TrainingConfig`, the
        rest at its defaults): ``epochs=200``, ``train_batch_size=8192``,
        ``learning_rate=0.01``, ``loss='bpr'``, ``negatives=1``.
    Defaults: ``reg``, the learning rate, batch size, sampler and epochs from validation curves
        on validation splits carved from training data only, never a test split (module
        docstring).
    Consumes: interactions.
    """

    training_defaults: ClassVar[dict[str, Any]] = {
        "loss": "bpr", "negatives": 1, "learning_rate": 0.01, "train_batch_size": 8192,
        "epochs": 200,
    }
    training_state = ("_training", "_graph", "_positives")
    param_rules: ClassVar[dict[str, Rule]] = {
        "embedding_dim": WIDTH, "layers": Integer(1, MAX_LAYERS), "reg": PENALTY,
        "init_std": INIT_STD, "uniform_users": BOOLEAN,
    }
    module_: LightGCNModule
    #: mean of the item layers ``0 .. K`` (the item side of every score)
    propagated_items_: np.ndarray
    #: sum of the item layers ``0 .. K - 1`` (what a folded-in user node aggregates)
    item_layer_sum_: np.ndarray
    #: ``1 / sqrt(training degree)`` of each item (0 without training interactions)
    item_scale_: np.ndarray

    def __init__(self, embedding_dim: int = 64, layers: int = 3, reg: float = 1e-3,
                 init_std: float = 0.1, uniform_users: bool = True, **training: Any):
        self.embedding_dim = embedding_dim
        self.layers = layers
        self.reg = reg
        self.init_std = init_std
        self.uniform_users = uniform_users
        super().__init__(**training)

    # ------------------------------------------------------------------ training
    def _build_module(self) -> LightGCNModule:
        return LightGCNModule(self.n_users_, self.n_items_, self.embedding_dim, self.layers,
                              self.init_std)

    def _init_training(self, train: Interactions) -> None:
        super()._init_training(train)
        csr = train.binary_csr
        self._graph = Graph(normalized_adjacency(csr), self.torch_device)
        self._positives = (csr.indptr.astype(np.int64), csr.indices.astype(np.int64))
        self.item_scale_ = degree_scale(np.bincount(csr.indices, minlength=self.n_items_))

    def _chunk_examples(self, users: np.ndarray, items: np.ndarray, sampler: NegativeSampler,
                        rng: np.random.Generator) -> Batch:
        """The trainer's examples of the positives, or with ``uniform_users`` of as many
        positives drawn by `user_uniform_positives`."""
        if self.uniform_users:
            users, items = user_uniform_positives(*self._positives, len(users), rng)
        return super()._chunk_examples(users, items, sampler, rng)

    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """The trainer's BPR (or log) loss of the propagated embeddings plus ``reg`` times
        `ego_penalty`."""
        net: LightGCNModule = getattr(module, "_orig_mod", module)
        scores = PairScores(net.propagate(self._graph), self.n_users_)
        loss = super()._batch_loss(scores, batch)  # type: ignore[arg-type]
        if self.reg:
            loss = loss + self.reg * ego_penalty(net.embeddings.weight, batch, self.n_users_)
        return loss

    def _loop_start(self) -> LoopState:
        loop = super()._loop_start()
        self._propagate_items()  # of the weights the loop starts from (a resumed checkpoint's)
        return loop

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
