"""Distributed tuning (`recforge.experiments.tune.Search`): two ``recforge tune --worker``
processes on one SQLite study, the result written once by the command without ``--worker``,
and pruning from per-epoch validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recforge.cli import main
from recforge.experiments.config import parse_experiment
from recforge.experiments.tune import Search, tune_experiment

optuna = pytest.importorskip("optuna") if os.environ.get("CI", "").lower() != "true" \
    else __import__("optuna")

TUNE = """
[experiment]
name = "tune-workers"
seeds = [0]

[data]
dataset = "synthetic"
options = { n_users = 150, n_items = 120, n_interactions = 3000, feedback = "implicit" }

[split]
method = "leave-last-out"

[[models]]
name = "ials"
params = { epochs = 3 }

[tune]
model = "ials"
metric = "ndcg@10"
trials = 6

[tune.space]
factors = { type = "int", low = 2, high = 48 }
reg = { type = "float", low = 0.01, high = 1000.0, log = true }
"""
BUDGET = 6


def test_two_workers_share_one_study_and_the_best_is_reported_once(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(TUNE)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-c", ("import sys; from recforge.cli import main; "
               "sys.exit(main())"), "tune", str(path), "--storage", url, "--worker",
               "--trials", str(BUDGET), "--pruner", "median"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path) for _ in range(2)]
    outputs = [w.communicate(timeout=240) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        assert "worker done" in out and "on the validation split" not in out
    study = optuna.load_study(study_name="tune-workers", storage=url)
    trials = study.trials
    assert BUDGET <= len(trials) <= BUDGET + 1  # a worker may start one as the other ends
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and len({tuple(sorted(t.params.items())) for t in done}) == len(done)

    out = tmp_path / "result"
    assert main(["tune", str(path), "--storage", url, "--trials", str(BUDGET),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("on the validation split") == 1
    assert len(optuna.load_study(study_name="tune-workers", storage=url).trials) == len(trials)
    record = json.loads((out / "tune.json").read_text())
    assert record["n_trials"] == len(trials)
    assert record["best_value"] == pytest.approx(study.best_value)
    assert {k: record["best_params"][k] for k in study.best_params} == study.best_params


def test_median_pruner_stops_trials_from_epoch_validation(tmp_path: Path) -> None:
    experiment = parse_experiment(TUNE, source="exp.toml")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = tune_experiment(experiment, trials=10,
                             search=Search(storage=url, pruner="median"))
    trials = optuna.load_study(study_name="tune-workers", storage=url).trials
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.PRUNED in states
    for trial in trials:  # each epoch's validation score was reported; pruned ones stopped
        epochs = sorted(trial.intermediate_values)
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert epochs == [0, 1, 2]
        elif epochs:  # not a duplicate: stopped after an epoch below the median
            assert len(epochs) < 3
    assert result.best_value == max(t.value for t in trials if t.value is not None)


def test_search_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match="pruner must be one of none, median, hyperband"):
        Search(pruner="asha")
    path = tmp_path / "exp.toml"
    path.write_text(TUNE)
    assert main(["tune", str(path), "--worker"]) == 2
    assert "a worker shares a study: give --storage URL" in capsys.readouterr().err
    assert main(["tune", str(path), "--worker", "--storage", "sqlite:///x.db",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--out: a --worker writes nothing" in capsys.readouterr().err
