"""Maximal marginal relevance (Carbonell & Goldstein, 1998) re-ranking of any model's lists.

Each user's top-``candidates`` items (seen items excluded) are re-ordered greedily: position
``j`` takes the candidate maximising ``lambda * rel(i) - (1 - lambda) * max_{s in S} sim(i, s)``
over the items ``S`` already chosen (the penalty is 0 for the first pick). ``rel`` is the
model's score min-max normalised over the user's candidates to ``[0, 1]`` (all 1 when the
scores are equal); ``sim`` is the cosine of item representations: the model's item vectors or
any item feature matrix (e.g. genres multi-hot), so every model can be re-ranked. With
``lambda_ = 1`` the order is the model's own top-k; ties go to the earlier candidate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.evaluation.metrics import unit_rows
from recforge.models.base import Recommender
from recforge.params import CUTOFF, MAX_COUNT, UNIT, Integer

Similarity = str | np.ndarray | sp.spmatrix
DEFAULT_CANDIDATES = 100


def item_genres(data: Interactions, column: str = "genres") -> sp.csr_matrix | None:
    """The items' multi-hot ``column`` aligned to ``data``'s item indices (None if absent)."""
    labelled = data.item_column("multihot", column)
    return None if labelled is None else labelled[1]


def minmax_relevance(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scores min-max scaled to ``[0, 1]`` per row over ``valid`` entries (1 when constant)."""
    low = np.where(valid, scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(valid, scores, -np.inf).max(axis=1, keepdims=True)
    span = high - low
    scaled = np.divide(scores - low, span, out=np.ones_like(scores, dtype=np.float64),
                       where=(span > 0) & valid)
    return np.where(valid, scaled, 0.0)


class MMRReranker:
    """Re-rank a model's top ``candidates`` by MMR with trade-off ``lambda_`` in ``[0, 1]``.

    ``similarity`` is ``"vectors"`` (the model's `item_vectors`) or an item feature matrix
    (dense or sparse, one row per item). ``batch_size`` users are re-ranked at once.
    """

    def __init__(self, lambda_: float = 0.5, candidates: int = DEFAULT_CANDIDATES,
                 similarity: Similarity = "vectors", batch_size: int = 256):
        if isinstance(similarity, str) and similarity != "vectors":
            raise ValueError("similarity must be 'vectors' or a feature matrix, "
                             f"not {similarity!r}")
        self.lambda_ = UNIT.check("lambda_", lambda_)
        self.candidates = CUTOFF.check("candidates", candidates)
        self.similarity = similarity
        self.batch_size = Integer(1, MAX_COUNT).check("batch_size", batch_size)

    def _features(self, model: Recommender) -> np.ndarray | sp.spmatrix:
        if not isinstance(self.similarity, str):
            return self.similarity
        vectors = model.item_vectors()
        if vectors is None:
            raise ValueError(f"{type(model).__name__} has no item vectors; pass an item feature "
                             "matrix as similarity")
        return vectors

    def rerank(self, model: Recommender, users: Any, k: int) -> np.ndarray:
        """The re-ranked top-``k`` item indices per query, ``(n, k)``, ``-1`` padded.

        ``users`` are user indices (queried with their training history) or a `QueryBatch`;
        the candidates are the model's `recommend` lists (the query's history excluded)."""
        queries = users if isinstance(users, QueryBatch) else model.training_history(users)
        features = self._features(model)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for lo in range(0, len(queries), self.batch_size):
            batch = queries.take(slice(lo, lo + self.batch_size))
            items, scores = model.recommend(batch, max(k, self.candidates))
            out[lo:lo + len(batch)] = self.greedy(items, scores.astype(np.float64), features, k)
        return out

    def greedy(self, items: np.ndarray, scores: np.ndarray,
               features: np.ndarray | sp.spmatrix, k: int) -> np.ndarray:
        """MMR selection of ``k`` of each row's candidate ``items`` (``-1`` padded) by
        ``scores``; vectorised over rows, one step per output position."""
        valid = items >= 0
        relevance = minmax_relevance(scores, valid)
        unit = unit_rows(features, np.maximum(items, 0).ravel()).reshape(*items.shape, -1)
        rows = np.arange(len(items))
        max_sim = np.zeros(items.shape)
        open_ = valid.copy()
        chosen = np.full((len(items), k), -1, dtype=np.int64)
        for j in range(min(k, items.shape[1])):
            gain = np.where(open_, self.lambda_ * relevance - (1 - self.lambda_) * max_sim,
                            -np.inf)
            pick = np.argmax(gain, axis=1)
            ok = open_[rows, pick]
            chosen[ok, j] = items[rows[ok], pick[ok]]
            open_[rows, pick] = False
            sim = np.einsum("ncd,nd->nc", unit, unit[rows, pick])
            max_sim = sim if j == 0 else np.maximum(max_sim, sim)
        return chosen
