"""EASE: Embarrassingly Shallow Autoencoder (Steck, "Embarrassingly Shallow Autoencoders for
Sparse Data", WWW 2019).

A closed-form item-item model on the binary matrix ``X``::

    P = (X^T X + lambda I)^-1,    B = I - P / diag(P)  (i.e. B_ij = -P_ij / P_jj, B_jj = 0)

and ``score(u) = X[u] @ B``. ``B`` is the minimiser of ``|X - X B|_F^2 + lambda |B|_F^2`` under
``diag(B) = 0``.

Cost and limits: the Gram matrix and its inverse are dense ``n_items x n_items``: memory
``n_items^2 * itemsize`` (50,000 items: 10 GB in float32, 20 GB in float64) and time
``O(n_items^3)`` (a Cholesky factorisation and inverse, done in place by LAPACK). `fit`
refuses a catalogue whose matrix would not fit in the machine's physical memory; restrict
the catalogue (e.g. to the most popular items) for larger data.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import scipy.linalg

from recforge.data.interactions import Interactions
from recforge.models.base import Recommender
from recforge.models.registry import register
from recforge.models.similarity import ItemSimilarityMixin, gram_matrix

#: rows of the inverse symmetrised at once (bounds the temporary copy)
_SYMMETRISE_ROWS = 2048


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _inverse_spd(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix, in place (Cholesky: potrf + potri)."""
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (matrix,))
    # C-order storage of a symmetric matrix is its Fortran-order transpose: same matrix.
    factor, info = potrf(matrix.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram matrix is not positive definite (potrf info={info})")
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse failed (potri info={info})")
    inverse = inverse.T  # back to C order; LAPACK filled the upper triangle of the F view
    n = inverse.shape[0]
    for lo in range(0, n, _SYMMETRISE_ROWS):
        hi = min(n, lo + _SYMMETRISE_ROWS)
        inverse[lo:hi, hi:] = inverse[hi:, lo:hi].T
        block = inverse[lo:hi, lo:hi]
        block[np.triu_indices(hi - lo, 1)] = block.T[np.triu_indices(hi - lo, 1)]
    return inverse


@register("ease")
class EASE(ItemSimilarityMixin, Recommender):
    """Closed-form linear item-item autoencoder with L2 weight ``reg`` (lambda).

    ``dtype`` is the precision of the ``n_items x n_items`` solve ("float32" halves memory
    and time). `similar_items` reads the rows of ``B``. The default ``reg`` was chosen by
    sampled-99 HR@10 on a leave-last-out validation split carved from the training data of
    ML-100K and of the synthetic set (benchmarks/bench_knn_ease.py validate); full-ranking
    NDCG@10 on the same splits prefers less regularisation (about 100).
    """

    def __init__(self, reg: float = 500.0, dtype: Literal["float32", "float64"] = "float64"):
        self.reg = reg
        self.dtype = dtype

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if self.reg <= 0:
            raise ValueError("reg must be positive (the Gram matrix may be singular)")
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', not {self.dtype!r}")
        self._check_memory(dtype)
        gram = gram_matrix(self.seen_, dtype=dtype)
        gram[np.diag_indices_from(gram)] += dtype.type(self.reg)
        weights = _inverse_spd(gram)
        weights /= -np.diag(weights).copy()[None, :]
        weights[np.diag_indices_from(weights)] = 0.0
        self.B_ = weights.astype(np.float32, copy=False)

    def _check_memory(self, dtype: np.dtype) -> None:
        need = self.n_items_ ** 2 * dtype.itemsize
        total = _physical_memory()
        if total is not None and need > total:
            raise MemoryError(
                f"EASE needs a dense {self.n_items_} x {self.n_items_} {dtype.name} matrix "
                f"({need / 2**30:.1f} GiB) but the machine has {total / 2**30:.1f} GiB; "
                "restrict the catalogue or use dtype='float32'")

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.seen_[users] @ self.B_)

    def _item_similarity(self) -> np.ndarray:
        return self.B_
