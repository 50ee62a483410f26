"""The bandit simulator (ground truth, click model, logging) and ``recforge simulate``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recforge.bandits import ope
from recforge.bandits.simulator import Simulator, fit_logistic, make_policy
from recforge.cli import main
from recforge.errors import UnknownNameError


def small_world(slate_size: int = 1, seed: int = 0) -> Simulator:
    rng = np.random.default_rng(seed)
    contexts = np.hstack([np.ones((30, 1)), rng.normal(size=(30, 3))])
    weights = rng.normal(size=(6, 4))
    truth = 1 / (1 + np.exp(-contexts @ weights.T))
    arrival = np.full(30, 1 / 30)
    return Simulator(truth, contexts, arrival, (np.arange(slate_size) + 1.0) ** -1.0)


def test_values_and_regret_are_exact():
    sim = small_world(slate_size=2)
    np.testing.assert_allclose(sim.value(sim.uniform()[:, :, None].repeat(2, 2)),
                               sim.truth.mean() * (1 + 0.5))
    best = np.sort(sim.truth, axis=1)[:, ::-1]
    np.testing.assert_allclose(sim.best, best[:, 0] + 0.5 * best[:, 1])
    users = np.arange(30)
    slates = np.argsort(-sim.truth, axis=1)[:, :2]
    np.testing.assert_allclose(sim.expected_reward(users, slates), sim.best)


def test_clicks_follow_the_position_based_model():
    sim = small_world(slate_size=3)
    users = np.zeros(60_000, dtype=int)
    slates = np.tile([0, 1, 2], (60_000, 1))
    clicks = sim.clicks(users, slates, np.random.default_rng(1))
    want = sim.truth[0, :3] * np.array([1, 1 / 2, 1 / 3])
    np.testing.assert_allclose(clicks.mean(0), want, atol=0.01)


def test_logged_propensities_match_the_logging_policy_and_ope_recovers_the_truth():
    sim = small_world()
    logging = sim.epsilon_greedy(sim.truth.mean(0)[None, :].repeat(30, 0), 0.5)
    target = sim.epsilon_greedy(sim.truth, 0.0)
    logged = sim.log(logging, 40_000, np.random.default_rng(2))
    np.testing.assert_allclose(logged.propensities,
                               logging[logged.users, logged.actions])
    freq = np.bincount(logged.actions, minlength=6) / len(logged)
    np.testing.assert_allclose(freq, logging.mean(0), atol=0.01)
    est = ope.snips(logged, target[logged.users], n_bootstrap=50)
    assert abs(est.value - sim.value(target)) < 0.02


def test_runs_learn_regret_grows_slower_for_linucb_and_is_seeded():
    sim = small_world()
    lin = sim.run(make_policy("linucb", 6, 4, seed=0), 3000, batch=10, seed=0)
    rnd = sim.run(make_policy("random", 6, 4, seed=0), 3000, batch=10, seed=0)
    assert lin.cumulative_regret[-1] < 0.5 * rnd.cumulative_regret[-1]
    assert (np.diff(lin.cumulative_regret) >= -1e-12).all()
    again = sim.run(make_policy("linucb", 6, 4, seed=0), 3000, batch=10, seed=0)
    np.testing.assert_array_equal(lin.cumulative_reward, again.cumulative_reward)


def test_logistic_calibration_recovers_its_parameters():
    rng = np.random.default_rng(0)
    score = rng.normal(size=50_000)
    label = rng.random(50_000) < 1 / (1 + np.exp(-(1.5 * score - 0.5)))
    a, c = fit_logistic(score, label)
    assert abs(a - 1.5) < 0.05 and abs(c + 0.5) < 0.05


def test_make_policy_checks_names_and_parameters():
    with pytest.raises(UnknownNameError, match="did you mean 'linucb'"):
        make_policy("linucbb", 3, 2, 0)
    assert make_policy("decaying-epsilon-greedy", 3, 2, 0).decay == 3.0


@pytest.mark.realdata
def test_ml100k_world_linucb_beats_random(ml100k_dir):
    from recforge.data.movielens import load_movielens

    sim = Simulator.from_interactions(load_movielens("ml-100k", ml100k_dir.parent), n_arms=20)
    assert sim.truth.shape == (943, 20) and sim.dim == 22
    assert 0 < sim.truth.min() and sim.truth.max() < 1
    lin = sim.run(make_policy("linucb", 20, 22, seed=0), 4000, batch=20, seed=0)
    rnd = sim.run(make_policy("random", 20, 22, seed=0), 4000, batch=20, seed=0)
    assert lin.cumulative_reward[-1] > rnd.cumulative_reward[-1] * 1.1


# ---------------------------------------------------------------------- CLI
def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--policies", "linucb,foo"], "unknown policy 'foo'"),
    (["--rounds", "0"], "--rounds"),
    (["--seeds", "x"], "--seeds"),
    (["--param", "gaussian-thompson.noise_var=1"], "not in --policies"),
    (["--param", "linucb.alpha=-1"], "alpha: must be"),
    (["--param", "linucb.nope=1"], "linucb.nope: unknown parameter"),
    (["--param", "linucb.dim=3"], "set by the simulation"),
    (["--policies", "random,random"], "distinct"),
    (["--dataset", "no-such-file.csv"], "no-such-file"),
])
def test_simulate_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys):
    code = main(["simulate", "--json", str(tmp_path / "out.json"), *argv])
    assert code == 2
    assert message in one_line_error(capsys)


def test_simulate_refuses_a_json_in_a_missing_folder_and_a_foreign_figure(tmp_path, capsys):
    assert main(["simulate", "--json", str(tmp_path / "nope" / "out.json")]) == 2
    assert "does not exist" in one_line_error(capsys)
    (tmp_path / "out-regret.png").write_text("mine")
    assert main(["simulate", "--json", str(tmp_path / "out.json")]) == 2
    assert "not written by recforge" in one_line_error(capsys)
    assert (tmp_path / "out-regret.png").read_text() == "mine"


@pytest.mark.realdata
def test_simulate_end_to_end(ml100k_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(ml100k_dir.parent))
    out = tmp_path / "sim.json"
    argv = ["simulate", "--dataset", "ml-100k", "--policies", "random,linucb,thompson",
            "--rounds", "600", "--seeds", "2", "--arms", "10", "--json", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert list(record["policies"]) == ["random", "linucb", "thompson"]
    for summary in record["policies"].values():
        assert summary["seeds"] == [0, 1]
        assert summary["cumulative_regret"]["min"] <= summary["cumulative_regret"]["mean"]
        assert len(summary["curve"]["rounds"]) == 200
    for path in record["figures"].values():
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert main(argv) == 0  # its own outputs are replaced
