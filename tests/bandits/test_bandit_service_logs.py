"""Off-policy evaluation from the service's own logs: the A/B assignment as the logging
policy (`recforge.bandits.logged.from_experiment_logs`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recforge.abtest.assignment import Assigner, Experiment
from recforge.abtest.exposure import Exposure, ExposureLog
from recforge.bandits import ope
from recforge.bandits.logged import from_experiment_logs
from recforge.errors import InputError
from recforge.serving.events import Event

EXPERIMENT = Experiment(name="ranker", salt="s1", arms={"a": 0.3, "b": 0.6}, holdout=0.1)
CLICK_RATE = {"a": 0.1, "b": 0.3}


def _logs(tmp_path: Path, users: int = 4000) -> tuple[ExposureLog, list[Event]]:
    """Each user exposed once at time 100 + i, clicking with the arm's rate after it, plus
    a click before the exposure and an unrelated event that must both be ignored."""
    rng = np.random.default_rng(0)
    assigner = Assigner([EXPERIMENT])
    log = ExposureLog(tmp_path / "exposures.db")
    rows, events = [], []
    for i in range(users):
        user = f"u{i}"
        arm = assigner.assign(user)[EXPERIMENT.name]
        rows.append(Exposure(user, EXPERIMENT.name, arm, timestamp=100.0 + i))
        events.append(Event(f"pre{i}", user, "x", "click", 1.0, 50.0))
        events.append(Event(f"view{i}", user, "x", "view", 1.0, 200.0 + i))
        if arm != "holdout" and rng.random() < CLICK_RATE[arm]:
            events.append(Event(f"c{i}", user, "x", "click", 1.0, 150.0 + i))
    log.log(rows)
    return log, events


def test_propensities_are_the_arm_shares_and_ips_recovers_each_arm(tmp_path: Path) -> None:
    log, events = _logs(tmp_path)
    with log:
        logged, arms = from_experiment_logs(log, events, EXPERIMENT)
    assert arms == ["a", "b"]
    held_out = sum(1 for u in range(4000)
                   if Assigner([EXPERIMENT]).assign(f"u{u}")[EXPERIMENT.name] == "holdout")
    assert len(logged) == 4000 - held_out
    np.testing.assert_allclose(np.unique(logged.propensities), [1 / 3, 2 / 3])
    assert set(np.unique(logged.rewards)) <= {0.0, 1.0}  # the early click never counts
    for index, arm in enumerate(arms):
        always = np.zeros((len(logged), 2))
        always[:, index] = 1.0
        estimate = ope.ips(logged, always, n_bootstrap=300, seed=1)
        assert estimate.covers(CLICK_RATE[arm]), (arm, estimate)
        assert abs(estimate.value - CLICK_RATE[arm]) < 0.03


def test_outcomes_go_to_the_latest_exposure_of_the_user(tmp_path: Path) -> None:
    experiment = Experiment(name="e", salt="s", arms={"a": 0.5, "b": 0.5})
    with ExposureLog(tmp_path / "x.db") as log:
        log.log([Exposure("u", "e", "a", timestamp=10.0), Exposure("u", "e", "a", timestamp=20.0),
                 Exposure("v", "e", "b", timestamp=15.0)])
        events = [Event("1", "u", "i", "click", 2.0, 12.0), Event("2", "u", "i", "click", 1.0, 25.0),
                  Event("3", "u", "i", "click", 1.0, 26.0), Event("4", "v", "i", "click", 1.0, 5.0)]
        logged, _ = from_experiment_logs(log, events, experiment)
        binary, _ = from_experiment_logs(log, events, experiment, binary=True)
    np.testing.assert_array_equal(logged.rewards, [2.0, 2.0, 0.0])
    np.testing.assert_array_equal(binary.rewards, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(logged.actions, [0, 0, 1])
    np.testing.assert_array_equal(logged.users, [0, 0, 1])


def test_an_experiment_without_exposures_is_refused(tmp_path: Path) -> None:
    with ExposureLog(tmp_path / "x.db") as log, pytest.raises(InputError, match="no exposures"):
        from_experiment_logs(log, [], EXPERIMENT)
