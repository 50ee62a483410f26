"""Evaluator and protocols: brute-force references, oracles, tie rules, seeds, slices."""

from __future__ import annotations

from math import log2
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from recforge.data.interactions import IdMap, Interactions
from recforge.data.movielens import read_ml100k
from recforge.data.splits import leave_last_out
from recforge.evaluation import EvaluationResult, Evaluator, SampledRanking
from recforge.evaluation import metrics as m
from recforge.evaluation.protocols import FullRanking, make_protocol
from recforge.models import MostPopular
from recforge.models.base import Recommender
from recforge.params import Anything, Rule

RANKING = ["hr@3", "precision@3", "recall@3", "map@3", "ndcg@3", "ndcg-graded@3", "mrr",
           "mrr@3", "auc"]


# ---------------------------------------------------------------------- fixtures and models


class FixedScores(Recommender):
    """Scores read from a fixed user x item matrix."""

    param_rules: ClassVar[dict[str, Rule]] = {"scores": Anything()}

    def __init__(self, scores: np.ndarray):
        self.scores = scores

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        pass

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users].astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        return self.scores.T.astype(np.float64)


class FixedRatings(FixedScores):
    """`FixedScores` whose scores are rating predictions."""

    predicts_ratings = True


def make_split(n_users: int = 30, n_items: int = 25, per_user: int = 8, seed: int = 0,
               cold_users: int = 2) -> tuple[Interactions, Interactions]:
    """Random rated interactions; a quarter of each user's items (all for cold users) in test."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    ratings = rng.integers(1, 6, len(users)).astype(np.float32)
    in_test = (rng.random(len(users)) < 0.25) | (users < cold_users)
    in_test[np.unique(users, return_index=True)[1]] = True  # every user has a test item
    maps = {"user_map": IdMap(np.arange(n_users)), "item_map": IdMap(np.arange(n_items))}
    train = Interactions(users[~in_test], items[~in_test], ratings=ratings[~in_test], **maps)
    test = Interactions(users[in_test], items[in_test], ratings=ratings[in_test], **maps)
    return train, test


@pytest.fixture(scope="module")
def split() -> tuple[Interactions, Interactions]:
    return make_split()


def tied_scores(train: Interactions, seed: int = 1) -> np.ndarray:
    """Small integer scores, so that many items tie."""
    return np.random.default_rng(seed).integers(0, 4, (train.n_users, train.n_items)).astype(float)


# ---------------------------------------------------------------------- brute-force reference


def reference_full(model: Recommender, test: Interactions, user: int, k: int) -> dict[str, float]:
    """Metrics of one user from the definitions, by sorting the user's candidates."""
    scores = model.score([user])[0].astype(np.float64)
    seen = set(model.training_history([user]).history(0).tolist())
    gains = {int(i): float(r) for i, r in zip(test.items[test.users == user],
                                              test.ratings[test.users == user])}
    candidates = [i for i in range(len(scores)) if i not in seen]
    ranked = sorted(candidates, key=lambda i: (-scores[i], i))
    rel = [i in gains for i in ranked]
    top = rel[:k]
    dcg = sum(1 / log2(j + 2) for j, hit in enumerate(top) if hit)
    idcg = sum(1 / log2(j + 2) for j in range(min(len(gains), k)))
    graded = sum(gains.get(i, 0.0) / log2(j + 2) for j, i in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    negatives = [i for i in candidates if i not in gains]
    pair = [1.0 if scores[r] > scores[n] else 0.5 if scores[r] == scores[n] else 0.0
            for r in gains for n in negatives]
    first = rel.index(True) + 1
    return {
        "HR@3": float(any(top)),
        "Precision@3": sum(top) / k,
        "Recall@3": sum(top) / len(gains),
        "MAP@3": sum(sum(top[:j + 1]) / (j + 1) for j, hit in enumerate(top) if hit)
        / min(len(gains), k),
        "NDCG@3": dcg / idcg,
        "NDCG-graded@3": graded / sum(g / log2(j + 2) for j, g in enumerate(ideal)),
        "MRR": 1 / first,
        "MRR@3": 1 / first if first <= k else 0.0,
        "AUC": float(np.mean(pair)),
    }


def test_full_ranking_matches_brute_force(split: tuple) -> None:
    train, test = split
    model = FixedScores(tied_scores(train)).fit(train)
    result = Evaluator(train, test, RANKING, batch_size=7).evaluate(model)
    assert np.array_equal(result.users, np.unique(test.users))
    for pos, user in enumerate(result.users):
        expected = reference_full(model, test, int(user), 3)
        got = {name: result.per_user[name][pos] for name in expected}
        assert got == pytest.approx(expected), f"user {user}"


def test_batch_size_does_not_change_results(split: tuple) -> None:
    train, test = split
    model = FixedScores(tied_scores(train, seed=2)).fit(train)
    one = Evaluator(train, test, RANKING, batch_size=1).evaluate(model)
    auto = Evaluator(train, test, RANKING).evaluate(model)
    for name in one.per_user:
        assert np.array_equal(one.per_user[name], auto.per_user[name]), name


class CountingScores(FixedScores):
    """`FixedScores` that counts the user rows it scores (cold users are not scored here)."""

    def _score(self, users: np.ndarray) -> np.ndarray:
        self.rows_scored += len(users)
        return super()._score(users)


def test_full_ranking_scores_each_user_once_even_for_auc_and_mrr(split: tuple) -> None:
    train, test = split
    model = CountingScores(tied_scores(train)).fit(train)
    model.rows_scored = 0
    result = Evaluator(train, test, ["hr@3", "mrr", "auc"], batch_size=7).evaluate(model)
    assert model.rows_scored == model.is_known_user(result.users).sum() > 0


def test_oracle_scores_one(split: tuple) -> None:
    train, test = split
    oracle = FixedScores(test.binary_csr.toarray() + 0.0).fit(train)
    known = np.unique(train.users)
    users = np.intersect1d(np.unique(test.users), known)
    result = Evaluator(train, test.subset(np.isin(test.users, users)),
                       ["hr@10", "ndcg@10", "map@10", "mrr", "auc", "recall@10"]).evaluate(oracle)
    for name in ("HR@10", "NDCG@10", "MAP@10", "MRR", "AUC", "Recall@10"):
        assert result.metrics[name] == pytest.approx(1.0), name


def test_mrr_at_k_is_mrr_cut_at_k(split: tuple) -> None:
    train, test = split
    model = FixedScores(np.random.default_rng(3).random((30, 25))).fit(train)
    result = Evaluator(train, test, ["mrr", "mrr@2"]).evaluate(model)
    full = result.per_user["MRR"]
    assert np.array_equal(result.per_user["MRR@2"], np.where(full >= 1 / 2, full, 0.0))


# ---------------------------------------------------------------------- sampled protocol


@pytest.fixture(scope="module")
def wide_split() -> tuple[Interactions, Interactions]:
    """Enough items for 99 negatives per user."""
    return make_split(n_users=20, n_items=150, per_user=12, seed=4, cold_users=1)


@pytest.mark.parametrize(("ties", "expected"), [
    ("pessimistic", {"HR@10": 0.0, "NDCG@10": 0.0, "MRR": 1 / 100, "AUC": 0.5}),
    ("optimistic", {"HR@10": 1.0, "NDCG@10": 1.0, "MRR": 1.0, "AUC": 0.5}),
])
def test_sampled_tie_rule_with_constant_scores(wide_split: tuple, ties: str,
                                                expected: dict[str, float]) -> None:
    train, test = wide_split
    constant = FixedScores(np.zeros((train.n_users, train.n_items))).fit(train)
    known = test.subset(~np.isin(test.users, np.flatnonzero(train.user_counts == 0)))
    result = Evaluator(train, known, ["hr@10", "ndcg@10", "mrr", "auc"], protocol="sampled-99",
                       ties=ties).evaluate(constant)  # type: ignore[arg-type]
    assert result.metrics == pytest.approx(expected)


def test_sampled_ranks_match_brute_force(wide_split: tuple) -> None:
    train, test = wide_split
    model = FixedScores(tied_scores(train, seed=5)).fit(train)
    protocol = SampledRanking(99, ties="pessimistic", seed=11)
    negatives = protocol.negatives(train, test)
    scores = model.score(test.users)
    held = scores[np.arange(len(test)), test.items]
    neg = np.take_along_axis(scores, negatives, axis=1)
    cases = next(protocol.cases(model, train, test, np.unique(test.users), 10, True, 10_000))
    assert np.array_equal(cases.rank, 1 + (neg >= held[:, None]).sum(axis=1))
    optimistic = next(SampledRanking(99, "optimistic", 11).cases(
        model, train, test, np.unique(test.users), 10, True, 10_000))
    assert np.array_equal(optimistic.rank, 1 + (neg > held[:, None]).sum(axis=1))
    pairs = np.where(neg < held[:, None], 1.0, np.where(neg == held[:, None], 0.5, 0.0))
    assert cases.auc == pytest.approx(pairs.mean(axis=1))


def test_sampled_negatives_are_distinct_unseen_and_seeded(wide_split: tuple) -> None:
    train, test = wide_split
    negatives = SampledRanking(99, seed=1).negatives(train, test)
    assert negatives.shape == (len(test), 99)
    assert all(len(set(row)) == 99 for row in negatives)
    touched = (train.binary_csr + test.binary_csr).tocsr()
    assert not touched.toarray()[test.users[:, None], negatives].any()
    assert np.array_equal(negatives, SampledRanking(99, seed=1).negatives(train, test))
    assert not np.array_equal(negatives, SampledRanking(99, seed=2).negatives(train, test))


def test_sampled_metrics_are_deterministic_per_seed(wide_split: tuple) -> None:
    train, test = wide_split
    model = FixedScores(np.random.default_rng(6).random((20, 150))).fit(train)

    def run(seed: int) -> EvaluationResult:
        return Evaluator(train, test, ["hr@10", "ndcg@10"], "sampled-99", seed=seed).evaluate(model)

    first, again, other = run(0), run(0), run(1)
    assert np.array_equal(first.per_user["NDCG@10"], again.per_user["NDCG@10"])
    assert not np.array_equal(first.per_user["NDCG@10"], other.per_user["NDCG@10"])


def test_sampled_averages_cases_per_user(wide_split: tuple) -> None:
    train, test = wide_split
    model = FixedScores(np.random.default_rng(8).random((20, 150))).fit(train)
    protocol = SampledRanking(99, seed=0)
    cases = next(protocol.cases(model, train, test, np.unique(test.users), 10, True, 10_000))
    result = Evaluator(train, test, ["hr@10"], protocol).evaluate(model)
    hr_cases = (cases.rank <= 10).astype(float)
    for pos, user in enumerate(result.users):
        assert result.per_user["HR@10"][pos] == pytest.approx(hr_cases[test.users == user].mean())


def test_make_protocol() -> None:
    assert isinstance(make_protocol("full"), FullRanking)
    sampled = make_protocol("Sampled-50", seed=3, ties="optimistic")
    assert isinstance(sampled, SampledRanking)
    assert (sampled.name, sampled.n_negatives, sampled.ties, sampled.seed) == \
        ("sampled-50", 50, "optimistic", 3)
    assert make_protocol(sampled) is sampled
    with pytest.raises(ValueError, match="sampled-N"):
        make_protocol("leave-one-out")
    with pytest.raises(ValueError, match="ties"):
        SampledRanking(99, ties="random")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- cold users, ratings


def test_cold_users_are_flagged_and_scored_by_popularity(split: tuple) -> None:
    train, test = split
    model = MostPopular().fit(train)
    result = Evaluator(train, test, ["hr@5"]).evaluate(model)
    assert np.array_equal(result.users[result.cold], [0, 1])
    popular_top5 = np.argsort(-train.item_counts, kind="stable")[:5]
    for user in (0, 1):
        hit = np.isin(test.items[test.users == user], popular_top5).any()
        assert result.per_user["HR@5"][user] == float(hit)


def test_rating_metrics_over_interactions(split: tuple) -> None:
    train, test = split
    model = FixedRatings(np.random.default_rng(9).uniform(1, 5, (30, 25))).fit(train)
    result = Evaluator(train, test, ["rmse", "mae"]).evaluate(model)
    predicted = model.predict(test.users, test.items)
    assert result.metrics["RMSE"] == pytest.approx(m.rmse(predicted, test.ratings))
    assert result.metrics["MAE"] == pytest.approx(m.mae(predicted, test.ratings))
    per_user_mean = np.mean(result.per_user["RMSE"])
    assert per_user_mean != pytest.approx(result.metrics["RMSE"])  # not a mean of user RMSEs
    assert result.errors["squared"] == pytest.approx((predicted - test.ratings) ** 2)
    assert result.errors["absolute"] == pytest.approx(np.abs(predicted - test.ratings))
    summary = result.summary(n_boot=200)
    assert summary["RMSE"]["mean"] == pytest.approx(result.metrics["RMSE"])
    assert summary["RMSE"]["low"] < result.metrics["RMSE"] < summary["RMSE"]["high"]


# ---------------------------------------------------------------------- result statistics


def test_summary_compare_and_slices(split: tuple) -> None:
    train, test = split
    oracle = FixedScores(test.binary_csr.toarray() * 10.0).fit(train)
    noise = FixedScores(np.random.default_rng(10).random((30, 25))).fit(train)
    evaluator = Evaluator(train, test, ["ndcg@5", "hr@5"])
    good, bad = evaluator.evaluate(oracle), evaluator.evaluate(noise)
    summary = good.summary(n_boot=300, seed=1)
    for name, stats in summary.items():
        assert stats["low"] <= good.metrics[name] <= stats["high"]
        assert stats["mean"] == pytest.approx(good.metrics[name])
    comparison = good.compare(bad, "NDCG@5")
    assert comparison["metric"] == "NDCG@5" and comparison["n"] == len(good.users)
    assert comparison["mean_diff"] > 0 and comparison["t_pvalue"] < 1e-3
    assert good.compare(good, "ndcg@5")["t_pvalue"] == 1.0
    with pytest.raises(KeyError):
        good.compare(bad, "map@5")
    assert good.eval_seconds > 0


def test_by_activity_buckets(split: tuple) -> None:
    train, test = split
    model = FixedRatings(np.random.default_rng(12).random((30, 25))).fit(train)
    result = Evaluator(train, test, ["ndcg@5", "rmse"]).evaluate(model)
    table = result.by_activity(train, buckets=(0, 1, 5, 7, np.inf))
    assert list(table.index) == ["[0, 1)", "[1, 5)", "[5, 7)", "[7, inf)"]
    assert table["users"].sum() == len(result.users)
    assert table.loc["[0, 1)", "users"] == result.cold.sum()
    activity = train.user_counts[result.users]
    mask = (activity >= 5) & (activity < 7)
    assert table.loc["[5, 7)", "NDCG@5"] == pytest.approx(result.per_user["NDCG@5"][mask].mean())
    in_bucket = np.isin(test.users, result.users[mask])
    errors = result.errors["squared"][in_bucket]
    assert table.loc["[5, 7)", "RMSE"] == pytest.approx(np.sqrt(errors.mean()))
    quantiles = result.by_activity(train, buckets=2)
    assert quantiles["users"].sum() == len(result.users) and len(quantiles) == 2
    with pytest.raises(ValueError):
        result.by_activity(train, buckets=(5, 1))


# ---------------------------------------------------------------------- beyond accuracy


def test_beyond_accuracy_metrics(split: tuple) -> None:
    train, test = split
    model = FixedScores(np.random.default_rng(13).random((30, 25))).fit(train)
    features = np.random.default_rng(14).random((25, 4))
    names = ["coverage@3", "diversity@3", "novelty@3", "arp@3"]
    result = Evaluator(train, test, names, item_features=features).evaluate(model)
    items, _ = model.recommend(result.users, k=3)
    assert result.metrics["Coverage@3"] == pytest.approx(m.catalog_coverage(items, 25, 3))
    assert "Coverage@3" not in result.per_user and "Coverage@3" not in result.summary(n_boot=50)
    assert result.per_user["Diversity@3"] == pytest.approx(
        m.intra_list_diversity(items, features, 3))
    n_active = int((train.user_counts > 0).sum())
    assert result.per_user["Novelty@3"] == pytest.approx(
        m.novelty(items, train.item_counts, n_active, 3))
    assert result.per_user["ARP@3"] == pytest.approx(
        m.average_popularity(items, train.item_counts, 3))
    by_vectors = Evaluator(train, test, ["diversity@3"]).evaluate(model)
    assert by_vectors.per_user["Diversity@3"] == pytest.approx(
        m.intra_list_diversity(items, model.item_vectors(), 3))
    with pytest.raises(ValueError, match="item_features"):
        Evaluator(train, test, ["diversity@3"]).evaluate(MostPopular().fit(train))


def test_invalid_setups(split: tuple) -> None:
    train, test = split
    with pytest.raises(ValueError, match="full ranking"):
        Evaluator(train, test, ["coverage@10"], protocol="sampled-5")
    implicit = test.to_implicit()
    with pytest.raises(ValueError, match="ratings"):
        Evaluator(train, implicit, ["rmse"])
    with pytest.raises(ValueError, match="unknown metric"):
        Evaluator(train, test, ["ndgc@10"])
    other = Interactions(test.users, test.items, user_map=IdMap(np.arange(31)),
                         item_map=test.item_map)
    with pytest.raises(ValueError, match="id space"):
        Evaluator(train, other)
    with pytest.raises(ValueError, match="one row per item"):
        Evaluator(train, test, ["diversity@3"], item_features=np.ones((3, 2)))


# ---------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_most_popular_sampled_hr_on_ml100k(ml100k_dir: Path) -> None:
    """MostPopular, leave-last-out, 99 sampled negatives: HR@10 = 0.31 +- 0.01."""
    parts = leave_last_out(read_ml100k(ml100k_dir), ties="item-id")  # the issues' protocol
    model = MostPopular().fit(parts.train)
    hr = {ties: Evaluator(parts.train, parts.test, ["hr@10"], "sampled-99", ties=ties)
          .evaluate(model).metrics["HR@10"] for ties in ("pessimistic", "optimistic")}
    assert hr["pessimistic"] == pytest.approx(0.31, abs=0.01)
    assert hr["optimistic"] == pytest.approx(0.31, abs=0.01)
    assert hr["pessimistic"] <= hr["optimistic"]
