"""EASE: Embarrassingly Shallow Autoencoder (Steck, "Embarrassingly Shallow Autoencoders for
Sparse Data", WWW 2019).

A closed-form item-item model on the binary matrix ``X``::

    P = (X^T X + lambda I)^-1,    B = I - P / diag(P)  (i.e. B_ij = -P_ij / P_jj, B_jj = 0)

and ``score(u) = X[u] @ B``. ``B`` is the minimiser of ``|X - X B|_F^2 + lambda |B|_F^2`` under
``diag(B) = 0``.

Two documented variants (the default uses the weighting, see `EASE`):

- ``dropout`` ``p`` (EDLAE, Steck, "Autoencoders that don't overfit towards the identity",
  NeurIPS 2020, full-rank emphasised denoising): the regulariser becomes
  ``Lambda = lambda I + p / (1 - p) diagMat(diag(X^T X))``, i.e. each item is regularised in
  proportion to its popularity, with the same zero-diagonal closed form.
- ``weight_exponent`` ``beta``: the model is fitted on the column-weighted matrix
  ``Xw = X diagMat(w)`` with ``w_j = max(n_j, 1) ** -beta`` (``n_j`` the item's training
  count), which is both input and target, and scores are ``Xw[u] @ B``: an IDF-like weighting
  that lowers the weight of popular items in the loss, the inputs and the scores (the same idea
  as the TF-IDF / BM25 weighting of the neighbourhood models). ``Xw^T Xw`` is
  ``w_i w_j (X^T X)_ij``, so ``lambda`` is on a smaller scale than without weighting.

Cost and limits: the Gram matrix and its inverse are dense ``n_items x n_items``: memory
``n_items^2 * itemsize`` (50,000 items: 10 GB in float32, 20 GB in float64) and time
``O(n_items^3)`` (a Cholesky factorisation and inverse, done in place by LAPACK). `fit`
refuses a catalogue whose matrix would not fit in the machine's physical memory; restrict
the catalogue (e.g. to the most popular items) for larger data.
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.memory import check_memory, ease_need
from recforge.models.base import Recommender
from recforge.models.neighbours.similarity import ItemSimilarityMixin, gram_matrix
from recforge.models.registry import register
from recforge.params import DROPOUT, POSITIVE_PENALTY, Choice, Real, Rule

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
    and time). `similar_items` reads the rows of ``B``. The defaults (``weight_exponent=0.3``,
    ``reg=30``, no dropout) were chosen by sampled-99 HR@10 on leave-last-out validation
    splits carved from the training data only (the last and second-to-last training
    interaction of each user, negatives seeds 0-2) of ML-100K and of the implicit synthetic
    set (benchmarks/bench_knn_ease.py validate): the weighted model beat the best unweighted
    one (reg 300-500) on both, by about 0.006 (ML-100K) and 0.02 (synthetic) HR@10; EDLAE
    dropout did not add to it. ``weight_exponent=0, reg=500`` is the plain EASE chosen before.

    ``dropout`` (in ``[0, 1)``) adds the EDLAE regulariser ``p / (1 - p) n_j`` to item ``j``;
    ``weight_exponent`` (``>= 0``) fits on ``X diagMat(n_j ** -weight_exponent)`` (module
    docstring).

    Paper: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.
    Hyperparameters (defaults): ``reg=30.0``, ``dtype='float64'``, ``dropout=0.0``,
        ``weight_exponent=0.3``.
    Defaults: chosen as described above.
    Consumes: interactions.
    """

    param_rules: ClassVar[dict[str, Rule]] = {
        "reg": POSITIVE_PENALTY, "dtype": Choice("float32", "float64"), "dropout": DROPOUT,
        "weight_exponent": Real(0),
    }

    def __init__(self, reg: float = 30.0, dtype: Literal["float32", "float64"] = "float64",
                 dropout: float = 0.0, weight_exponent: float = 0.3):
        self.reg = reg
        self.dtype = dtype
        self.dropout = dropout
        self.weight_exponent = weight_exponent

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        dtype = np.dtype(self.dtype)
        self._check_memory(dtype)
        self.item_weights_ = None
        matrix = self.seen_
        if self.weight_exponent > 0:
            counts = np.maximum(np.asarray(self.seen_.sum(axis=0)).ravel(), 1.0)
            self.item_weights_ = (counts ** -float(self.weight_exponent)).astype(np.float32)
            matrix = self.seen_ @ sp.diags(self.item_weights_.astype(np.float64))
            matrix = sp.csr_matrix(matrix)
        gram = gram_matrix(matrix, dtype=dtype)
        diagonal = np.diag(gram).copy()
        gram[np.diag_indices_from(gram)] += dtype.type(self.reg)
        if self.dropout > 0:
            gram[np.diag_indices_from(gram)] += (
                self.dropout / (1.0 - self.dropout) * diagonal).astype(dtype)
        weights = _inverse_spd(gram)
        weights /= -np.diag(weights).copy()[None, :]
        weights[np.diag_indices_from(weights)] = 0.0
        self.B_ = weights.astype(np.float32, copy=False)

    def _check_memory(self, dtype: np.dtype) -> None:
        """`recforge.memory.check_memory` (available memory, the configured limit and the
        machine's physical memory) for the dense item x item matrices."""
        check_memory("EASE", ease_need(self.n_items_, dtype.itemsize, _SYMMETRISE_ROWS),
                     "restrict the catalogue (e.g. to the most popular items), use "
                     "dtype='float32' or a sparse approximation (item-knn-implicit)",
                     limit=_physical_memory())

    def _score(self, users: np.ndarray) -> np.ndarray:
        rows = self.seen_[users]
        if self.item_weights_ is not None:
            rows = sp.csr_matrix(rows.multiply(self.item_weights_[None, :]))
        return np.asarray(rows @ self.B_)

    def _item_similarity(self) -> np.ndarray:
        return self.B_
