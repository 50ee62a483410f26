"""Deterministic assignment: allocations, mutually exclusive layers, independent layers,
holdouts, validation."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from recforge.abtest.assignment import HOLDOUT, Assigner, Experiment, unit_hash
from recforge.errors import InputError, UnknownNameError

USERS = [f"user-{i}" for i in range(100_000)]


def within_binomial(count: int, n: int, p: float, z: float = 5.0) -> bool:
    """``count`` is within ``z`` binomial standard deviations of ``n * p``."""
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def assigner() -> Assigner:
    return Assigner.from_config({
        "holdout": 0.05,
        "experiments": [
            {"name": "ranker", "layer": "ranking", "arms": {"control": 0.3, "treatment": 0.2},
             "holdout": 0.1},
            {"name": "reranker", "layer": "ranking", "arms": {"control": 0.15, "mmr": 0.15}},
            {"name": "ui", "layer": "page", "salt": "ui-2026-12",
             "arms": {"control": 0.5, "cards": 0.5}},
        ]})


@pytest.fixture(scope="module")
def assignments(assigner: Assigner) -> list[dict[str, str]]:
    return [assigner.assign(u) for u in USERS]


def test_unit_hash_is_fixed_and_uniform() -> None:
    assert unit_hash("salt", "196") == unit_hash("salt", "196")
    assert unit_hash("salt", "196") == pytest.approx(0.9015784549974657, abs=0)  # pinned: sha256("4:salt:196")
    assert unit_hash("salt", "196") != unit_hash("salt2", "196")
    assert unit_hash("a:b", "c") != unit_hash("a", "b:c")  # length-prefixed: no collisions
    values = np.array([unit_hash("s", u) for u in USERS[:20_000]])
    assert values.min() >= 0 and values.max() < 1
    assert stats.kstest(values, "uniform").pvalue > 0.001


def test_assignment_is_deterministic_across_instances(assigner: Assigner,
                                                      assignments: list[dict[str, str]]) -> None:
    fresh = Assigner(assigner.experiments, holdout=0.05)
    assert [fresh.assign(u) for u in USERS[:2000]] == assignments[:2000]
    assert assigner.assign(196) == assigner.assign("196")
    assert assigner.arm("ui", USERS[0]) == assignments[0].get("ui")


def test_allocations_are_within_binomial_tolerance(assignments: list[dict[str, str]]) -> None:
    n = len(USERS)
    counts = Counter((name, arm) for a in assignments for name, arm in a.items())
    kept = 1 - 0.05  # outside the global holdout
    expected = {("ranker", "control"): 0.3 * kept, ("ranker", "treatment"): 0.2 * kept,
                ("ranker", HOLDOUT): 0.1 * kept + 0.05,
                ("reranker", "control"): 0.15 * kept, ("reranker", "mmr"): 0.15 * kept,
                ("reranker", HOLDOUT): 0.05,
                ("ui", "control"): 0.5 * kept, ("ui", "cards"): 0.5 * kept, ("ui", HOLDOUT): 0.05}
    assert set(counts) == set(expected)
    for key, p in expected.items():
        assert within_binomial(counts[key], n, p), (key, counts[key], n * p)
    outside = sum("ranker" not in a and "reranker" not in a for a in assignments)
    assert within_binomial(outside, n, 0.1 * kept)  # the layer's unallocated tenth


def test_experiments_in_one_layer_are_mutually_exclusive(
        assignments: list[dict[str, str]]) -> None:
    both = [a for a in assignments if "ranker" in a and "reranker" in a]
    assert all(a["ranker"] == a["reranker"] == HOLDOUT for a in both)  # only global holdout


def test_layers_are_independent(assignments: list[dict[str, str]]) -> None:
    # users in the ranking layer's experiments are balanced over the page layer's arms
    pairs = Counter((a.get("ranker", a.get("reranker", "none")), a["ui"]) for a in assignments
                    if a["ui"] != HOLDOUT)
    rows = sorted({r for r, _ in pairs})
    table = np.array([[pairs[(r, c)] for c in ("control", "cards")] for r in rows])
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_global_holdout_is_excluded_from_every_experiment(
        assigner: Assigner, assignments: list[dict[str, str]]) -> None:
    held = [u for u in USERS if unit_hash(assigner.holdout_salt, u) < 0.05]
    assert within_binomial(len(held), len(USERS), 0.05)
    names = {e.name for e in assigner.experiments}
    for user in held[:500]:
        assert assigner.assign(user) == dict.fromkeys(names, HOLDOUT)
    held_set = set(held)
    # outside the global holdout, the page layer never holds a user out
    assert all(a["ui"] != HOLDOUT for u, a in zip(USERS, assignments) if u not in held_set)


def test_a_new_salt_reshuffles_arms_but_keeps_membership() -> None:
    def arms(salt: str) -> list[str | None]:
        exp = Experiment("x", salt, {"a": 0.2, "b": 0.2})
        return [Assigner([exp]).assign(u).get("x") for u in USERS[:20_000]]

    first, second = arms("one"), arms("two")
    assert [a is None for a in first] == [a is None for a in second]
    moved = sum(a != b for a, b in zip(first, second) if a is not None)
    inside = sum(a is not None for a in first)
    assert within_binomial(moved, inside, 0.5)


def test_full_allocation_puts_everyone_in_an_arm() -> None:
    exp = Experiment("x", "s", {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert all(Assigner([exp]).assign(u)["x"] in "abc" for u in USERS[:5000])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"arms": {"a": 0.6, "b": 0.5}}, "sum to 1.1, more than 1"),
    ({"arms": {"a": 0.5, HOLDOUT: 0.5}}, "reserved"),
    ({"arms": {}}, "at least one arm"),
    ({"arms": {"a": 0.0}}, "arms.a"),
    ({"arms": {"a": 0.5}, "holdout": 0.6}, "more than 1"),
    ({"arms": {"a": 0.5}, "holdout": -0.1}, "holdout"),
    ({"arms": {"a b": 0.5}}, "arms key"),
    ({"arms": {"a": 0.5}, "layer": ""}, "layer"),
    ({"arms": {"a": True}}, "arms.a"),
    ({"arms": {"a": 0.5}, "salt": ""}, "salt"),
])
def test_bad_experiments_are_refused_in_one_line(kwargs: dict, message: str) -> None:
    values = {"name": "x", "salt": "s", **kwargs}
    with pytest.raises(InputError, match=message) as info:
        Experiment(**values)
    assert "\n" not in str(info.value) and "'x'" in str(info.value)


@pytest.mark.parametrize(("config", "message"), [
    ({"experiments": [{"name": "a", "arms": {"x": 0.5}}, {"name": "a", "arms": {"x": 0.1}}]},
     "defined twice"),
    ({"experiments": [{"name": "a", "arms": {"x": 0.7}}, {"name": "b", "arms": {"x": 0.4}}]},
     "layer 'default'.*more than 1"),
    ({"experiments": [{"name": "a", "arms": {"x": 0.5}, "colour": 1}]},
     "experiments\\[0\\].colour: unknown parameter"),
    ({"experiments": [{"arms": {"x": 0.5}}]}, "missing key 'name'"),
    ({"experiment": []}, "unknown key 'experiment'"),
    ({"experiments": [], "holdout": 1.0}, "holdout"),
    ({"experiments": "a"}, "list of tables"),
])
def test_bad_configs_are_refused_in_one_line(config: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Assigner.from_config(config)


def test_config_as_a_table_of_tables_and_ignored_keys() -> None:
    config = {"experiments": {"ranker": {"arms": {"control": 0.5, "treatment": 0.5},
                                         "versions": {"control": "v1", "treatment": "v2"}}}}
    with pytest.raises(InputError, match="versions"):
        Assigner.from_config(config)
    assigner = Assigner.from_config(config, ignore=("versions",))
    assert assigner.experiments[0].salt == "ranker"
    assert assigner.assign("u")["ranker"] in ("control", "treatment")
    with pytest.raises(UnknownNameError, match="did you mean 'ranker'"):
        assigner.arm("rankr", "u")
    with pytest.raises(InputError, match="user_id"):
        assigner.assign(None)  # type: ignore[arg-type]
