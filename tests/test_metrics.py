"""Metric functions: hand-computed cases from each formula, properties, and the name parser."""

from __future__ import annotations

from math import log2, sqrt

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recforge.evaluation import metrics as m

# One user, K = 4, positions 1 and 3 relevant, R = 3 relevant items in all.
HITS = np.array([[True, False, True, False]])
N_REL = np.array([3])


# ---------------------------------------------------------------------- hand-computed cases


def test_hit_rate_and_precision_by_hand() -> None:
    hits = np.vstack([HITS, np.zeros((1, 4), bool)])
    assert m.hit_rate(hits, 4).tolist() == [1.0, 0.0]
    assert m.hit_rate(np.array([[False, True]]), 1).tolist() == [0.0]
    assert m.precision(hits, 4).tolist() == [2 / 4, 0.0]
    assert m.precision(HITS, 2).tolist() == [1 / 2]


def test_recall_denominators_by_hand() -> None:
    assert m.recall(HITS, N_REL, 4) == pytest.approx([2 / 3])
    assert m.recall(HITS, N_REL, 2) == pytest.approx([1 / 3])
    assert m.recall(HITS, N_REL, 2, denominator="min") == pytest.approx([1 / min(3, 2)])
    with pytest.raises(ValueError, match="denominator"):
        m.recall(HITS, N_REL, 2, denominator="k")  # type: ignore[arg-type]


def test_average_precision_by_hand() -> None:
    # AP@4 = (P@1 * 1 + P@3 * 1) / min(3, 4) = (1 + 2/3) / 3
    assert m.average_precision(HITS, N_REL, 4) == pytest.approx([(1 + 2 / 3) / 3])
    # AP@2 = P@1 / min(3, 2)
    assert m.average_precision(HITS, N_REL, 2) == pytest.approx([1 / 2])


def test_binary_ndcg_by_hand() -> None:
    dcg = 1 / log2(2) + 1 / log2(4)
    idcg = 1 / log2(2) + 1 / log2(3) + 1 / log2(4)
    ideal = m.ideal_binary_gains(N_REL, 4)
    assert ideal.tolist() == [[1, 1, 1, 0]]
    assert m.ndcg(HITS, ideal, 4) == pytest.approx([dcg / idcg])
    assert m.ndcg(HITS, ideal, 1) == pytest.approx([1.0])


def test_graded_ndcg_by_hand() -> None:
    gains = np.array([[0.0, 3.0, 5.0]])
    ideal = np.array([[5.0, 4.0, 3.0]])
    dcg = 3 / log2(3) + 5 / log2(4)
    idcg = 5 / log2(2) + 4 / log2(3) + 3 / log2(4)
    assert m.ndcg(gains, ideal, 3) == pytest.approx([dcg / idcg])


def test_reciprocal_rank_by_hand() -> None:
    hits = np.array([[False, False, True, False], [False] * 4, [True, True, False, False]])
    assert m.reciprocal_rank(hits, 4) == pytest.approx([1 / 3, 0.0, 1.0])
    assert m.reciprocal_rank(hits, 2) == pytest.approx([0.0, 0.0, 1.0])
    assert m.reciprocal_rank_from_rank(np.array([1, 4, np.inf])) == pytest.approx([1, 0.25, 0])


def test_hits_from_rank() -> None:
    assert m.hits_from_rank(np.array([2, 5]), 3).tolist() == [[False, True, False]] + [[False] * 3]


def test_auc_from_counts_by_hand() -> None:
    # 4 negatives: 2 above, 1 tied (counts 1/2), 1 below -> (4 - 2 - 0.5) / 4
    assert m.auc_from_counts(np.array([2, 0]), np.array([1, 0]), np.array([4, 4])) == \
        pytest.approx([0.375, 1.0])
    assert np.isnan(m.auc_from_counts(np.array([0]), np.array([0]), np.array([0]))[0])


def test_rating_errors_by_hand() -> None:
    predicted, actual = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])
    assert m.rmse(predicted, actual) == pytest.approx(sqrt((1 + 0 + 4) / 3))
    assert m.mae(predicted, actual) == pytest.approx((1 + 0 + 2) / 3)
    users = np.array([0, 0, 2])
    assert m.user_rmse(predicted, actual, users, 3)[[0, 2]] == pytest.approx([sqrt(1 / 2), 2.0])
    assert m.user_mae(predicted, actual, users, 3)[[0, 2]] == pytest.approx([1 / 2, 2.0])
    assert np.isnan(m.user_rmse(predicted, actual, users, 3)[1])  # user 1 has no ratings


