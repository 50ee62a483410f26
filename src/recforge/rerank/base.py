"""What every greedy re-ranker shares: options, candidates, relevance and item similarity.

A `GreedyReranker` takes each query's top ``candidates`` items from any model's `recommend`
(the query's history excluded; short lists padded with item ``-1`` and score ``-inf``), turns
the scores into a relevance in ``[0, 1]`` (`minmax_relevance`) and the items into unit vectors
(`candidate_vectors`) whose inner products are the cosine similarities, and lets the subclass's
``greedy`` pick ``k`` of them, vectorised over a batch of queries (`MMRReranker`,
`DPPReranker`). Similarity is measured on the model's item vectors (``"vectors"``) or on any
item feature matrix (e.g. the genres multi-hot, `item_genres`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.errors import InputError
from recforge.evaluation.metrics import unit_rows
from recforge.models.base import Recommender
from recforge.params import CUTOFF, MAX_COUNT, Integer, parameter_error

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


def candidate_vectors(features: np.ndarray | sp.spmatrix, items: np.ndarray) -> np.ndarray:
    """The L2-normalised feature rows of each row's candidate ``items``, ``(n, N, d)``; a
    padding item (``-1``) or an item with no features gets a zero vector."""
    unit = unit_rows(features, np.maximum(items, 0).ravel()).reshape(*items.shape, -1)
    return np.where((items >= 0)[..., None], unit, 0.0)


def similarity_to(unit: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """Cosine similarity ``(n, N)`` of every candidate to each row's candidate ``pick``."""
    return np.einsum("ncd,nd->nc", unit, unit[np.arange(len(unit)), pick])


class GreedyReranker:
    """The options and the batch loop of a greedy re-ranker; subclasses define `greedy`.

    ``candidates`` items per query are re-ranked (at least ``k``); ``similarity`` is
    ``"vectors"`` (the model's `item_vectors`) or an item feature matrix (dense or sparse,
    one row per item); ``batch_size`` queries are re-ranked at once."""

    def __init__(self, candidates: int = DEFAULT_CANDIDATES, similarity: Similarity = "vectors",
                 batch_size: int = 256):
        if isinstance(similarity, str) and similarity != "vectors":
            raise parameter_error("similarity", "must be 'vectors' or a feature matrix, "
                                  f"got {similarity!r}")
        self.candidates = CUTOFF.check("candidates", candidates)
        self.similarity = similarity
        self.batch_size = Integer(1, MAX_COUNT).check("batch_size", batch_size)

    def _features(self, model: Recommender) -> np.ndarray | sp.spmatrix:
        if not isinstance(self.similarity, str):
            return self.similarity
        vectors = model.item_vectors()
        if vectors is None:
            raise InputError(f"{type(model).__name__} has no item vectors; pass an item feature "
                             "matrix as similarity")
        return vectors

    def rerank(self, model: Recommender, users: Any, k: int) -> np.ndarray:
        """The re-ranked top-``k`` item indices per query, ``(n, k)``, ``-1`` padded.

        ``users`` are user indices (queried with their training history) or a `QueryBatch`;
        the candidates are the model's `recommend` lists (the query's history excluded)."""
        k = CUTOFF.check("k", k)
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
        """``k`` of each row's candidate ``items`` (``-1`` padded), ``(n, k)``, by ``scores``."""
        raise NotImplementedError
