"""Negative sampling: items a user has not interacted with, drawn in bulk.

`NegativeSampler` is built once from a user x item matrix of positives (every stored nonzero is
a positive) and then draws, for any batch of users, items outside each user's positives:
``uniform`` over the catalogue or by ``popularity ** alpha`` (items of zero weight are never
drawn). Candidates are drawn for the whole batch at once and checked against the positives by a
compiled binary search in each user's sorted CSR row; only rejected slots are redrawn. After a
few rounds, rows that still have rejects (users who have interacted with almost every item) are
finished exactly from their dense complement, so the cost stays bounded.

By default each slot is an independent draw (a row can repeat an item). With
``distinct=True`` the items within a row are all different (the NCF protocol's 99 distinct
negatives): duplicates are redrawn like positives. For popularity sampling the distinct draws
are close to, not exactly, sequential sampling without replacement.
"""

from __future__ import annotations

from typing import Any, Literal

import numba
import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions

Method = Literal["uniform", "popularity"]
_REJECTION_ROUNDS = 16
_DENSE_ELEMENTS = 1 << 22  # rows x items handled at once by the exact fallback
_MIN_ACCEPTANCE = 0.2  # users with a lower chance that a draw is not a positive go exact
_PARALLEL_ELEMENTS = 1 << 16  # smaller blocks are checked on one thread


