"""The scoring contract: queries, candidates, exclusions, capability checks, and a model
written only against the public API that passes `recforge.testing.ModelContract`, is
evaluated by every protocol, served by the `Retriever` and re-ranked by MMR."""

from __future__ import annotations

import inspect
import re
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch, exclusion_matrix
from recforge.data.splits import leave_last_out
from recforge.errors import InputError
from recforge.evaluation import Evaluator, FullRanking
from recforge.evaluation.evaluator import check_compatible
from recforge.evaluation.protocols import NextItem, make_protocol
from recforge.models import MostPopular, Recommender, register
from recforge.models.base import pad_candidates
from recforge.params import PENALTY, Rule
from recforge.rerank.mmr import MMRReranker
from recforge.retrieval import Retriever
from recforge.testing import ModelContract, contract_data


class CoVisitation(Recommender):
    """Scores items by their co-occurrence in training with the query's history items, plus
    popularity (below one co-occurrence) so that an empty history ranks popular items; written
    against the public contract only (`fit`, `score`, public helpers and attributes)."""

    consumes = frozenset({"interactions", "sequences"})
    param_rules: ClassVar[dict[str, Rule]] = {"shrink": PENALTY}

    def __init__(self, shrink: float = 1.0):
        self.shrink = shrink

    def fit(self, train: Interactions, valid: Interactions | None = None) -> CoVisitation:
        super().fit(train, valid)
        seen = train.binary_csr
        counts = (seen.T @ seen).toarray()
        np.fill_diagonal(counts, 0)
        self.weights_ = (counts / (counts.sum(axis=1, keepdims=True) + self.shrink)).astype(
            np.float32)
        return self

    def score(self, queries: Any, candidates: Any | None = None) -> np.ndarray:
        self.check_fitted()
        queries = self.as_queries(queries)
        history = queries.history_matrix(self.n_items_)
        prior = self.popularity_ / (self.popularity_.sum() + 1)
        scores = np.asarray(history @ self.weights_, dtype=np.float32) + prior
        if candidates is None:
            return scores
        chosen = pad_candidates(candidates, len(queries))
        inside = (chosen >= 0) & (chosen < self.n_items_)
        picked = np.take_along_axis(scores, np.where(inside, chosen, 0), axis=1)
        return np.where(inside, picked, np.float32(-np.inf))


def covisitation(shrink: float = 1.0) -> CoVisitation:
    """A `CoVisitation`, registered on first use (at run time, so that collection-time lists
    of the registered models stay those of the library)."""
    if CoVisitation.name != "test-covisitation":
        register("test-covisitation")(CoVisitation)
    return CoVisitation(shrink)


def test_the_public_only_model_uses_no_private_attribute() -> None:
    private = re.findall(r"(?<!\w)_[a-z]\w*", inspect.getsource(CoVisitation))
    assert not private


