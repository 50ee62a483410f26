"""The next-item protocols (a test event's query is the user's history up to it) and the
recent-popular baseline that reads the query's time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recforge.data.interactions import Interactions
from recforge.data.query import QueryBatch
from recforge.data.splits import leave_last_out, temporal_split
from recforge.errors import InputError
from recforge.evaluation import Evaluator
from recforge.evaluation.protocols import NextItem, NextItemSampled, make_protocol
from recforge.experiments.config import parse_experiment
from recforge.experiments.runner import run_experiment
from recforge.models import MostPopular, Recommender
from recforge.models.baselines.recent import SECONDS_PER_DAY, RecentPopular
from recforge.testing import ModelContract, contract_data

DAY = SECONDS_PER_DAY


class TestRecentPopular(ModelContract):
    def make_model(self, seed: int = 0) -> Recommender:
        return RecentPopular(window_days=2)


class Recorder(MostPopular):
    """Most-popular scores that remember every query batch they were asked."""

    def __init__(self) -> None:
        self.asked: list[QueryBatch] = []

    def score(self, queries: Any, candidates: Any | None = None) -> np.ndarray:
        self.asked.append(self.as_queries(queries))
        return super().score(queries, candidates)


@pytest.fixture(scope="module")
def split() -> tuple[Interactions, Interactions]:
    parts = temporal_split(contract_data(), test_fraction=0.3)
    return parts.train, parts.test


@pytest.mark.parametrize("protocol", [NextItem(), NextItemSampled(9)])
def test_each_test_event_is_queried_with_the_events_before_it(split, protocol) -> None:
    train, test = split
    model = Recorder().fit(train)
    Evaluator(train, test, ["hr@5"], protocol=protocol).evaluate(model)
    assert len(model.asked) == 1
    asked = model.asked[0]
    assert len(asked) == len(test)
    users = np.concatenate([train.users, test.users])
    items = np.concatenate([train.items, test.items])
    times = np.concatenate([train.timestamps, test.timestamps])
    position = np.arange(len(users))
    for row in range(len(test)):
        user, when, me = test.users[row], test.timestamps[row], len(train) + row
        before = (users == user) & ((times < when) | ((times == when) & (position < me)))
        expected = items[before][np.lexsort((position[before], times[before]))]
        assert asked.users[row] == user and asked.time[row] == when
        assert asked.history(row).tolist() == expected.tolist()


def test_same_time_events_come_before_in_train_and_by_position_in_test() -> None:
    train = Interactions.from_arrays([0, 0, 1, 1], [0, 1, 2, 3], timestamps=[5, 9, 1, 1])
    test = Interactions(np.array([0, 0]), np.array([2, 3]), timestamps=np.array([9, 9]),
                        user_map=train.user_map, item_map=train.item_map)
    queries = QueryBatch.from_split(train, test)
    assert queries.history(0).tolist() == [0, 1]
    assert queries.history(1).tolist() == [0, 1, 2]


def test_with_leave_last_out_next_item_equals_the_user_protocols_for_a_user_model() -> None:
    parts = leave_last_out(contract_data())
    model = MostPopular().fit(parts.train)
    metrics = ["ndcg@5", "hr@10", "mrr", "auc"]
    for user_protocol, event_protocol in (("full", "next-item"),
                                          ("sampled-9", "next-item-sampled-9")):
        a = Evaluator(parts.train, parts.test, metrics, protocol=user_protocol).evaluate(model)
        b = Evaluator(parts.train, parts.test, metrics, protocol=event_protocol).evaluate(model)
        assert a.metrics == pytest.approx(b.metrics, abs=1e-12)
        assert b.protocol == event_protocol


def test_next_item_without_exclusion_allows_repeat_consumption() -> None:
    train = Interactions.from_arrays([0, 0, 1, 1, 2], [0, 1, 0, 2, 0],
                                     timestamps=[1, 2, 1, 2, 1])
    test = Interactions(np.array([0]), np.array([0]), timestamps=np.array([3]),
                        user_map=train.user_map, item_map=train.item_map)
    model = MostPopular().fit(train)
    repeat = Evaluator(train, test, ["hr@1"], protocol=NextItem(exclude=None)).evaluate(model)
    seen = Evaluator(train, test, ["hr@1"], protocol=NextItem()).evaluate(model)
    assert repeat.metrics["HR@1"] == 1.0 and seen.metrics["HR@1"] == 0.0


def test_protocol_names_and_refusals() -> None:
    assert isinstance(make_protocol("next-item"), NextItem)
    sampled = make_protocol("Next-Item-Sampled-99", seed=3)
    assert isinstance(sampled, NextItemSampled) and sampled.name == "next-item-sampled-99"
    assert sampled.seed == 3
    with pytest.raises(ValueError, match="'next-item', 'next-item-sampled-N'"):
        make_protocol("next-items")
    data = contract_data()
    bare = Interactions(data.users, data.items, user_map=data.user_map, item_map=data.item_map)
    with pytest.raises(InputError, match="the train and test data have no timestamps"):
        Evaluator(bare, bare, ["hr@5"], protocol="next-item-sampled-9")


# ---------------------------------------------------------------------- recent-popular


@pytest.fixture(scope="module")
def timeline() -> Interactions:
    """Item 0: three events on days 1-3; item 1: one on day 9; item 2: two on days 9 and 10;
    item 3: one on day 0."""
    return Interactions.from_arrays([0, 1, 2, 3, 0, 1, 2], [0, 0, 0, 1, 2, 2, 3],
                                    timestamps=np.array([1, 2, 3, 9, 9, 10, 0]) * DAY)


def test_recent_popular_counts_the_window_before_the_query_time(timeline) -> None:
    model = RecentPopular(window_days=5).fit(timeline)
    at = {"timestamp": np.array([4, 11, 9]) * DAY}
    queries = QueryBatch(np.array([-1, -1, -1]), np.zeros(4, np.int64), np.empty(0, np.int64),
                         context=at)
    scores = model.score(queries)
    window = np.floor(scores)  # the fraction only orders equally recent items
    assert window.tolist() == [[3, 0, 0, 1], [0, 1, 2, 0], [0, 0, 0, 0]]
    assert scores[2, 3] > scores[2, 1]  # all-time counts before day 9: item 3 has one, 1 none
    assert (scores - window < 1).all()


def test_recent_popular_reads_the_history_time_and_falls_back_to_the_end(timeline) -> None:
    model = RecentPopular(window_days=5).fit(timeline)
    history = QueryBatch(np.array([0]), np.array([0, 1]), np.array([2]),
                         timestamps=np.array([4 * DAY]))
    assert np.floor(model.score(history)).tolist() == [[3, 0, 0, 1]]
    end = np.floor(model.score([0, -1]))
    assert end.tolist() == [[0, 1, 2, 0]] * 2
    items, _ = model.recommend([-1], k=2, exclude_seen=False)
    assert items.tolist() == [[2, 1]]


def test_recent_popular_needs_timestamps() -> None:
    data = contract_data()
    bare = Interactions(data.users, data.items, user_map=data.user_map, item_map=data.item_map)
    with pytest.raises(InputError, match="recent-popular needs timestamps"):
        RecentPopular().fit(bare)
    with pytest.raises(ValueError, match="window_days"):
        RecentPopular(window_days=0)


# ---------------------------------------------------------------------- experiments

NEXT_ITEM_EXPERIMENT = """
[experiment]
name = "next"
seeds = [0]

[data]
dataset = "synthetic"
options = { n_users = 60, n_items = 80, n_interactions = 1500 }

[split]
method = "leave-last-out"

[evaluation]
protocols = ["next-item", "next-item-sampled-20"]
metrics = ["hr", "ndcg"]
cutoffs = [10]

[[models]]
name = "most-popular"

[[models]]
name = "recent-popular"
params = { window_days = 60 }
"""


def test_an_experiment_runs_the_next_item_protocols() -> None:
    record = run_experiment(parse_experiment(NEXT_ITEM_EXPERIMENT))
    assert record.protocols == ["next-item", "next-item-sampled-20"]
    assert len(record.models) == 2


def test_an_experiment_refuses_an_unfit_model_protocol_pair_before_training(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RecentPopular, "consumes", frozenset({"interactions", "context"}))
    monkeypatch.setattr(Recommender, "fit", lambda *a, **k: pytest.fail("trained"))
    text = NEXT_ITEM_EXPERIMENT.replace('"next-item-sampled-20"]', '"full"]')
    with pytest.raises(InputError, match="recent-popular cannot be evaluated by protocol full"):
        run_experiment(parse_experiment(text))
