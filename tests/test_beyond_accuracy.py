"""Genre coverage, genre entropy and miscalibration: hand-computed values, and the same values
through `Evaluator` metric names on a split whose items have genres."""

from __future__ import annotations

from math import log, log2

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data import synthetic
from recforge.data.interactions import Interactions
from recforge.data.splits import random_split
from recforge.errors import InputError
from recforge.evaluation import Evaluator
from recforge.evaluation import metrics as m
from recforge.evaluation.metrics import parse_metric
from recforge.models import create_model

# items: 0 {g0}, 1 {g0, g1}, 2 {g2}, 3 no genre, 4 {g1, g2}
GENRES = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 1, 1]]))
LISTS = np.array([[0, 1, -1], [3, 2, 4], [3, -1, -1], [-1, -1, -1]])
# histories: user 0 saw item 2, user 1 items 0 and 4, user 2 item 1, user 3 item 0
HISTORY = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 1], [0, 1, 0, 0, 0],
                                  [1, 0, 0, 0, 0]]))
# list distributions q: user 0 (1 + 1/2, 1/2, 0) / 2; user 1 (0, 1/2, 1 + 1/2) / 2
ENTROPY = -(0.75 * log2(0.75) + 0.25 * log2(0.25))


def test_genre_coverage_by_hand() -> None:
    # distinct genres: {g0, g1}, {g1, g2}, none (a list without genres), NaN (empty list)
    np.testing.assert_allclose(m.genre_coverage(LISTS, GENRES, 3), [2 / 3, 2 / 3, 0, np.nan])
    np.testing.assert_allclose(m.genre_coverage(LISTS, GENRES.toarray(), 2),
                               [2 / 3, 1 / 3, 0, np.nan])


def test_genre_entropy_by_hand() -> None:
    np.testing.assert_allclose(m.genre_entropy(LISTS, GENRES, 3),
                               [ENTROPY, ENTROPY, np.nan, np.nan])
    # one single-genre item: 0 bits; k = 1 of user 1 is item 3 (no genres): undefined
    np.testing.assert_allclose(m.genre_entropy(LISTS, GENRES, 1), [0, np.nan, np.nan, np.nan])
    uniform = m.genre_entropy(np.array([[0, 2, 4]]), GENRES, 3)  # (1, 1/2, 3/2) / 3
    assert uniform[0] == pytest.approx(-sum(p * log2(p) for p in (1 / 3, 1 / 6, 1 / 2)))


def test_miscalibration_by_hand() -> None:
    # user 0: p = (0, 0, 1), q = (.75, .25, 0), q~ = .99 q + .01 p: KL = log(1 / .01)
    # user 1: p = (1, 1/2, 1/2) / 2 = (.5, .25, .25), q = (0, .25, .75),
    #         q~ = (.005, .25, .745): KL = .5 log(.5 / .005) + .25 log(.25 / .745)
    expected = [log(100), 0.5 * log(100) + 0.25 * log(0.25 / 0.745), np.nan, np.nan]
    np.testing.assert_allclose(m.miscalibration(LISTS, GENRES, HISTORY, 3), expected)
    # a list with the history's own distribution is perfectly calibrated
    assert m.miscalibration(np.array([[2]]), GENRES, HISTORY[0], 1)[0] == pytest.approx(0.0)
    larger_a = m.miscalibration(LISTS[:1], GENRES, HISTORY[:1], 3, alpha=0.5)
    assert larger_a[0] == pytest.approx(log(2))


def test_metric_names() -> None:
    spec = parse_metric("Miscalibration@10")
    assert (spec.kind, spec.name, spec.family, spec.lower_is_better) == (
        "miscalibration", "Miscalibration@10", "beyond", True)
    assert parse_metric("genre-coverage@5").name == "GenreCoverage@5"
    assert not parse_metric("genre-entropy@5").lower_is_better
    with pytest.raises(InputError, match="needs a cutoff"):
        parse_metric("genre-entropy")


NAMES = ["genre-coverage@5", "genre-entropy@5", "miscalibration@5"]


@pytest.fixture(scope="module")
def data() -> Interactions:
    return synthetic.generate(n_users=80, n_items=60, n_interactions=1500, seed=3)


def test_evaluator_computes_them_from_the_training_genres(data: Interactions) -> None:
    train, test = random_split(data, 0.2, seed=1)
    model = create_model("most-popular").fit(train)
    result = Evaluator(train, test, NAMES, batch_size=17).evaluate(model)
    items, _ = model.recommend(result.users, 5)
    genres = train.item_column("multihot", "genres")[1]
    history = train.binary_csr[result.users]
    np.testing.assert_allclose(result.per_user["GenreCoverage@5"],
                               m.genre_coverage(items, genres, 5))
    np.testing.assert_allclose(result.per_user["GenreEntropy@5"],
                               m.genre_entropy(items, genres, 5))
    calibration = m.miscalibration(items, genres, history, 5)
    np.testing.assert_allclose(result.per_user["Miscalibration@5"], calibration)
    assert np.isfinite(calibration[train.user_counts[result.users] > 0]).all()
    assert result.metrics["Miscalibration@5"] == pytest.approx(np.nanmean(calibration))


def test_evaluator_refuses_them_without_genres(data: Interactions) -> None:
    bare = Interactions(data.users, data.items, user_map=data.user_map, item_map=data.item_map)
    train, test = random_split(bare, 0.2, seed=1)
    with pytest.raises(InputError, match="GenreCoverage@5, GenreEntropy@5, Miscalibration@5 "
                                         "need item genres"):
        Evaluator(train, test, NAMES)