class TestCoVisitation(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return covisitation()


@pytest.fixture(scope="module")
def split() -> tuple[Interactions, Interactions]:
    parts = leave_last_out(contract_data())
    return parts.train, parts.test


@pytest.fixture(scope="module")
def model(split: tuple) -> CoVisitation:
    return covisitation().fit(split[0])


@pytest.mark.parametrize("protocol", ["full", "sampled-9", "next-item", "next-item-sampled-9"])
def test_public_only_model_is_evaluated_by_every_protocol(model, split, protocol: str) -> None:
    result = Evaluator(*split, ["ndcg@5", "hr@5", "mrr"], protocol=protocol).evaluate(model)
    assert all(0 < value <= 1 for value in result.metrics.values())


def test_public_only_model_is_served_and_reranked(model, split) -> None:
    train = split[0]
    retriever = Retriever.from_data(model, train)
    user = train.user_map.ids[4]
    answer = retriever.recommend(user, k=5)
    expected, _ = model.recommend([4], 5)
    assert answer.source == "model" and answer.items.tolist() == expected[0].tolist()
    fresh = retriever.recommend_for(history=train.item_map.ids[[1, 2]], k=5)
    queries = QueryBatch(np.array([-1]), np.array([0, 2]), np.array([1, 2]))
    assert fresh.source == "model"
    assert fresh.items.tolist() == model.recommend(queries, 5)[0][0].tolist()
    genres = sp.identity(train.n_items, format="csr")
    reranked = MMRReranker(lambda_=1.0, candidates=10, similarity=genres).rerank(model, [4, 7], 5)
    assert np.array_equal(reranked, model.recommend([4, 7], 5)[0])
    diverse = MMRReranker(lambda_=0.3, candidates=10, similarity=genres).rerank(model, [4], 5)
    assert set(diverse[0]) <= set(model.recommend([4], 10)[0][0])


def test_recommend_and_predict_are_thin_over_score(model, split) -> None:
    users = np.array([0, 3, 3, 8, 0])
    items = np.array([5, 1, 2, 7, 9])
    assert np.allclose(model.predict(users, items), model.score(users)[np.arange(5), items])


# ---------------------------------------------------------------------- exclusion


@pytest.mark.parametrize("exclude", ["seen", None, "callable"])
def test_full_ranking_excludes_what_the_caller_chooses(model, split, exclude: Any) -> None:
    train, test = split
    if exclude == "callable":
        def exclude(queries: QueryBatch) -> np.ndarray:  # a business filter: never item 0
            banned = np.zeros((len(queries), train.n_items), dtype=bool)
            banned[:, 0] = True
            return banned
    users = np.unique(test.users)
    cases = next(FullRanking(exclude=exclude).cases(model, train, test, users, train.n_items,
                                                    False, len(users)))
    listed = cases.items
    seen = train.binary_csr[users].toarray() > 0
    in_lists = np.zeros_like(seen)
    rows, cols = np.nonzero(listed >= 0)
    in_lists[rows, listed[rows, cols]] = True
    if exclude == "seen":
        assert not (in_lists & seen).any() and (in_lists | seen).all()
    elif exclude is None:
        assert in_lists.all()
    else:
        assert not in_lists[:, 0].any() and in_lists[:, 1:].all()


def test_exclusion_of_a_wrong_shape_or_kind_is_refused() -> None:
    queries = QueryBatch.from_users([0, 1])
    with pytest.raises(InputError, match="shape"):
        exclusion_matrix(queries, lambda q: np.zeros((3, 4), dtype=bool), 4)
    with pytest.raises(InputError, match="'seen', None or a callable"):
        exclusion_matrix(queries, "everything", 4)


# ---------------------------------------------------------------------- capabilities


class NeedsContext(MostPopular):
    """A stand-in for a CTR model: it needs the per-event context of its queries."""

    consumes = frozenset({"interactions", "context"})


def test_a_model_needing_context_is_refused_by_full_ranking_only(split) -> None:
    train, test = split
    model = NeedsContext().fit(train)
    with pytest.raises(InputError, match=r"protocol full: it consumes per-event context") as err:
        Evaluator(train, test, ["ndcg@5"], protocol="full").evaluate(model)
    assert "\n" not in str(err.value)
    for protocol in ("sampled-9", "next-item", "next-item-sampled-9"):
        check_compatible(model, make_protocol(protocol), train, test)


def test_a_model_needing_timestamps_is_refused_on_data_without_them(split) -> None:
    train = split[0]
    bare = [Interactions(d.users, d.items, ratings=d.ratings, user_map=d.user_map,
                         item_map=d.item_map) for d in split]
    model = NeedsContext().fit(train)
    with pytest.raises(InputError, match="per-event context, which its queries"):
        check_compatible(model, make_protocol("sampled-9"), *bare)
    with pytest.raises(InputError, match="next-item orders each user's events by time"):
        Evaluator(*bare, ["ndcg@5"], protocol=NextItem())


def test_requires_ratings_is_declared_as_consuming_ratings() -> None:
    from recforge.models.baselines.simple import UserMean

    assert "ratings" in UserMean.consumes
    with pytest.raises(TypeError, match="unknown capabilities"):
        type("Odd", (MostPopular,), {"consumes": frozenset({"telepathy"})})


# ---------------------------------------------------------------------- queries


def test_candidates_may_be_padded_or_ragged_and_must_match_the_queries(model) -> None:
    ragged = [[1, 2, 3], [], [4]]
    padded = pad_candidates(ragged, 3)
    assert padded.tolist() == [[1, 2, 3], [-1, -1, -1], [4, -1, -1]]
    scores = model.score([0, 1, 2], ragged)
    assert np.isneginf(scores[1]).all() and np.isfinite(scores[0]).all()
    with pytest.raises(InputError, match="2 candidate lists for 3 queries"):
        model.score([0, 1, 2], [[1], [2]])


def test_query_batches_from_ids_drop_unknown_items_and_check_their_shape() -> None:
    data = contract_data()
    queries = QueryBatch.from_ids([None, data.user_map.ids[2], "nobody"], [[1, 999], [], [2]],
                                  user_map=data.user_map, item_map=data.item_map)
    assert queries.users.tolist() == [-1, 2, -1]
    assert queries.history(0).tolist() == data.item_map.to_index([1]).tolist()
    assert queries.lengths.tolist() == [1, 0, 1]
    assert queries.take([2, 0]).history(1).tolist() == queries.history(0).tolist()
    with pytest.raises(InputError, match="non-decreasing history offsets"):
        QueryBatch(np.array([0, 1]), np.array([0, 2, 1]), np.array([3, 4]))
    with pytest.raises(InputError, match="context column 'device' has 1 values for 2"):
        QueryBatch(np.array([0, 1]), np.array([0, 1, 2]), np.array([3, 4]),
                   context={"device": np.array(["phone"])})


def test_queries_from_interactions_are_each_users_events_in_time_order() -> None:
    data = contract_data()
    queries = QueryBatch.from_interactions(data, [5, -1, 0])
    for q, user in ((0, 5), (2, 0)):
        mine = data.users == user
        order = np.argsort(data.timestamps[mine], kind="stable")
        assert queries.history(q).tolist() == data.items[mine][order].tolist()
        assert (np.diff(queries.timestamps[queries.indptr[q]:queries.indptr[q + 1]]) >= 0).all()
    assert queries.lengths[1] == 0
