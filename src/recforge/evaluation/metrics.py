"""Evaluation metrics, vectorised over users (one row per user or per test case).

Ranking metrics read a boolean ``hits`` matrix of shape ``(n, K)``: ``hits[u, j]`` is True
when the item at position ``j + 1`` of user ``u``'s list is relevant (one of the user's test
items). Lists may be shorter than ``K`` (padding never hits). Notation, per user:
``rel_j`` = ``hits[u, j - 1]`` (1-based positions), ``R`` = the number of relevant items,
``g_j`` = the gain at position ``j``.

- ``HR@K = 1 if sum_{j<=K} rel_j > 0 else 0``
- ``Precision@K = sum_{j<=K} rel_j / K`` (always divided by ``K``, even for short lists)
- ``Recall@K = sum_{j<=K} rel_j / R`` (or ``/ min(R, K)`` with ``denominator="min"``)
- ``AP@K = sum_{j<=K} Precision@j * rel_j / min(R, K)``; ``MAP@K`` is its mean over users
- ``DCG@K = sum_{j<=K} g_j / log2(j + 1)``; ``NDCG@K = DCG@K / IDCG@K`` where ``IDCG@K`` is
  the DCG of the user's own test items in the best order. Binary NDCG uses ``g_j = rel_j``;
  graded NDCG uses the test rating as the gain (``g = r``, linear, as LensKit) and its IDCG
  sorts the user's test ratings descending.
- ``RR@K = 1 / (position of the first relevant item)`` if it is within ``K``, else 0;
  ``RR`` without a cutoff uses the rank in the complete ranking (`reciprocal_rank_from_rank`).
- ``AUC = (N - n_greater - n_equal / 2) / N`` per relevant item, where ``N`` is the number of
  negatives (non-relevant candidates), ``n_greater`` those scored above the relevant item and
  ``n_equal`` those tied with it (ties count 1/2); a user's AUC is the mean over their
  relevant items, i.e. the fraction of (relevant, negative) pairs ordered correctly.
- ``RMSE = sqrt(mean_{(u,i) in test} (p_ui - r_ui)^2)``, ``MAE = mean |p_ui - r_ui|``.

Beyond accuracy (``items`` is the ``(n, K)`` matrix of recommended item indices, ``-1`` pad):

- ``Coverage@K = |union of the top-K lists| / n_items`` (one number for all users)
- ``Diversity@K = mean_{a < b <= K} (1 - cos(f_a, f_b))`` over the pairs of a user's list,
  ``f`` the items' feature vectors or embeddings (a zero vector has cosine 0 with any vector)
- ``Novelty@K = mean_{j<=K} -log2(pop_j / n_users)``, ``pop`` the item's number of training
  interactions (clipped below at 1 so unseen items have a finite novelty, log2(n_users))
- ``ARP@K = mean_{j<=K} pop_j`` (average recommended popularity)

Genre metrics read an item x genre multi-hot ``genres``. An item's genre distribution is
``p(g|i) = 1 / |genres(i)|`` for each of its genres (an item without genres has none); the
distribution of a set of items (a list, a user's training history) is the mean of theirs,
renormalised over the items that have genres: ``p(g) = sum_i p(g|i) / sum_g sum_i p(g|i)``.

- ``GenreCoverage@K = |union of genres(i), i in the top K| / n_genres`` per user
- ``GenreEntropy@K = -sum_g q(g) log2 q(g)`` (bits), ``q`` the top-K list's distribution
- ``Miscalibration@K = KL(p || q~) = sum_g p(g) log(p(g) / q~(g))`` (nats; Steck, RecSys 2018),
  ``p`` the distribution of the user's training items, ``q`` the top-K list's, and
  ``q~ = (1 - a) q + a p`` with ``a = 0.01`` so the divergence stays finite; lower is better

Undefined values (no relevant items, fewer than two items for diversity, no negatives for
AUC, an empty list or no genres in the list or history for the genre metrics) are NaN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recforge.errors import InputError, UnknownNameError, did_you_mean

# ---------------------------------------------------------------------- ranking accuracy


def _top(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError("k must be at least 1")
    return np.asarray(hits, dtype=bool)[:, :k]


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64, NaN where ``den`` is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """HR@K: 1 when any of the first ``k`` positions is relevant, else 0."""
    return _top(hits, k).any(axis=1).astype(np.float64)


def precision(hits: np.ndarray, k: int) -> np.ndarray:
    """Precision@K: relevant items among the first ``k`` positions, divided by ``k``."""
    return _top(hits, k).sum(axis=1) / float(k)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int,
           denominator: Literal["relevant", "min"] = "relevant") -> np.ndarray:
    """Recall@K: relevant items in the top ``k`` over ``R`` (or ``min(R, k)`` with ``"min"``)."""
    n_relevant = np.asarray(n_relevant)
    if denominator == "min":
        n_relevant = np.minimum(n_relevant, k)
    elif denominator != "relevant":
        raise ValueError(f"denominator must be 'relevant' or 'min', not {denominator!r}")
    return _divide(_top(hits, k).sum(axis=1), n_relevant)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@K = sum_{j<=K} Precision@j * rel_j / min(R, K)."""
    top = _top(hits, k)
    positions = np.arange(1, top.shape[1] + 1)
    precision_at_j = np.cumsum(top, axis=1) / positions
    return _divide((precision_at_j * top).sum(axis=1), np.minimum(n_relevant, k))