class NegativeSampler:
    """Draws negatives for users of a fixed positives matrix (sorted CSR rows, weights, CDF)."""

    def __init__(self, positives: Any, method: Method = "uniform",
                 popularity: np.ndarray | None = None, alpha: float = 1.0):
        csr = _as_csr(positives)
        self.n_users, self.n_items = csr.shape
        self.method = method
        self.users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(csr.indptr))
        self.items = csr.indices.astype(np.int64)
        self._indptr = csr.indptr.astype(np.int64)
        #: per-item sampling weights (all ones for uniform sampling)
        self.weights = _item_weights(method, popularity, alpha, self.items, self.n_items)
        self._cdf = None if method == "uniform" else np.cumsum(self.weights) / self.weights.sum()
        #: per user, the number of items with nonzero weight that are not positives
        self.available = self._per_user_free(self.weights > 0).astype(np.int64)
        #: per user, the share of the sampling weight outside their positives
        self.free_share = self._per_user_free(self.weights) / self.weights.sum()

    def __repr__(self) -> str:
        return (f"NegativeSampler({self.n_users} users x {self.n_items} items, "
                f"{len(self.items)} positives, method={self.method!r})")

    # ------------------------------------------------------------------ public API
    def sample(self, users: Any, n: int, rng: np.random.Generator | int,
               distinct: bool = False) -> np.ndarray:
        """A ``(len(users), n)`` int64 array of items each user has no positive for.

        ``rng`` is a `numpy.random.Generator` (advanced in place) or an integer seed. Raises
        ``ValueError`` when a user has fewer than ``n`` (``distinct``) or no eligible items.
        """
        users = self._check_users(users)
        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        n = int(n)
        rng = np.random.default_rng(rng)
        self._check_available(users, n if distinct else 1)
        distinct = distinct and n > 1
        out = self._draw((len(users), n), rng)
        reject = self._rejected(users, out, distinct)
        hard = self._hard(users, n, distinct)
        rows, cols = np.nonzero(reject & ~hard[:, None])
        reject[hard] = True
        for _ in range(_REJECTION_ROUNDS):
            if not len(rows):
                break
            out[rows, cols] = self._draw(len(rows), rng)
            touched = rows[np.r_[True, rows[1:] != rows[:-1]]]  # rows come sorted
            reject[touched] = self._rejected(users[touched], out[touched], distinct)
            sub_rows, cols = np.nonzero(reject[touched])
            rows = touched[sub_rows]
        if reject.any():
            self._finish_exactly(users, out, reject, rng, distinct)
        return out

    def sample_triples(self, rng: np.random.Generator | int, shuffle: bool = True
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, positive items, negative items)``: every positive once (in random order
        with ``shuffle``) with one uniformly or popularity-drawn negative, e.g. a BPR epoch."""
        rng = np.random.default_rng(rng)
        negatives = self.sample(self.users, 1, rng)[:, 0]  # in row order: cache friendly
        if not shuffle:
            return self.users.copy(), self.items.copy(), negatives
        order = rng.permutation(len(self.items))
        return self.users[order], self.items[order], negatives[order]

    def is_positive(self, users: Any, items: Any) -> np.ndarray:
        """Elementwise (broadcasting) whether each (user, item) pair is a positive."""
        users, items = np.broadcast_arrays(np.asarray(users, dtype=np.int64),
                                           np.asarray(items, dtype=np.int64))
        return self._rejected(users.ravel(), items.reshape(-1, 1), False).reshape(users.shape)

    # ------------------------------------------------------------------ internals
    def _draw(self, size: Any, rng: np.random.Generator) -> np.ndarray:
        if self._cdf is None:
            return rng.integers(0, self.n_items, size=size, dtype=np.int64)
        found = np.searchsorted(self._cdf, rng.random(size), side="right")
        return np.minimum(found, self.n_items - 1).astype(np.int64)

    def _rejected(self, users: np.ndarray, block: np.ndarray, distinct: bool) -> np.ndarray:
        kernel = _rejected_parallel if block.size >= _PARALLEL_ELEMENTS else _rejected_serial
        return kernel(self._indptr, self.items, users, block, distinct)

    def _hard(self, users: np.ndarray, n: int, distinct: bool) -> np.ndarray:
        """Rows better filled exactly than by rejection: users whose positives hold most of the
        sampling weight, or (distinct) who have fewer than twice ``n`` eligible items."""
        hard = self.free_share[users] < _MIN_ACCEPTANCE
        if distinct:
            hard |= self.available[users] < 2 * n
        return hard

    def _per_user_free(self, values: np.ndarray) -> np.ndarray:
        """Per user, the sum of the item ``values`` over items that are not their positives."""
        taken = np.bincount(self.users, weights=values[self.items], minlength=self.n_users)
        return values.sum() - taken

    def _check_users(self, users: Any) -> np.ndarray:
        users = np.asarray(users)
        if users.ndim != 1 or (users.size and users.dtype.kind not in "iu"):
            raise ValueError("users must be a 1-d array of user indices")
        users = users.astype(np.int64)
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise IndexError(f"user index out of range for {self.n_users} users")
        return users

    def _check_available(self, users: np.ndarray, need: int) -> None:
        short = self.available[users] < need
        if short.any():
            user = int(users[np.argmax(short)])
            raise ValueError(
                f"user {user} has only {self.available[user]} items that are not positives "
                f"(and have nonzero sampling weight); {need} needed")

    def _finish_exactly(self, users: np.ndarray, out: np.ndarray, reject: np.ndarray,
                        rng: np.random.Generator, distinct: bool) -> None:
        """Fill the remaining rejected slots from each row's exact complement, dense rows in
        blocks: inverse CDF per slot, or Gumbel-top-k for distinct rows."""
        rows = np.flatnonzero(reject.any(axis=1))
        block = max(1, _DENSE_ELEMENTS // self.n_items)
        for lo in range(0, len(rows), block):
            part = rows[lo:lo + block]
            weights = self._complement_weights(users[part], out[part], ~reject[part], distinct)
            slot_rows, slot_cols = np.nonzero(reject[part])
            if distinct:
                with np.errstate(divide="ignore"):
                    keys = np.log(weights) + rng.gumbel(size=weights.shape)
                ranked = np.argsort(-keys, axis=1)
                out[part[slot_rows], slot_cols] = ranked[slot_rows, _rank_in_row(slot_rows)]
            else:
                cdf = np.cumsum(weights, axis=1)
                cdf /= cdf[:, -1:]
                cdf += np.arange(len(part))[:, None]
                found = np.searchsorted(cdf.ravel(), slot_rows + rng.random(len(slot_rows)),
                                        side="right") - slot_rows * self.n_items
                out[part[slot_rows], slot_cols] = np.minimum(found, self.n_items - 1)

    def _complement_weights(self, users: np.ndarray, drawn: np.ndarray, kept: np.ndarray,
                            distinct: bool) -> np.ndarray:
        """Dense ``(len(users), n_items)`` sampling weights with each user's positives (and,
        for distinct rows, the items already kept in the row) set to zero."""
        weights = np.tile(self.weights, (len(users), 1))
        starts, ends = self._indptr[users], self._indptr[users + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        weights[rows, self.items[ranges(starts, lengths)]] = 0
        if distinct:
            kept_rows, kept_cols = np.nonzero(kept)
            weights[kept_rows, drawn[kept_rows, kept_cols]] = 0
        return weights


def sample_negatives(positives: Any, users: Any, n: int, method: Method = "uniform",
                     seed: int = 0, popularity: np.ndarray | None = None, alpha: float = 1.0,
                     distinct: bool = False) -> np.ndarray:
    """``n`` negatives per user (see `NegativeSampler.sample`); ``positives`` is a user x item
    sparse matrix (or `Interactions`), ``popularity`` defaults to the positives per item."""
    sampler = NegativeSampler(positives, method=method, popularity=popularity, alpha=alpha)
    return sampler.sample(users, n, np.random.default_rng(seed), distinct=distinct)


# ---------------------------------------------------------------------- helpers
def _as_csr(positives: Any) -> sp.csr_matrix:
    """The sparsity pattern of ``positives`` as a CSR with sorted, unique indices."""
    if isinstance(positives, Interactions):
        positives = positives.binary_csr
    if not sp.issparse(positives):
        raise TypeError(f"positives must be a scipy sparse matrix or Interactions, "
                        f"got {type(positives).__name__}")
    csr = sp.csr_matrix(positives, dtype=np.float32, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.data = np.ones_like(csr.data)
    csr.sort_indices()
    if csr.shape[1] < 1:
        raise ValueError("positives must have at least one item column")
    return csr


def _item_weights(method: str, popularity: np.ndarray | None, alpha: float,
                  items: np.ndarray, n_items: int) -> np.ndarray:
    """Ones for uniform sampling, else ``popularity ** alpha`` (validated)."""
    if method == "uniform":
        return np.ones(n_items)
    if method != "popularity":
        raise ValueError(f"unknown sampling method {method!r}; valid: uniform, popularity")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite non-negative number, got {alpha}")
    if popularity is None:
        popularity = np.bincount(items, minlength=n_items)
    popularity = np.asarray(popularity, dtype=np.float64)
    if popularity.shape != (n_items,):
        raise ValueError(f"popularity must have one value per item ({n_items}), "
                         f"got shape {popularity.shape}")
    if not np.isfinite(popularity).all() or (popularity < 0).any():
        raise ValueError("popularity must be finite and non-negative")
    weights = popularity ** alpha
    if weights.sum() <= 0:
        raise ValueError("popularity sampling needs at least one item with positive weight")
    return weights


def _rejected_rows(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, block: np.ndarray,
              distinct: bool) -> np.ndarray:
    """Mask of ``block[r, c]`` that are positives of ``users[r]`` (binary search in the CSR
    row) or, with ``distinct``, repeat an earlier entry of the same row."""
    out = np.zeros(block.shape, dtype=np.bool_)
    for r in numba.prange(block.shape[0]):
        row = indices[indptr[users[r]]:indptr[users[r] + 1]]
        for c in range(block.shape[1]):
            pos = np.searchsorted(row, block[r, c])
            out[r, c] = pos < len(row) and row[pos] == block[r, c]
        if distinct:
            order = np.argsort(block[r], kind="mergesort")
            for k in range(1, len(order)):
                if block[r, order[k]] == block[r, order[k - 1]]:
                    out[r, order[k]] = True
    return out


_rejected_parallel = numba.njit(parallel=True, cache=True, nogil=True)(_rejected_rows)
_rejected_serial = numba.njit(cache=True, nogil=True)(_rejected_rows)


def _rank_in_row(rows: np.ndarray) -> np.ndarray:
    """For sorted row labels, each entry's position among the entries of its row."""
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    return np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each start ``s`` and length ``n``."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)
