"""Blocked pairwise similarities over sparse matrices, for neighbourhood models.

The rows of the input matrix are the entities compared (items for item-kNN, users for
user-kNN); its columns are their features (the other side). Pair statistics are accumulated
a block of rows at a time by a row-wise sparse product (Gustavson's algorithm, compiled with
numba) into dense ``(block, n)`` arrays, turned into similarities, shrunk, and pruned to each
row's best ``k`` neighbours with `recforge.topk`, so memory is bounded by one block plus the
kept neighbours, never the whole ``n x n`` matrix.

Definitions, for rows ``x`` and ``y``; ``C`` is the set of columns both have (their
"co-rated" columns) and ``n = |C|``:

- cosine (vectors): ``x.y / (|x| |y|)`` over the full vectors (implicit feedback); with
  ``alpha`` other than 0.5 the asymmetric cosine ``x.y / (|x|^(2 alpha) |y|^(2 (1 - alpha)))``
  of Aiolli 2013 ("Efficient top-N recommendation for very large scale binary rated
  datasets"), ``x`` the row whose neighbours are listed, ``y`` the neighbour (on binary rows
  ``alpha = 1`` gives ``|x & y| / |x| = P(y | x)``, ``alpha = 0`` gives ``P(x | y)``)
- Jaccard: ``n / (|supp x| + |supp y| - n)`` (binary sets)
- dot: ``x.y``
- cosine (co-rated): ``sum_C xy / sqrt(sum_C x^2 * sum_C y^2)`` (Surprise's "cosine"; applied
  to baseline residuals it is Surprise's "pearson_baseline" (Koren 2010), to ratings centred
  by the user mean the adjusted cosine of Sarwar et al. 2001)
- Pearson: the correlation of ``x`` and ``y`` over ``C``, each centred by its mean over ``C``
  (Surprise's "pearson")
- MSD: ``1 / (1 + sum_C (x - y)^2 / n)`` (Shardanand & Maes 1995; Surprise's "msd")

Shrinkage (Koren 2008, "Factorization meets the neighborhood", eq. 2): ``sim * n / (n +
shrinkage)``. Pairs with fewer than ``min_support`` common columns get similarity 0. An
entity is never its own neighbour, and only positive similarities are kept: neighbourhood
predictions (Surprise's KNN* algorithms, item-based top-N) never use the others.

Weighting of the binary matrix treats rows as documents and columns as terms: TF-IDF
(Salton & Buckley 1988) and Okapi BM25 (Robertson et al. 1994, with Lucene's positive idf).
"""

from __future__ import annotations

from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp

from recforge.params import CUTOFF
from recforge.topk import top_k

VectorMeasure = Literal["cosine", "jaccard", "dot"]
CoratedMeasure = Literal["cosine", "pearson", "msd"]
Weighting = Literal["none", "tfidf", "bm25"]

#: bytes of dense statistics one block may hold (the block height follows from it)
BLOCK_BYTES = 1 << 27
_Entries = tuple[np.ndarray, np.ndarray, np.ndarray]  # (rows, columns, values)
_N_CORATED_STATS = 6  # count, sum xy, sum x^2, sum y^2, sum x, sum y (over common columns)


# ---------------------------------------------------------------------- weighting
def _document_frequency(matrix: sp.csr_matrix) -> np.ndarray:
    return np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)


