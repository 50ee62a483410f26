"""Scoring shared by latent-factor models (iALS, BPR-MF, ...).

A factor model scores user ``u`` and item ``i`` as ``user_factors_[u] . item_factors_[i]``,
plus ``item_bias_[i]`` when the model learns one (BPR). The item factors double as the
embeddings behind `similar_items`; the retrieval factorisation appends the bias to the item
vector and a constant 1 to the user vector, so that the inner product is the score.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numba
import numpy as np


def init_factors(rng: np.random.Generator, n: int, k: int, scale: float) -> np.ndarray:
    """``(n, k)`` float32 factors drawn from ``N(0, scale^2)``."""
    return (rng.standard_normal((n, k), dtype=np.float32) * np.float32(scale))


@contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run numba's parallel kernels on ``n`` threads inside the block (0: all of them)."""
    available = numba.config.NUMBA_NUM_THREADS
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, available) if n > 0 else available)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


class FactorModel:
    """Mixin: `_score`, `_predict` and `item_vectors` from ``user_factors_``/``item_factors_``.

    Subclasses that learn an item bias set ``has_item_bias = True`` and fit ``item_bias_``.
    """

    has_item_bias: ClassVar[bool] = False
    user_factors_: np.ndarray
    item_factors_: np.ndarray
    item_bias_: np.ndarray

    def _score(self, users: np.ndarray) -> np.ndarray:
        scores = self.user_factors_[users] @ self.item_factors_.T
        if self.has_item_bias:
            scores += self.item_bias_
        return scores

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        scores = np.einsum("nk,nk->n", self.user_factors_[users], self.item_factors_[items])
        if self.has_item_bias:
            scores += self.item_bias_[items]
        return scores.astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def user_embeddings(self, users: Any) -> np.ndarray:
        """User factors, with a constant 1 appended when the model has an item bias."""
        factors = self.user_factors_[self._user_index(users)]  # type: ignore[attr-defined]
        if not self.has_item_bias:
            return factors
        return np.hstack([factors, np.ones((len(factors), 1), dtype=factors.dtype)])

    def item_embeddings(self) -> np.ndarray:
        """Item factors, with the item bias appended when the model has one."""
        if not self.has_item_bias:
            return self.item_factors_
        return np.hstack([self.item_factors_, self.item_bias_[:, None].astype(np.float32)])
