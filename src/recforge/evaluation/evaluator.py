"""`Evaluator`: score every test user in vectorised batches and collect per-user metrics.

Users in the test data with no training interactions are evaluated too (the model's cold
fallback applies) and flagged in `EvaluationResult.cold`. Novelty uses ``n_users`` = the
number of users with training interactions and ``pop`` = training interactions per item.
RMSE and MAE come from ``model.predict(test.users, test.items)`` against the test ratings
and are aggregated over test interactions (RMSE = sqrt of the mean squared error over all
test interactions), which weights each user by their number of test ratings.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.features import SideTable
from recforge.data.interactions import Interactions
from recforge.errors import InputError
from recforge.evaluation import metrics as m
from recforge.evaluation.metrics import MetricSpec, parse_metric
from recforge.evaluation.protocols import Protocol, RankedCases, TieRule, make_protocol
from recforge.evaluation.stats import bootstrap_ci, paired_tests
from recforge.models.base import Recommender

#: scores per block when ``batch_size`` is automatic (32M float32 = 128 MB; larger blocks
#: measured slower on 2 cores: fresh pages cost more than the saved per-batch overhead)
BLOCK_FLOATS = 32_000_000
DEFAULT_BUCKETS = (0, 1, 5, 20, 50, np.inf)
#: metrics aggregated as a root mean square of their per-user values
_ROOT_MEAN_SQUARE = frozenset({"RMSE"})


@dataclass
class _Context:
    """What per-case metric functions need beyond the ranked cases."""

    features: np.ndarray | sp.spmatrix | None
    popularity: np.ndarray
    n_active_users: int
    genres: sp.csr_matrix | None = None  # item x genre multi-hot (genre metrics)
    history: sp.csr_matrix | None = None  # training items of the evaluated users, in order


CaseMetric = Callable[[RankedCases, MetricSpec, _Context], np.ndarray]

_CASE_METRICS: dict[str, CaseMetric] = {
    "hr": lambda c, s, x: m.hit_rate(c.hits, s.k),
    "precision": lambda c, s, x: m.precision(c.hits, s.k),
    "recall": lambda c, s, x: m.recall(c.hits, c.n_relevant, s.k),
    "map": lambda c, s, x: m.average_precision(c.hits, c.n_relevant, s.k),
    "ndcg": lambda c, s, x: m.ndcg(c.hits, m.ideal_binary_gains(c.n_relevant, c.hits.shape[1]),
                                   s.k),
    "ndcg-graded": lambda c, s, x: m.ndcg(c.gains, c.ideal, s.k),
    "mrr": lambda c, s, x: (m.reciprocal_rank_from_rank(c.rank) if s.k is None
                            else m.reciprocal_rank(c.hits, s.k)),
    "auc": lambda c, s, x: c.auc,
    "diversity": lambda c, s, x: m.intra_list_diversity(c.items, x.features, s.k),
    "novelty": lambda c, s, x: m.novelty(c.items, x.popularity, x.n_active_users, s.k),
    "arp": lambda c, s, x: m.average_popularity(c.items, x.popularity, s.k),
    "genre-coverage": lambda c, s, x: m.genre_coverage(c.items, x.genres, s.k),
    "genre-entropy": lambda c, s, x: m.genre_entropy(c.items, x.genres, s.k),
    "miscalibration": lambda c, s, x: m.miscalibration(c.items, x.genres, x.history[c.user_pos],
                                                       s.k),
}


@dataclass
class EvaluationResult:
    """Per-user metric values of one evaluation, with means, intervals, tests and slices.

    ``per_user[name][j]`` is the value for user ``users[j]`` (NaN where undefined; NaNs are
    left out of means). ``weights`` gives per-user weights for metrics averaged over
    interactions (RMSE/MAE: the user's number of test ratings). ``errors`` holds the
    per-interaction ``user``, ``item``, ``squared`` and ``absolute`` rating errors.
    ``global_metrics`` holds metrics with no per-user value (Coverage@K).
    """

    users: np.ndarray
    cold: np.ndarray
    per_user: dict[str, np.ndarray]
    names: list[str]
    protocol: str
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    global_metrics: dict[str, float] = field(default_factory=dict)
    errors: dict[str, np.ndarray] | None = None
    eval_seconds: float = 0.0

    def _aggregate(self, name: str, mask: np.ndarray | slice = slice(None)) -> float:
        values = self.per_user[name][mask]
        weights = self.weights.get(name, np.ones(len(self.users)))[mask]
        keep = ~np.isnan(values)
        if not keep.any():
            return float("nan")
        if name in _ROOT_MEAN_SQUARE:
            return float(np.sqrt(np.average(values[keep] ** 2, weights=weights[keep])))
        return float(np.average(values[keep], weights=weights[keep]))

    @property
    def metrics(self) -> dict[str, float]:
        """Each metric's value over all evaluated users, in the requested order."""
        return {name: (self.global_metrics[name] if name in self.global_metrics
                       else self._aggregate(name)) for name in self.names}

    def summary(self, confidence: float = 0.95, n_boot: int = 1000,
                seed: int = 0) -> dict[str, dict[str, float]]:
        """Mean and percentile-bootstrap interval (resampling users) of each per-user metric.

        Global metrics (Coverage@K) have no per-user values and are left out."""
        out = {}
        for name in self.names:
            if name not in self.per_user:
                continue
            values = self.per_user[name]
            root = name in _ROOT_MEAN_SQUARE
            stats = bootstrap_ci(values**2 if root else values, confidence, n_boot, seed,
                                 weights=self.weights.get(name))
            if root:
                stats |= {key: float(np.sqrt(stats[key])) for key in ("mean", "low", "high")}
            out[name] = stats
        return out

    def compare(self, other: EvaluationResult, metric: str) -> dict[str, Any]:
        """Paired t-test and Wilcoxon signed-rank test of ``metric`` over the users both
        results evaluated (``mean_diff`` is this result minus ``other``)."""
        name = parse_metric(metric).name
        for result in (self, other):
            if name not in result.per_user:
                raise KeyError(f"{name} has no per-user values in both results")
        _, mine, theirs = np.intersect1d(self.users, other.users, return_indices=True)
        tests = paired_tests(self.per_user[name][mine], other.per_user[name][theirs])
        return {"metric": name} | tests

    def by_activity(self, train: Interactions,
                    buckets: Sequence[float] | int = DEFAULT_BUCKETS) -> pd.DataFrame:
        """Metric values per bucket of users' training interaction counts.

        ``buckets`` are edges of half-open intervals ``[lo, hi)`` (the default's first bucket,
        ``[0, 1)``, is the cold-start users) or an int ``q`` for ``q`` quantile buckets."""
        activity = train.user_counts[self.users]
        edges = _bucket_edges(activity, buckets)
        index = np.searchsorted(edges, activity, side="right") - 1
        rows = []
        for b, (lo, hi) in enumerate(itertools.pairwise(edges)):
            mask = index == b
            row: dict[str, Any] = {"activity": f"[{lo:g}, {hi:g})", "users": int(mask.sum())}
            row |= {name: self._aggregate(name, mask) for name in self.names
                    if name in self.per_user}
            rows.append(row)
        return pd.DataFrame(rows).set_index("activity")


def _bucket_edges(activity: np.ndarray, buckets: Sequence[float] | int) -> np.ndarray:
    if isinstance(buckets, (int, np.integer)):
        if buckets < 1:
            raise ValueError("the number of quantile buckets must be at least 1")
        inner = np.quantile(activity, np.linspace(0, 1, buckets + 1)[:-1])
        return np.append(np.unique(inner), np.inf)
    edges = np.asarray(buckets, dtype=np.float64)
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bucket edges must be increasing, at least two of them")
    return edges


def check_rating_metrics(model: Any, metrics: Sequence[str | MetricSpec]) -> None:
    """Refuse rating metrics (RMSE, MAE) for a model, or model class, that does not predict
    ratings: its scores rank items but are not on the rating scale."""
    names = [(s if isinstance(s, MetricSpec) else parse_metric(s)) for s in metrics]
    rating = [s.name for s in names if s.family == "rating"]
    if rating and not getattr(model, "predicts_ratings", False):
        label = getattr(model, "name", "") or getattr(model, "__name__", type(model).__name__)
        raise InputError(f"{_need(rating)} a model that predicts ratings; {label} "
                         "only ranks items (its scores are not ratings): use ranking metrics "
                         "such as ndcg@10, or a rating model")


#: what each capability is called in a refusal
_CAPABILITY_WORDS = {
    "ratings": "explicit ratings", "timestamps": "timestamps", "user_features": "user features",
    "item_features": "item features", "context": "per-event context",
    "sequences": "time-ordered histories",
}


def offered_capabilities(protocol: Protocol, train: Interactions,
                         test: Interactions) -> frozenset[str]:
    """What a model can consume when ``protocol`` evaluates it on ``train``/``test``: the
    training data's parts, and what the protocol's queries carry (time-ordered histories and
    per-event context need timestamps in both)."""
    data = {"interactions"}
    data |= {"ratings"} if train.ratings is not None else set()
    data |= {"timestamps"} if train.timestamps is not None else set()
    data |= {"user_features"} if train.user_features is not None else set()
    data |= {"item_features"} if train.item_features is not None else set()
    timed = train.timestamps is not None and test.timestamps is not None
    return frozenset(data | (protocol.query_capabilities if timed else set()))


def check_compatible(model: Any, protocol: Protocol, train: Interactions,
                     test: Interactions) -> None:
    """Refuse, in one line, a model (or model class) that consumes something
    (`Recommender.consumes`) the protocol and data do not offer (`offered_capabilities`)."""
    missing = sorted(getattr(model, "consumes", frozenset())
                     - offered_capabilities(protocol, train, test))
    if not missing:
        return
    label = getattr(model, "name", "") or type(model).__name__
    where = ("its queries (with this data)" if {"context", "sequences"} & set(missing)
             else "the training data")
    raise InputError(f"{label} cannot be evaluated by protocol {protocol.name}: it consumes "
                     f"{', '.join(_CAPABILITY_WORDS[c] for c in missing)}, which "
                     f"{where} do not give")


def _need(names: list[str]) -> str:
    """``"RMSE needs"`` or ``"RMSE, MAE need"``."""
    return f"{names[0]} needs" if len(names) == 1 else f"{', '.join(names)} need"


def early_stopping(train: Interactions, valid: Interactions,
                   metric: str = "ndcg@10") -> Callable[[Recommender], tuple[str, float]]:
    """The early-stopping score an iterative model takes as ``fit(train, valid=...)``:
    ``metric`` (NDCG@10 by default) of the model on ``valid`` over the full catalogue, as
    ``(metric, value)`` after each epoch (a `recforge.models.base.ValidationScore`)."""
    evaluator = Evaluator(train, valid, metrics=[metric])
    name = parse_metric(metric).name

    def score(model: Recommender) -> tuple[str, float]:
        return metric, float(evaluator.evaluate(model).metrics[name])

    return score


class Evaluator:
    """Evaluate models on one train/test split with a fixed list of metrics and a protocol.

    ``protocol`` is ``"full"`` (default), ``"sampled-N"`` (``seed`` and ``ties`` apply),
    ``"next-item"``, ``"next-item-sampled-N"`` (see `recforge.evaluation.protocols`) or a
    `Protocol`; a model that consumes what the protocol and data cannot give is refused
    (`check_compatible`). ``batch_size`` users are ranked at once
    (default: about `BLOCK_FLOATS` scores per block). ``item_features`` (an array, a sparse
    matrix or a `SideTable` of the items) feeds Diversity@K; without it the model's
    ``item_vectors()`` are used. The genre metrics read the training data's multi-hot
    ``genres`` item column (Miscalibration@K: against each user's training items).
    """

    def __init__(self, train: Interactions, test: Interactions,
                 metrics: Sequence[str] = ("ndcg@10", "hr@10", "recall@10"),
                 protocol: str | Protocol = "full", seed: int = 0,
                 batch_size: int | None = None,
                 item_features: np.ndarray | sp.spmatrix | SideTable | None = None,
                 ties: TieRule = "pessimistic"):
        if (train.n_users, train.n_items) != (test.n_users, test.n_items):
            raise ValueError("train and test must share one id space (same user and item maps)")
        if len(test) == 0:
            raise ValueError("the test data is empty")
        self.train = train
        self.test = test
        self.specs = list({spec.name: spec for spec in map(parse_metric, metrics)}.values())
        self.protocol = make_protocol(protocol, seed=seed, ties=ties)
        self.batch_size = batch_size or max(1, BLOCK_FLOATS // train.n_items)
        self.item_features = None if item_features is None else _feature_matrix(item_features)
        self._check()

    def _check(self) -> None:
        needy = [s.name for s in self.specs if s.kind in ("rmse", "mae", "ndcg-graded")]
        if needy and self.test.ratings is None:
            raise InputError(f"{_need(needy)} ratings; the test data has none")
        self.protocol.check_catalogue(self.train.n_items)
        self.protocol.check_data(self.train, self.test)
        beyond = [s.name for s in self.specs if s.family == "beyond"]
        if beyond and not self.protocol.lists_items:
            raise InputError(f"{_need(beyond)} full ranking, not {self.protocol.name}")
        genre = [s.name for s in self.specs if s.kind in m.GENRE_METRICS]
        if genre and self.train.item_column("multihot", "genres") is None:
            raise InputError(f"{_need(genre)} item genres; the training data has no multi-hot "
                             "'genres' item column")
        if self.item_features is not None and self.item_features.shape[0] != self.train.n_items:
            raise ValueError("item_features must have one row per item")

    def evaluate(self, model: Recommender) -> EvaluationResult:
        """Evaluate a fitted ``model``; every test user is scored in batches."""
        check_rating_metrics(model, self.specs)
        check_compatible(model, self.protocol, self.train, self.test)
        start = time.perf_counter()
        users = np.unique(self.test.users)
        result = EvaluationResult(users, self.train.user_counts[users] == 0, {},
                                  [s.name for s in self.specs], self.protocol.name)
        if any(s.family != "rating" for s in self.specs):
            self._rank(model, result)
        if any(s.family == "rating" for s in self.specs):
            self._rate(model, result)
        result.eval_seconds = time.perf_counter() - start
        return result

    def _rank(self, model: Recommender, result: EvaluationResult) -> None:
        specs = [s for s in self.specs if s.family != "rating"]
        per_case = [s for s in specs if s.kind != "coverage"]
        k = max(s.k or 1 for s in specs)
        complete = any(s.kind == "auc" or (s.kind == "mrr" and s.k is None) for s in specs)
        ctx = self._context(model, specs, result.users)
        values: dict[str, list[np.ndarray]] = {s.name: [] for s in per_case}
        positions: list[np.ndarray] = []
        covered = {s.name: np.zeros(self.train.n_items, dtype=bool)
                   for s in specs if s.kind == "coverage"}
        for cases in self.protocol.cases(model, self.train, self.test, result.users, k,
                                         complete, self.batch_size):
            positions.append(cases.user_pos)
            for spec in per_case:
                values[spec.name].append(_CASE_METRICS[spec.kind](cases, spec, ctx))
            for spec in specs:
                if spec.kind == "coverage":
                    covered[spec.name] |= m.recommended_mask(cases.items, self.train.n_items,
                                                             spec.k)
        pos = np.concatenate(positions)
        for name, parts in values.items():
            result.per_user[name] = m.group_mean(np.concatenate(parts), pos, len(result.users))
        result.global_metrics |= {name: float(mask.mean()) for name, mask in covered.items()}

    def _context(self, model: Recommender, specs: list[MetricSpec],
                 users: np.ndarray) -> _Context:
        features = self.item_features
        if features is None and any(s.kind == "diversity" for s in specs):
            features = model.item_vectors()
            if features is None:
                raise ValueError(f"Diversity needs item_features: {type(model).__name__} "
                                 "has no item vectors")
        counts = self.train.user_counts
        ctx = _Context(features, self.train.item_counts, int((counts > 0).sum()))
        if any(s.kind in m.GENRE_METRICS for s in specs):
            ctx.genres = self.train.item_column("multihot", "genres")[1]
            ctx.history = self.train.binary_csr[users]
        return ctx

    def _rate(self, model: Recommender, result: EvaluationResult) -> None:
        test = self.test
        predicted = model.predict(test.users, test.items).astype(np.float64)
        error = predicted - test.ratings
        pos = np.searchsorted(result.users, test.users)
        n = len(result.users)
        n_ratings = np.bincount(pos, minlength=n).astype(np.float64)
        for spec in self.specs:
            if spec.kind in ("rmse", "mae"):
                per_user = m.user_rmse if spec.kind == "rmse" else m.user_mae
                result.per_user[spec.name] = per_user(predicted, test.ratings, pos, n)
                result.weights[spec.name] = n_ratings
        result.errors = {"user": test.users, "item": test.items, "squared": error**2,
                         "absolute": np.abs(error)}


def _feature_matrix(features: np.ndarray | sp.spmatrix | SideTable) -> np.ndarray | sp.csr_matrix:
    """Item feature rows: a `SideTable`'s multi-hot and numeric columns side by side."""
    if isinstance(features, SideTable):
        blocks = [mat for _, mat in features.multihot.values()]
        blocks += [sp.csr_matrix(np.nan_to_num(col)[:, None]) for col in features.numeric.values()]
        if not blocks:
            raise ValueError("the item SideTable has no multi-hot or numeric columns")
        return sp.hstack(blocks, format="csr")
    return sp.csr_matrix(features) if sp.issparse(features) else np.asarray(features)
