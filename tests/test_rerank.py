"""MMR re-ranking: a hand-checked case, lambda = 1 as the plain top-k, diversity, padding."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data import synthetic
from recforge.evaluation.metrics import intra_list_diversity
from recforge.models import create_model
from recforge.rerank import MMRReranker, item_genres

# items 0 and 1 point the same way, item 2 is orthogonal; item 3 is padding
FEATURES = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
ITEMS = np.array([[0, 1, 2, -1]])
SCORES = np.array([[1.0, 0.9, 0.5, -np.inf]])


# relevance (min-max of the scores): (1, 0.8, 0); every list starts with item 0
@pytest.mark.parametrize(("lambda_", "expected"), [
    (1.0, [0, 1, 2, -1]),
    (0.9, [0, 1, 2, -1]),  # item 1: 0.9*0.8 - 0.1*1 = 0.62 > item 2: 0.9*0 - 0.1*0 = 0
    (0.5, [0, 2, 1, -1]),  # item 1: 0.5*0.8 - 0.5*1 = -0.1 < item 2: 0
    (0.0, [0, 2, 1, -1]),  # first pick: all tie at 0, the earlier candidate wins
])
def test_hand_checked_case(lambda_: float, expected: list[int]) -> None:
    chosen = MMRReranker(lambda_, similarity=FEATURES).greedy(ITEMS, SCORES, FEATURES, 4)
    assert chosen.tolist() == [expected]


@pytest.fixture(scope="module")
def fitted():
    data = synthetic.generate(n_users=120, n_items=150, n_interactions=3000, seed=5)
    model = create_model("ials", factors=8, epochs=3).fit(data)
    return data, model


def test_lambda_one_is_the_plain_top_k(fitted) -> None:
    data, model = fitted
    users = np.arange(data.n_users)
    plain, _ = model.recommend(users, 10)
    for similarity in ("vectors", item_genres(data)):
        reranked = MMRReranker(1.0, candidates=40, similarity=similarity).rerank(model, users, 10)
        np.testing.assert_array_equal(reranked, plain)


def test_lower_lambda_diversifies_without_repeats_or_seen_items(fitted) -> None:
    data, model = fitted
    users = np.arange(data.n_users)
    genres = item_genres(data)
    lists = {lam: MMRReranker(lam, candidates=50, similarity=genres).rerank(model, users, 10)
             for lam in (1.0, 0.5, 0.0)}
    ild = [np.nanmean(intra_list_diversity(lists[lam], genres, 10)) for lam in (1.0, 0.5, 0.0)]
    assert ild[0] < ild[1] < ild[2]
    for items in lists.values():
        assert all(len(set(row)) == 10 for row in items.tolist())
        assert not data.binary_csr[np.repeat(users, 10), items.ravel()].any()


def test_short_candidate_lists_are_padded_and_k_wins_over_candidates(fitted) -> None:
    data, model = fitted
    items = MMRReranker(0.5, candidates=5, similarity=item_genres(data)).rerank(model, [0, 1], 8)
    assert (items >= 0).all()
    scores = np.array([[3.0, 2.0, -np.inf]])
    out = MMRReranker(0.5).greedy(np.array([[4, 7, -1]]), scores, np.eye(8), 3)
    assert out.tolist() == [[4, 7, -1]]


def test_invalid_settings_and_models_without_vectors_raise(fitted) -> None:
    data, _ = fitted
    with pytest.raises(ValueError, match="lambda_"):
        MMRReranker(1.5)
    with pytest.raises(ValueError, match="similarity"):
        MMRReranker(similarity="cosine")
    popular = create_model("most-popular").fit(data)
    with pytest.raises(ValueError, match="no item vectors"):
        MMRReranker().rerank(popular, [0], 5)
    assert MMRReranker(similarity=item_genres(data)).rerank(popular, [0], 5).shape == (1, 5)
