"""The retrieve -> rank -> re-rank pipeline: the common contract, stage order, re-ranking,
timings, member parameters, persistence and serving."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.errors import ParameterError
from recforge.models.base import Recommender
from recforge.models.registry import create_model
from recforge.retrieval import Retriever
from recforge.retrieval.pipeline import Pipeline, _rank_scores
from recforge.testing import ModelContract, contract_data

RANKER = {"epochs": 2, "threads": 1, "embedding_dim": 4, "layers": (8,)}


class TestPipelineContract(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return Pipeline(retriever="ials", retriever_params={"factors": 8, "epochs": 3},
                        candidates=20, ranker="deepfm", ranker_params=RANKER,
                        reranker="mmr", rerank_depth=5, similarity="vectors", seed=seed)


def test_rank_scores_put_head_first_then_the_rest_by_retriever():
    first = np.array([[0.1, 0.9, 0.5, 0.7, -np.inf]])
    head = np.array([[2, 0, -1]])
    scores = _rank_scores(head, first)
    assert list(np.argsort(-scores[0], kind="stable")) == [2, 0, 1, 3, 4]
    assert scores[0, 2] == -1


def test_stages_and_timings():
    data = contract_data()
    alone = create_model("ials", factors=8, epochs=3, seed=0).fit(data)
    retrieval_only = Pipeline(retriever="ials", retriever_params={"factors": 8, "epochs": 3},
                              ranker=None, candidates=15).fit(data)
    users = np.arange(10)
    np.testing.assert_array_equal(retrieval_only.recommend(users, 10)[0],
                                  alone.recommend(users, 10)[0])
    ranked = Pipeline(retriever="ials", retriever_params={"factors": 8, "epochs": 3},
                      ranker="fm", ranker_params={"epochs": 2, "threads": 1}, candidates=15,
                      reranker="dpp", rerank_depth=6, similarity="vectors").fit(data)
    items, _ = ranked.recommend(users, 10)
    top15 = alone.recommend(users, 15)[0]
    for row, allowed in zip(items, top15):  # every recommendation is a retrieved candidate
        assert set(row) <= set(allowed)
    assert set(ranked.last_timings) == {"retrieve", "rank", "rerank"}
    assert all(t >= 0 for t in ranked.last_timings.values())


def test_member_params_are_checked_by_their_rules():
    with pytest.raises(ParameterError, match="retriever_params.factors"):
        Pipeline(retriever="ials", retriever_params={"factors": 0})
    with pytest.raises(ParameterError, match="ranker"):
        Pipeline(ranker="no-such-model")
    with pytest.raises(ParameterError, match="reranker"):
        Pipeline(reranker="shuffle")


def test_save_load_and_serving(tmp_path):
    data = contract_data()
    model = Pipeline(retriever="ials", retriever_params={"factors": 8, "epochs": 3},
                     ranker="fm", ranker_params={"epochs": 2, "threads": 1},
                     candidates=15, reranker="mmr", rerank_depth=5,
                     similarity="vectors").fit(data)
    loaded = Recommender.load(model.save(tmp_path / "p"))
    users = np.arange(8)
    np.testing.assert_array_equal(loaded.recommend(users, 10)[0], model.recommend(users, 10)[0])
    answer = Retriever.from_data(loaded, data).recommend(data.user_map.ids[3], k=5)
    assert len(answer) == 5 and answer.source == "model"