def discounts(k: int) -> np.ndarray:
    """The DCG position discounts ``1 / log2(j + 1)`` for ``j = 1..k``."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def ideal_binary_gains(n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Ideal gains for binary relevance: ones in the first ``min(R, k)`` positions."""
    return (np.arange(k)[None, :] < np.asarray(n_relevant)[:, None]).astype(np.float64)


def ndcg(gains: np.ndarray, ideal_gains: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K = DCG@K / IDCG@K from per-position gains and the ideal (sorted) gains."""
    gains = np.asarray(gains, dtype=np.float64)[:, :k]
    ideal = np.asarray(ideal_gains, dtype=np.float64)[:, :k]
    return _divide(gains @ discounts(gains.shape[1]), ideal @ discounts(ideal.shape[1]))


def reciprocal_rank(hits: np.ndarray, k: int) -> np.ndarray:
    """RR@K: 1 / position of the first relevant item within the top ``k``, 0 if none."""
    top = _top(hits, k)
    first = np.argmax(top, axis=1) + 1
    return np.where(top.any(axis=1), 1.0 / first, 0.0)


def reciprocal_rank_from_rank(ranks: np.ndarray) -> np.ndarray:
    """RR from 1-based ranks in a complete ranking (``inf`` gives 0)."""
    return 1.0 / np.asarray(ranks, dtype=np.float64)


def hits_from_rank(ranks: np.ndarray, k: int) -> np.ndarray:
    """The ``(n, k)`` hits matrix of lists with one relevant item at 1-based ``ranks``."""
    return np.arange(1, k + 1)[None, :] == np.asarray(ranks)[:, None]


def auc_from_counts(n_greater: np.ndarray, n_equal: np.ndarray,
                    n_negatives: np.ndarray) -> np.ndarray:
    """AUC of one relevant item: (N - n_greater - n_equal / 2) / N (NaN when N = 0)."""
    n_negatives = np.asarray(n_negatives, dtype=np.float64)
    return _divide(n_negatives - n_greater - 0.5 * np.asarray(n_equal), n_negatives)


# ---------------------------------------------------------------------- rating accuracy


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """RMSE over all (user, item) pairs."""
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.sqrt(np.mean(err**2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """MAE over all (user, item) pairs."""
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.mean(np.abs(err)))


def group_mean(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of ``values`` per group index (NaN for empty groups)."""
    sums = np.bincount(groups, weights=values, minlength=n_groups)
    return _divide(sums, np.bincount(groups, minlength=n_groups))


def user_rmse(predicted: np.ndarray, actual: np.ndarray, users: np.ndarray,
              n_users: int) -> np.ndarray:
    """Per-user RMSE: sqrt of the mean squared error of each user's pairs."""
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return np.sqrt(group_mean(err**2, users, n_users))


def user_mae(predicted: np.ndarray, actual: np.ndarray, users: np.ndarray,
             n_users: int) -> np.ndarray:
    """Per-user MAE: the mean absolute error of each user's pairs."""
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return group_mean(np.abs(err), users, n_users)


# ---------------------------------------------------------------------- beyond accuracy


def _valid_top(items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` columns of ``items`` with padding replaced by 0, and the valid mask."""
    if k < 1:
        raise ValueError("k must be at least 1")
    top = np.asarray(items, dtype=np.int64)[:, :k]
    valid = top >= 0
    return np.where(valid, top, 0), valid


def recommended_mask(items: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """Boolean mask over the catalogue: True for items in at least one top-``k`` list."""
    top, valid = _valid_top(items, k)
    mask = np.zeros(n_items, dtype=bool)
    mask[top[valid]] = True
    return mask


def catalog_coverage(items: np.ndarray, n_items: int, k: int) -> float:
    """Coverage@K: the fraction of the ``n_items`` catalogue in at least one top-``k`` list."""
    return float(recommended_mask(items, n_items, k).mean())


def unit_rows(features: np.ndarray | sp.spmatrix, items: np.ndarray) -> np.ndarray:
    """Dense L2-normalised feature rows of ``items`` (zero rows stay zero)."""
    rows = features[items]
    rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows, dtype=np.float64), where=norms > 0)


def intra_list_diversity(items: np.ndarray, features: np.ndarray | sp.spmatrix,
                         k: int) -> np.ndarray:
    """Diversity@K: mean ``1 - cosine`` over the pairs of each user's top-``k`` items."""
    top, valid = _valid_top(items, k)
    n, width = top.shape
    unit = unit_rows(features, top.ravel()).reshape(n, width, -1)
    distance = 1.0 - np.einsum("nkd,nld->nkl", unit, unit)
    pair = valid[:, :, None] & valid[:, None, :] & np.triu(np.ones((width, width), bool), 1)
    return _divide((distance * pair).sum(axis=(1, 2)), pair.sum(axis=(1, 2)))


def novelty(items: np.ndarray, popularity: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Novelty@K: mean self-information ``-log2(pop / n_users)`` of the top-``k`` items."""
    top, valid = _valid_top(items, k)
    info = -np.log2(np.maximum(np.asarray(popularity, dtype=np.float64), 1.0) / n_users)
    return _divide((info[top] * valid).sum(axis=1), valid.sum(axis=1))


def average_popularity(items: np.ndarray, popularity: np.ndarray, k: int) -> np.ndarray:
    """ARP@K: mean training popularity of the top-``k`` items."""
    top, valid = _valid_top(items, k)
    pop = np.asarray(popularity, dtype=np.float64)
    return _divide((pop[top] * valid).sum(axis=1), valid.sum(axis=1))


def list_matrix(items: np.ndarray, n_items: int, k: int) -> sp.csr_matrix:
    """The top-``k`` lists as an ``(n, n_items)`` sparse matrix counting each listed item."""
    top, valid = _valid_top(items, k)
    rows = np.broadcast_to(np.arange(len(top))[:, None], top.shape)
    return sp.csr_matrix((np.ones(int(valid.sum())), (rows[valid], top[valid])),
                         shape=(len(top), n_items))


def genre_indicator(genres: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """The item x genre matrix as 0/1 floats (any non-zero entry is membership)."""
    indicator = sp.csr_matrix(genres, dtype=np.float64, copy=True)
    indicator.eliminate_zeros()
    indicator.data[:] = 1.0
    return indicator


def genre_distribution(counts: sp.spmatrix | np.ndarray,
                       genres: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Each row's genre distribution ``(n, n_genres)`` from item ``counts`` ``(n, n_items)``
    (a list or a history): items weigh ``1 / |genres(i)|`` per genre; NaN rows have none."""
    genres = genre_indicator(genres)
    per_item = _divide(1.0, np.asarray(genres.sum(axis=1)).ravel())
    shares = sp.diags(np.nan_to_num(per_item)) @ genres
    mass = np.asarray((sp.csr_matrix(counts) @ shares).todense())
    return _divide(mass, mass.sum(axis=1, keepdims=True))


def genre_coverage(items: np.ndarray, genres: sp.spmatrix | np.ndarray, k: int) -> np.ndarray:
    """GenreCoverage@K: distinct genres of each top-``k`` list over all genres (NaN: empty)."""
    listed = list_matrix(items, genres.shape[0], k)
    present = np.asarray(((listed @ genre_indicator(genres)) != 0).sum(axis=1)).ravel()
    return np.where(listed.getnnz(axis=1) > 0, present / genres.shape[1], np.nan)


def genre_entropy(items: np.ndarray, genres: sp.spmatrix | np.ndarray, k: int) -> np.ndarray:
    """GenreEntropy@K: Shannon entropy in bits of each top-``k`` list's genre distribution."""
    q = genre_distribution(list_matrix(items, genres.shape[0], k), genres)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, -q * np.log2(q), 0.0)
    return np.where(np.isnan(q[:, 0]), np.nan, terms.sum(axis=1))


def miscalibration(items: np.ndarray, genres: sp.spmatrix | np.ndarray,
                   history: sp.spmatrix | np.ndarray, k: int, alpha: float = 0.01) -> np.ndarray:
    """Miscalibration@K (Steck 2018): ``KL(p || (1 - alpha) q + alpha p)`` in nats, ``p`` the
    genre distribution of ``history`` (one row of training items per list) and ``q`` that of
    the top-``k`` list."""
    p = genre_distribution(history, genres)
    q = genre_distribution(list_matrix(items, genres.shape[0], k), genres)
    smoothed = (1.0 - alpha) * q + alpha * p
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / smoothed), 0.0)
    undefined = np.isnan(p[:, 0]) | np.isnan(q[:, 0])
    return np.where(undefined, np.nan, terms.sum(axis=1))


# ---------------------------------------------------------------------- metric names

#: kind -> (display name, cutoff: "required" | "optional" | "none", family)
METRICS: dict[str, tuple[str, str, str]] = {
    "hr": ("HR", "required", "ranking"),
    "precision": ("Precision", "required", "ranking"),
    "recall": ("Recall", "required", "ranking"),
    "map": ("MAP", "required", "ranking"),
    "ndcg": ("NDCG", "required", "ranking"),
    "ndcg-graded": ("NDCG-graded", "required", "ranking"),
    "mrr": ("MRR", "optional", "ranking"),
    "auc": ("AUC", "none", "ranking"),
    "rmse": ("RMSE", "none", "rating"),
    "mae": ("MAE", "none", "rating"),
    "coverage": ("Coverage", "required", "beyond"),
    "diversity": ("Diversity", "required", "beyond"),
    "novelty": ("Novelty", "required", "beyond"),
    "arp": ("ARP", "required", "beyond"),
    "genre-coverage": ("GenreCoverage", "required", "beyond"),
    "genre-entropy": ("GenreEntropy", "required", "beyond"),
    "miscalibration": ("Miscalibration", "required", "beyond"),
}

#: beyond-accuracy metric kinds that read the items' genres (the multi-hot ``genres`` column)
GENRE_METRICS = frozenset({"genre-coverage", "genre-entropy", "miscalibration"})

#: metric kinds where lower is better (every other metric: higher is better)
LOWER_IS_BETTER = frozenset({"rmse", "mae", "miscalibration"})

#: metric kinds that compare predicted with true ratings (only rating models can be asked)
RATING_METRICS = frozenset(kind for kind, (_, _, family) in METRICS.items()
                           if family == "rating")

#: the largest cutoff accepted; any cutoff beyond the catalogue ranks the whole catalogue
MAX_CUTOFF = 10**15


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: ``kind`` (a key of `METRICS`), cutoff ``k`` and display ``name``."""

    kind: str
    k: int | None
    name: str

    @property
    def family(self) -> str:
        """``ranking``, ``rating`` or ``beyond`` (beyond-accuracy)."""
        return METRICS[self.kind][2]

    @property
    def lower_is_better(self) -> bool:
        """Whether a lower value is better (`LOWER_IS_BETTER`)."""
        return self.kind in LOWER_IS_BETTER


def valid_metric_names() -> list[str]:
    """Example spellings of every metric, as accepted by `parse_metric`."""
    return [f"{kind}@K" if cut == "required" else (f"{kind}[@K]" if cut == "optional" else kind)
            for kind, (_, cut, _) in METRICS.items()]


def parse_metric(name: str) -> MetricSpec:
    """Parse a case-insensitive metric name (``"ndcg@10"``) into its canonical `MetricSpec`.

    A cutoff larger than the catalogue is allowed (it ranks the whole catalogue); one below 1,
    above `MAX_CUTOFF` or not a whole number is refused."""
    kind, at, cutoff = (part.strip() for part in str(name).lower().partition("@"))
    if kind not in METRICS:
        raise UnknownNameError(f"unknown metric {name!r}{did_you_mean(kind, METRICS)}; valid: "
                               f"{', '.join(valid_metric_names())}")
    display, need, _ = METRICS[kind]
    k = _cutoff(name, kind, cutoff) if at else None
    _check_cutoff(name, kind, need, k)
    return MetricSpec(kind, k, display if k is None else f"{display}@{k}")


def _cutoff(name: str, kind: str, text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,16}", text):
        raise InputError(f"metric {name!r}: the cutoff must be a whole number from 1 to "
                         f"{MAX_CUTOFF:,}, e.g. {kind}@10")
    return int(text)


def _check_cutoff(name: str, kind: str, need: str, k: int | None) -> None:
    if k is None and need == "required":
        raise InputError(f"metric {name!r} needs a cutoff, e.g. {kind}@10")
    if k is not None and need == "none":
        raise InputError(f"metric {name!r} takes no cutoff; use {kind!r}")
    if k is not None and not 1 <= k <= MAX_CUTOFF:
        raise InputError(f"metric {name!r}: the cutoff must be from 1 to {MAX_CUTOFF:,}")