def test_coverage_by_hand() -> None:
    items = np.array([[0, 1, -1], [1, 2, 3]])
    assert m.catalog_coverage(items, 10, 2) == pytest.approx(3 / 10)  # {0, 1, 2}
    assert m.catalog_coverage(items, 10, 3) == pytest.approx(4 / 10)  # {0, 1, 2, 3}
    assert m.recommended_mask(items, 5, 1).tolist() == [True, True, False, False, False]


def test_diversity_by_hand() -> None:
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    items = np.array([[0, 1, 2], [0, -1, -1], [0, 3, -1], [2, 2, -1]])
    # pairs (0,1): cos 0; (0,2) and (1,2): cos 1/sqrt(2)
    first = (1 + 2 * (1 - 1 / sqrt(2))) / 3
    got = m.intra_list_diversity(items, features, 3)
    assert got[0] == pytest.approx(first)
    assert np.isnan(got[1])  # one item: no pairs
    assert got[2] == pytest.approx(1.0)  # a zero vector has cosine 0
    assert got[3] == pytest.approx(0.0)  # the same item twice
    assert m.intra_list_diversity(items, sp.csr_matrix(features), 3) == pytest.approx(
        got, nan_ok=True)
    assert m.intra_list_diversity(items, features, 2)[0] == pytest.approx(1.0)


def test_novelty_and_arp_by_hand() -> None:
    popularity = np.array([10.0, 1.0, 0.0])
    items = np.array([[0, 1, 2], [-1, -1, -1]])
    # -log2(10/10) = 0, -log2(1/10), and pop 0 is clipped to 1
    expected = (0 + 2 * -log2(1 / 10)) / 3
    novelty = m.novelty(items, popularity, 10, 3)
    assert novelty[0] == pytest.approx(expected)
    assert np.isnan(novelty[1])
    assert m.novelty(items, popularity, 10, 1)[0] == pytest.approx(0.0)
    assert m.average_popularity(items, popularity, 3)[0] == pytest.approx((10 + 1 + 0) / 3)
    assert m.average_popularity(items, popularity, 2)[0] == pytest.approx((10 + 1) / 2)


def test_cutoff_must_be_positive() -> None:
    with pytest.raises(ValueError):
        m.hit_rate(HITS, 0)
    with pytest.raises(ValueError):
        m.novelty(np.array([[0]]), np.ones(1), 1, 0)


# ---------------------------------------------------------------------- properties


