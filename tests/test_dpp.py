"""DPP re-ranking: fast greedy MAP against a brute-force log-det greedy, early stopping, the
trade-off's two ends, padding, diversity on clustered items and on a fitted model."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data import synthetic
from recforge.errors import InputError, ParameterError
from recforge.evaluation.metrics import intra_list_diversity
from recforge.models import create_model
from recforge.rerank import DPPReranker, MMRReranker, item_genres
from recforge.rerank.base import minmax_relevance
from recforge.rerank.dpp import quality_weight


def brute_force(items: np.ndarray, scores: np.ndarray, features: np.ndarray, k: int,
                theta: float, epsilon: float = 1e-10) -> np.ndarray:
    """Greedy MAP with an explicit kernel per user: each step adds the candidate maximising
    log det(L_{Y+i}) (slogdet); stop when the gain det(L_{Y+i}) / det(L_Y) < epsilon, then
    fill by relevance."""
    valid = items >= 0
    relevance = minmax_relevance(scores, valid)
    out = np.full((len(items), k), -1)
    for u in range(len(items)):
        cand = np.flatnonzero(valid[u])
        f = features[items[u, cand]]
        unit = f / np.linalg.norm(f, axis=1, keepdims=True)
        q = np.exp(quality_weight(theta) * relevance[u, cand])
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, 1.0)  # exactly, as the definition (no rounding ties)
        kernel = q[:, None] * similarity * q[None, :]
        picked: list[int] = []
        current = 0.0
        while len(picked) < min(k, len(cand)):
            logdet = np.full(len(cand), -np.inf)
            for i in set(range(len(cand))) - set(picked):
                sign, value = np.linalg.slogdet(kernel[np.ix_(picked + [i], picked + [i])])
                logdet[i] = value if sign > 0 else -np.inf
            best = int(np.argmax(logdet))
            if logdet[best] - current < np.log(epsilon):
                break
            picked.append(best)
            current = logdet[best]
        rest = [i for i in np.argsort(-relevance[u, cand], kind="stable") if i not in picked]
        order = (picked + rest)[:k]
        out[u, :len(order)] = items[u, cand[order]]
    return out


def random_case(seed: int, n: int = 6, size: int = 12, dim: int = 16, n_items: int = 40):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_items, dim))
    items = np.array([rng.permutation(n_items)[:size] for _ in range(n)])
    scores = rng.normal(size=items.shape)
    items[1, size - 4:] = -1  # a short candidate list
    scores[items < 0] = -np.inf
    return items, scores, features


@pytest.mark.parametrize("theta", [0.0, 0.3, 0.6, 0.9])
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_greedy_equals_brute_force_logdet_greedy(theta: float, seed: int) -> None:
    items, scores, features = random_case(seed)
    fast = DPPReranker(theta).greedy(items, scores, features, 8)
    np.testing.assert_array_equal(fast, brute_force(items, scores, features, 8, theta))


def test_early_stop_fills_the_rest_by_relevance() -> None:
    # features of rank 3: after three picks every other candidate is spanned (d^2 ~ 0)
    items, scores, features = random_case(2, dim=3)
    fast = DPPReranker(0.5).greedy(items, scores, features, 8)
    np.testing.assert_array_equal(fast, brute_force(items, scores, features, 8, 0.5))
    relevance_order = np.argsort(-scores, axis=1, kind="stable")
    tail = np.take_along_axis(items, relevance_order, axis=1)
    for u in range(len(items)):
        head = fast[u, :3].tolist()
        rest = [i for i in tail[u] if i not in head and i >= 0]
        assert fast[u, 3:].tolist() == rest[:5] + [-1] * (5 - len(rest[:5]))
    # an epsilon above every first gain (q_max^2 = exp(2 alpha)) stops at once: relevance order
    stopped = DPPReranker(0.5, epsilon=np.exp(1.0) * 1.01).greedy(items, scores, features, 8)
    np.testing.assert_array_equal(stopped, np.where(tail[:, :8] >= 0, tail[:, :8], -1))


def test_theta_towards_one_is_the_relevance_order_and_zero_ignores_it() -> None:
    items, scores, features = random_case(3, dim=24)
    order = np.take_along_axis(items, np.argsort(-scores, axis=1, kind="stable"), axis=1)
    near_one = DPPReranker(0.999).greedy(items, scores, features, 8)
    np.testing.assert_array_equal(near_one, order[:, :8])
    # theta = 0: the scores only pick the first item (all tie at quality 1: the first candidate)
    shuffled = DPPReranker(0.0).greedy(items, np.zeros(items.shape), features, 8)
    assert (shuffled[:, 0] == items[:, 0]).all()
    same = DPPReranker(0.0).greedy(items, np.where(items >= 0, 0.0, -np.inf), features, 8)
    np.testing.assert_array_equal(same, shuffled)


# items 0 and 1 are close (cosine 0.8), item 2 is orthogonal to 0 (cosine 0.6 with 1)
FEATURES = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
ITEMS = np.array([[0, 1, 2, -1]])
SCORES = np.array([[1.0, 0.9, 0.5, -np.inf]])


# relevance (1, 0.8, 0); after item 0: item 1 gains log(1 - 0.64) + 2 alpha 0.8, item 2 gains 0,
# so item 1 follows iff alpha > 0.6386, i.e. theta > 0.5608
@pytest.mark.parametrize(("theta", "expected"), [
    (0.7, [0, 1, 2, -1]),
    (0.55, [0, 2, 1, -1]),
    (0.0, [0, 2, 1, -1]),
])
def test_hand_checked_case(theta: float, expected: list[int]) -> None:
    assert DPPReranker(theta).greedy(ITEMS, SCORES, FEATURES, 4).tolist() == [expected]


def test_clustered_items_are_diversified() -> None:
    # three tight clusters; the eight best-scored candidates all lie in cluster 0
    rng = np.random.default_rng(4)
    centres = np.eye(3) * 5
    features = np.repeat(centres, 10, axis=0) + rng.normal(scale=0.3, size=(30, 3))
    items = np.tile(np.arange(30), (4, 1))
    scores = np.tile(np.r_[np.linspace(2, 1.5, 10), np.linspace(1, 0, 20)], (4, 1))
    scores += rng.normal(scale=0.01, size=scores.shape)
    plain = np.take_along_axis(items, np.argsort(-scores, axis=1), axis=1)[:, :6]
    diverse = DPPReranker(0.5).greedy(items, scores, features, 6)
    ild_plain = intra_list_diversity(plain, features, 6)
    ild_dpp = intra_list_diversity(diverse, features, 6)
    assert (ild_dpp > ild_plain + 0.3).all()
    assert all(set(row // 10) == {0, 1, 2} for row in diverse)


@pytest.fixture(scope="module")
def fitted():
    data = synthetic.generate(n_users=120, n_items=150, n_interactions=3000, seed=5)
    model = create_model("ials", factors=8, epochs=3).fit(data)
    return data, model


def test_reranked_lists_diversify_without_repeats_or_seen_items(fitted) -> None:
    data, model = fitted
    users = np.arange(data.n_users)
    genres = item_genres(data)
    plain, _ = model.recommend(users, 10)
    ild_plain = np.nanmean(intra_list_diversity(plain, genres, 10))
    for similarity in (genres, "vectors"):
        lists = [DPPReranker(theta, candidates=50, similarity=similarity, batch_size=7)
                 .rerank(model, users, 10) for theta in (0.9, 0.3)]
        for items in lists:
            assert all(len(set(row)) == 10 for row in items.tolist())
            assert not data.binary_csr[np.repeat(users, 10), items.ravel()].any()
        if similarity is genres:
            ild = [np.nanmean(intra_list_diversity(items, genres, 10)) for items in lists]
            assert ild_plain < ild[0] < ild[1]
    mmr = MMRReranker(1.0, candidates=50, similarity=genres).rerank(model, users, 10)
    np.testing.assert_array_equal(mmr, plain)


def test_padding_and_short_candidate_lists(fitted) -> None:
    data, model = fitted
    items = DPPReranker(0.5, candidates=5, similarity=item_genres(data)).rerank(model, [0, 1], 8)
    assert (items >= 0).all()
    out = DPPReranker(0.5).greedy(np.array([[4, 7, -1]]), np.array([[3.0, 2.0, -np.inf]]),
                                  np.eye(8), 4)
    assert out.tolist() == [[4, 7, -1, -1]]
    # an item with no features is similar to no other item, and to itself
    out = DPPReranker(0.0).greedy(np.array([[1, 2, 0]]), np.array([[3.0, 2.0, 1.0]]),
                                  np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), 3)
    assert out.tolist() == [[1, 0, 2]]


@pytest.mark.parametrize(("settings", "message"), [
    ({"theta": 1.0}, "theta: must be a finite number in [0, 1), got 1.0"),
    ({"theta": -0.1}, "theta: must be a finite number in [0, 1)"),
    ({"epsilon": 0.0}, "epsilon: must be a finite number > 0, got 0.0"),
    ({"candidates": 0}, "candidates: must be an integer in [1, 100000]"),
    ({"similarity": "cosine"}, "similarity: must be 'vectors' or a feature matrix"),
])
def test_invalid_settings_raise_one_line(settings: dict, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        DPPReranker(**settings)
    assert str(info.value).startswith(message)


def test_model_without_vectors_needs_a_feature_matrix(fitted) -> None:
    data, _ = fitted
    popular = create_model("most-popular").fit(data)
    with pytest.raises(InputError, match="no item vectors"):
        DPPReranker().rerank(popular, [0], 5)
    assert DPPReranker(similarity=item_genres(data)).rerank(popular, [0], 5).shape == (1, 5)
