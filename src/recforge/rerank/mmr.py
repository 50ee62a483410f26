"""Maximal marginal relevance (Carbonell & Goldstein, 1998) re-ranking of any model's lists.

Each user's top-``candidates`` items (seen items excluded) are re-ordered greedily: position
``j`` takes the candidate maximising ``lambda * rel(i) - (1 - lambda) * max_{s in S} sim(i, s)``
over the items ``S`` already chosen (the penalty is 0 for the first pick). ``rel`` is the
model's score min-max normalised over the user's candidates to ``[0, 1]`` (all 1 when the
scores are equal); ``sim`` is the cosine of item representations: the model's item vectors or
any item feature matrix (e.g. genres multi-hot), so every model can be re-ranked. With
``lambda_ = 1`` the order is the model's own top-k; ties go to the earlier candidate.
Candidates, relevance and similarity are shared with DPP (`recforge.rerank.base`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recforge.params import UNIT
from recforge.rerank.base import (
    DEFAULT_CANDIDATES,
    GreedyReranker,
    Similarity,
    candidate_vectors,
    item_genres,
    minmax_relevance,
    similarity_to,
)

__all__ = ["DEFAULT_CANDIDATES", "MMRReranker", "item_genres", "minmax_relevance"]


class MMRReranker(GreedyReranker):
    """Re-rank a model's top ``candidates`` by MMR with trade-off ``lambda_`` in ``[0, 1]``.

    ``similarity`` is ``"vectors"`` (the model's `item_vectors`) or an item feature matrix
    (dense or sparse, one row per item). ``batch_size`` users are re-ranked at once.
    """

    def __init__(self, lambda_: float = 0.5, candidates: int = DEFAULT_CANDIDATES,
                 similarity: Similarity = "vectors", batch_size: int = 256):
        self.lambda_ = UNIT.check("lambda_", lambda_)
        super().__init__(candidates, similarity, batch_size)

    def greedy(self, items: np.ndarray, scores: np.ndarray,
               features: np.ndarray | sp.spmatrix, k: int) -> np.ndarray:
        """MMR selection of ``k`` of each row's candidate ``items`` (``-1`` padded) by
        ``scores``; vectorised over rows, one step per output position."""
        valid = items >= 0
        relevance = minmax_relevance(scores, valid)
        unit = candidate_vectors(features, items)
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
            sim = similarity_to(unit, pick)
            max_sim = sim if j == 0 else np.maximum(max_sim, sim)
        return chosen