@st.composite
def ranked_lists(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A hits matrix and, per row, a number of relevant items at least its hit count."""
    n = draw(st.integers(1, 8))
    k = draw(st.integers(1, 12))
    hits = draw(arrays(np.bool_, (n, k)))
    extra = draw(arrays(np.int64, n, elements=st.integers(0, 5)))
    return hits, np.maximum(hits.sum(axis=1) + extra, 1)


def _accuracy(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, np.ndarray]:
    return {
        "hr": m.hit_rate(hits, k),
        "precision": m.precision(hits, k),
        "recall": m.recall(hits, n_rel, k),
        "recall-min": m.recall(hits, n_rel, k, denominator="min"),
        "map": m.average_precision(hits, n_rel, k),
        "ndcg": m.ndcg(hits, m.ideal_binary_gains(n_rel, k), k),
        "mrr": m.reciprocal_rank(hits, k),
    }


@given(ranked_lists(), st.integers(1, 15))
def test_accuracy_metrics_are_in_unit_interval(lists: tuple, k: int) -> None:
    hits, n_rel = lists
    for name, values in _accuracy(hits, n_rel, k).items():
        assert values.shape == (len(hits),), name
        assert np.all((values >= 0) & (values <= 1 + 1e-12)), name


@given(ranked_lists(), st.integers(1, 15))
def test_perfect_ranking_scores_one(lists: tuple, k: int) -> None:
    _, n_rel = lists
    perfect = m.ideal_binary_gains(n_rel, k).astype(bool)
    values = _accuracy(perfect, n_rel, k)
    for name in ("hr", "map", "ndcg", "mrr", "recall-min"):
        assert values[name] == pytest.approx(np.ones(len(n_rel))), name
    assert values["recall"] == pytest.approx(np.minimum(n_rel, k) / n_rel)
    assert values["precision"] == pytest.approx(np.minimum(n_rel, k) / k)


@given(ranked_lists())
def test_cumulative_metrics_grow_with_k(lists: tuple) -> None:
    hits, n_rel = lists
    width = hits.shape[1]
    for metric in (m.hit_rate, lambda h, k: m.recall(h, n_rel, k)):
        by_k = np.column_stack([metric(hits, k) for k in range(1, width + 1)])
        assert np.all(np.diff(by_k, axis=1) >= 0)


@given(ranked_lists(), st.data())
def test_moving_a_hit_up_never_hurts(lists: tuple, data: st.DataObject) -> None:
    hits, n_rel = lists
    width = hits.shape[1]
    row = data.draw(st.integers(0, len(hits) - 1))
    upper = np.triu(np.ones((width, width), bool), 1)
    swaps = np.argwhere(upper & ~hits[row][:, None] & hits[row][None, :])  # (earlier, later)
    assume(len(swaps) > 0)
    earlier, later = swaps[data.draw(st.integers(0, len(swaps) - 1))]
    better = hits.copy()
    better[row, [earlier, later]] = True, False
    before, after = _accuracy(hits, n_rel, width), _accuracy(better, n_rel, width)
    for name in ("map", "ndcg", "mrr", "hr", "recall", "precision"):
        assert after[name][row] >= before[name][row] - 1e-12, name


@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 8)),
              elements=st.integers(0, 5).map(float)), st.integers(1, 10))
def test_graded_ndcg_bounds_and_perfect_order(ratings: np.ndarray, k: int) -> None:
    ideal = -np.sort(-ratings, axis=1)
    assert np.all(m.ndcg(ratings, ideal, k)[ideal[:, 0] > 0] <= 1 + 1e-12)
    perfect = m.ndcg(ideal, ideal, k)
    assert perfect[ideal[:, 0] > 0] == pytest.approx(np.ones(int((ideal[:, 0] > 0).sum())))
    assert np.all(np.isnan(perfect[ideal[:, 0] == 0]))


@given(st.floats(-3, 3), arrays(np.float64, st.integers(1, 30),
                                elements=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0])))
def test_auc_matches_pairwise_definition(positive: float, negatives: np.ndarray) -> None:
    pairs = np.where(negatives < positive, 1.0, np.where(negatives == positive, 0.5, 0.0))
    auc = m.auc_from_counts(np.array([(negatives > positive).sum()]),
                            np.array([(negatives == positive).sum()]), np.array([len(negatives)]))
    assert auc[0] == pytest.approx(pairs.mean())
    assert 0 <= auc[0] <= 1


@settings(max_examples=50)
@given(arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
              elements=st.integers(-1, 9)),
       arrays(np.float64, (10, 3), elements=st.floats(0, 5)))
def test_beyond_accuracy_bounds(items: np.ndarray, features: np.ndarray) -> None:
    popularity = np.arange(10.0)
    width = items.shape[1]
    coverage = [m.catalog_coverage(items, 10, k) for k in range(1, width + 1)]
    assert all(0 <= c <= 1 for c in coverage) and coverage == sorted(coverage)
    diversity = m.intra_list_diversity(items, features, width)
    assert np.all((diversity[~np.isnan(diversity)] >= -1e-12)
                  & (diversity[~np.isnan(diversity)] <= 1 + 1e-12))
    novelty = m.novelty(items, popularity, 10, width)
    ok = ~np.isnan(novelty)
    assert np.all((novelty[ok] >= 0) & (novelty[ok] <= log2(10) + 1e-12))
    assert np.array_equal(ok, (items >= 0).any(axis=1))


# ---------------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "display", "k"), [
    ("hr@10", "HR@10", 10), ("ndcg@10", "NDCG@10", 10), ("precision@5", "Precision@5", 5),
    ("recall@20", "Recall@20", 20), ("map@10", "MAP@10", 10), ("mrr", "MRR", None),
    ("mrr@10", "MRR@10", 10), ("auc", "AUC", None), ("rmse", "RMSE", None),
    ("mae", "MAE", None), ("coverage@10", "Coverage@10", 10),
    ("diversity@10", "Diversity@10", 10), ("novelty@10", "Novelty@10", 10),
    ("arp@10", "ARP@10", 10), ("NDCG@10", "NDCG@10", 10), (" Hr@3 ", "HR@3", 3),
    ("ndcg-graded@5", "NDCG-graded@5", 5),
])
def test_parse_metric_canonical_names(name: str, display: str, k: int | None) -> None:
    spec = m.parse_metric(name)
    assert (spec.name, spec.k) == (display, k)


def test_parse_metric_errors_list_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'ndgc@10'.*ndcg@K.*mrr\[@K\].*rmse"):
        m.parse_metric("ndgc@10")
    with pytest.raises(ValueError, match="needs a cutoff"):
        m.parse_metric("ndcg")
    with pytest.raises(ValueError, match="takes no cutoff"):
        m.parse_metric("auc@10")
    with pytest.raises(ValueError, match="from 1 to"):
        m.parse_metric("hr@0")