def tfidf_weight(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """TF-IDF: ``w_dt = x_dt * log(N / df_t)``, rows ``d`` documents, columns ``t`` terms."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    df = _document_frequency(matrix)
    idf = np.log(matrix.shape[0] / np.maximum(df, 1.0))
    matrix.data *= idf[matrix.indices].astype(np.float32)
    matrix.eliminate_zeros()
    return matrix


def bm25_weight(matrix: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """Okapi BM25: ``w_dt = idf_t * x (k1 + 1) / (x + k1 (1 - b + b len_d / avg_len))``.

    ``len_d`` is the row sum and ``idf_t = log(1 + (N - df_t + 0.5) / (df_t + 0.5))``.
    """
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    n_docs = matrix.shape[0]
    df = _document_frequency(matrix)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    length = np.asarray(matrix.sum(axis=1)).ravel()
    norm = 1.0 - b + b * length / max(float(length.mean()), 1e-12)
    rows = np.repeat(np.arange(n_docs), np.diff(matrix.indptr))
    x = matrix.data.astype(np.float64)
    matrix.data = (idf[matrix.indices] * x * (k1 + 1.0) / (x + k1 * norm[rows])).astype(np.float32)
    return matrix


def apply_weighting(matrix: sp.csr_matrix, weighting: Weighting, k1: float = 1.2,
                    b: float = 0.75) -> sp.csr_matrix:
    """``matrix`` weighted by ``weighting`` ("none" returns it as float32)."""
    if weighting == "none":
        return sp.csr_matrix(matrix, dtype=np.float32)
    if weighting == "tfidf":
        return tfidf_weight(matrix)
    if weighting == "bm25":
        return bm25_weight(matrix, k1, b)
    raise ValueError(f"unknown weighting {weighting!r}; valid: none, tfidf, bm25")


# ---------------------------------------------------------------------- numba kernels
@numba.njit(parallel=True, cache=True, nogil=True)
def _dot_block(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
               t_indptr: np.ndarray, t_indices: np.ndarray, t_data: np.ndarray,
               lo: int, out: np.ndarray) -> None:
    """``out[r, e] += sum_f A[lo + r, f] * A[e, f]``; ``t_*`` is ``A`` transposed (CSR)."""
    for r in numba.prange(out.shape[0]):
        row = lo + r
        for p in range(indptr[row], indptr[row + 1]):
            f = indices[p]
            x = data[p]
            for q in range(t_indptr[f], t_indptr[f + 1]):
                out[r, t_indices[q]] += x * t_data[q]


@numba.njit(parallel=True, cache=True, nogil=True)
def _corated_block(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                   t_indptr: np.ndarray, t_indices: np.ndarray, t_data: np.ndarray,
                   lo: int, out: np.ndarray) -> None:
    """Statistics over the common columns of row ``lo + r`` and every row ``e``:
    ``out[:, r, e] = (n, sum xy, sum x^2, sum y^2, sum x, sum y)``."""
    for r in numba.prange(out.shape[1]):
        row = lo + r
        for p in range(indptr[row], indptr[row + 1]):
            f = indices[p]
            x = data[p]
            for q in range(t_indptr[f], t_indptr[f + 1]):
                e = t_indices[q]
                y = t_data[q]
                out[0, r, e] += 1.0
                out[1, r, e] += x * y
                out[2, r, e] += x * x
                out[3, r, e] += y * y
                out[4, r, e] += x
                out[5, r, e] += y


def _block_rows(n: int, bytes_per_row: int) -> int:
    return int(max(1, min(n, BLOCK_BYTES // max(1, bytes_per_row))))


def _kernel_args(matrix: sp.csr_matrix) -> tuple[np.ndarray, ...]:
    transposed = matrix.T.tocsr()
    return (matrix.indptr, matrix.indices, matrix.data,
            transposed.indptr, transposed.indices, transposed.data)


# ---------------------------------------------------------------------- similarity formulas
def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _corated_formula(stats: np.ndarray, measure: CoratedMeasure) -> np.ndarray:
    n, sxy, sxx, syy, sx, sy = stats
    if measure == "cosine":
        return _safe_divide(sxy, np.sqrt(sxx * syy))
    if measure == "pearson":
        den = np.sqrt(np.maximum(n * sxx - sx * sx, 0.0) * np.maximum(n * syy - sy * sy, 0.0))
        return _safe_divide(n * sxy - sx * sy, den)
    if measure == "msd":
        msd = _safe_divide(sxx + syy - 2.0 * sxy, n)
        return np.where(n > 0, 1.0 / (1.0 + msd), 0.0)
    raise ValueError(f"unknown co-rated measure {measure!r}; valid: cosine, pearson, msd")


def _shrink(sim: np.ndarray, n_common: np.ndarray, shrinkage: float, min_support: int) -> None:
    """In place: ``sim *= n / (n + shrinkage)``; 0 where ``n < min_support``."""
    if shrinkage > 0:
        sim *= n_common / (n_common + shrinkage)
    if min_support > 1:
        sim[n_common < min_support] = 0.0


def _prune_block(sim: np.ndarray, lo: int, k: int | None) -> _Entries:
    """The positive entries of a dense block (the best ``k`` per row), self-pairs removed."""
    rows_in_block = np.arange(sim.shape[0])
    sim[rows_in_block, lo + rows_in_block] = 0.0
    if k is None:
        r, c = np.nonzero(sim > 0)
        v = sim[r, c]
    else:
        idx, val = top_k(sim, k)
        keep = val > 0
        r = np.nonzero(keep)[0]
        c, v = idx[keep], val[keep]
    return r + lo, c, v.astype(np.float32)


def _assemble(pieces: list[_Entries], n: int) -> sp.csr_matrix:
    rows, cols, vals = (np.concatenate(part) for part in zip(*pieces))
    out = sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)
    out.sort_indices()
    return out


def _check_k(k: int | None) -> None:
    if k is not None and k < 1:
        raise ValueError("k must be at least 1 (or None to keep every neighbour)")


# ---------------------------------------------------------------------- public API
def vector_similarity(matrix: sp.csr_matrix, measure: VectorMeasure = "cosine",
                      k: int | None = None, shrinkage: float = 0.0,
                      min_support: int = 1, alpha: float = 0.5) -> sp.csr_matrix:
    """Row-row similarities of ``matrix`` (full-vector cosine, Jaccard or dot product).

    Returns an ``(n, n)`` CSR holding, per row, its best ``k`` positive neighbours (all
    positive ones when ``k`` is None). Jaccard ignores the values (it compares supports).
    ``n`` for shrinkage and ``min_support`` is the number of common columns. ``alpha``
    (cosine only, in ``[0, 1]``) makes the cosine asymmetric (module docstring); row ``r`` of
    the result is then ``sim(x_r, y)`` over neighbours ``y``.
    """
    _check_k(k)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    if alpha != 0.5 and measure != "cosine":
        raise ValueError("alpha (asymmetric cosine) applies to similarity 'cosine' only")
    if measure not in ("cosine", "jaccard", "dot"):
        raise ValueError(f"unknown similarity {measure!r}; valid: cosine, jaccard, dot")
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    binary = matrix.copy()
    binary.data = np.ones_like(binary.data)
    values = binary if measure == "jaccard" or np.all(matrix.data == 1.0) else matrix
    counts_needed = measure == "jaccard" or shrinkage > 0 or min_support > 1
    n = matrix.shape[0]
    args = _kernel_args(values)
    count_args = _kernel_args(binary) if counts_needed and values is not binary else None
    norms = np.sqrt(np.asarray(values.multiply(values).sum(axis=1)).ravel()).astype(np.float32)
    support = np.diff(binary.indptr).astype(np.float32)
    step = _block_rows(n, n * 4 * (2 if counts_needed else 1))
    pieces = []
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        sim = np.zeros((hi - lo, n), dtype=np.float32)
        _dot_block(*args, lo, sim)
        common = None
        if count_args is not None:
            common = np.zeros((hi - lo, n), dtype=np.float32)
            _dot_block(*count_args, lo, common)
        elif counts_needed:
            common = sim.copy()
        _vector_formula(sim, common, measure, norms, support, lo, alpha)
        if common is not None:
            _shrink(sim, common, shrinkage, min_support)
        pieces.append(_prune_block(sim, lo, k))
    return _assemble(pieces, n)


def _vector_formula(dots: np.ndarray, common: np.ndarray | None, measure: VectorMeasure,
                    norms: np.ndarray, support: np.ndarray, lo: int,
                    alpha: float = 0.5) -> None:
    """In place: the dot products of rows ``lo..lo+len(dots)`` with every row -> ``measure``."""
    hi = lo + len(dots)
    if measure == "cosine":
        inverse = np.zeros_like(norms)
        np.divide(1.0, norms, out=inverse, where=norms > 0)
        if alpha == 0.5:
            dots *= inverse[lo:hi, None]
            dots *= inverse[None, :]
        else:  # |x|^(2 alpha) |y|^(2 (1 - alpha)); 0 ** 0 = 1 only matters for empty rows
            dots *= (inverse[lo:hi, None] ** np.float32(2.0 * alpha))
            dots *= (inverse[None, :] ** np.float32(2.0 * (1.0 - alpha)))
    elif measure == "jaccard":
        union = support[lo:hi, None] + support[None, :] - common
        np.divide(dots, union, out=dots, where=union > 0)


def corated_similarity(matrix: sp.csr_matrix, measure: CoratedMeasure = "pearson",
                       k: int | None = None, shrinkage: float = 0.0,
                       min_support: int = 1) -> sp.csr_matrix:
    """Row-row similarities over common columns (explicit ratings: cosine, Pearson, MSD).

    Stored entries of ``matrix`` are the observed values (a stored 0 is an observed 0).
    Returns an ``(n, n)`` CSR of each row's best ``k`` positive neighbours (all when None).
    """
    _check_k(k)
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    n = matrix.shape[0]
    args = _kernel_args(matrix)
    step = _block_rows(n, n * 8 * _N_CORATED_STATS)
    pieces = []
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        stats = np.zeros((_N_CORATED_STATS, hi - lo, n), dtype=np.float64)
        _corated_block(*args, lo, stats)
        sim = _corated_formula(stats, measure)
        _shrink(sim, stats[0], shrinkage, min_support)
        pieces.append(_prune_block(sim.astype(np.float32), lo, k))
    return _assemble(pieces, n)


def gram_matrix(matrix: sp.csr_matrix, dtype: type = np.float64) -> np.ndarray:
    """Dense ``matrix.T @ matrix`` (columns x columns), accumulated a block at a time."""
    columns = sp.csr_matrix(matrix.T, dtype=dtype)
    n = columns.shape[0]
    gram = np.zeros((n, n), dtype=dtype)
    args = _kernel_args(columns)
    step = _block_rows(n, n * np.dtype(dtype).itemsize)
    for lo in range(0, n, step):
        _dot_block(*args, lo, gram[lo:lo + step])
    return gram


def most_similar(similarity: np.ndarray | sp.spmatrix, items: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest entries of rows ``items`` of a similarity matrix, itself excluded.

    Unstored entries of a sparse matrix are not neighbours; rows with fewer than ``k``
    neighbours are padded with index ``-1`` and score ``-inf``.
    """
    n = similarity.shape[0]
    items = np.atleast_1d(np.asarray(items, dtype=np.int64))
    if items.size and (items.min() < 0 or items.max() >= n):
        raise IndexError("item index out of range")
    if sp.issparse(similarity):
        sub = sp.csr_matrix(similarity)[items]
        rows = np.full(sub.shape, -np.inf, dtype=np.float32)
        rows[np.repeat(np.arange(len(items)), np.diff(sub.indptr)), sub.indices] = sub.data
    else:
        rows = np.array(similarity[items], dtype=np.float32)
    rows[np.arange(len(items)), items] = -np.inf
    idx, val = top_k(rows, min(k, max(n - 1, 1)))
    return np.where(np.isfinite(val), idx, -1), val


class ItemSimilarityMixin:
    """`similar_items` from a learned item-item matrix rather than from item vectors."""

    def _item_similarity(self) -> np.ndarray | sp.spmatrix:
        return self.similarity_  # type: ignore[attr-defined]

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items with the highest learned similarity to each of ``items`` (itself
        excluded; padded with ``-1``/``-inf`` where an item has fewer neighbours)."""
        self.check_fitted()  # type: ignore[attr-defined]
        return most_similar(self._item_similarity(), items, CUTOFF.check("k", k))
