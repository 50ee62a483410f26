"""`recforge tune`: TPE search on a validation split carved from training data only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require_module

from recforge.cli import main
from recforge.data.interactions import Interactions
from recforge.evaluation import Evaluator
from recforge.experiments.config import (
    BUILTIN_SPACES,
    ExperimentConfigError,
    check_space,
    load_experiment,
    parse_experiment,
)
from recforge.experiments.runner import load_split
from recforge.experiments.tune import tune_experiment
from recforge.models.base import Recommender
from recforge.models.registry import get_model_class

require_module("optuna")  # skips outside CI only

TUNE = """
[experiment]
name = "tune-tiny"
seeds = [0]

[data]
dataset = "synthetic"
options = { n_users = 120, n_items = 150, n_interactions = 3000 }

[split]
method = "leave-last-out"

[evaluation]
protocols = ["full"]
metrics = ["ndcg"]

[[models]]
name = "most-popular"

[[models]]
name = "ials"
params = { epochs = 2 }

[tune]
model = "ials"
metric = "ndcg@10"
trials = 4

[tune.space]
factors = { type = "int", low = 4, high = 32, log = true }
reg = { low = 0.1, high = 100.0, log = true }
"""


def _pairs(data: Interactions) -> set[int]:
    return set((data.users.astype(np.int64) * data.n_items + data.items).tolist())


def test_tune_never_passes_test_interactions_to_fit_or_evaluate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    exp = parse_experiment(TUNE)
    test_pairs = _pairs(load_split(exp).test)
    seen: list[Interactions] = []
    fit, init = Recommender.fit, Evaluator.__init__

    def spy_fit(self: Recommender, train: Interactions, valid: Interactions | None = None):
        seen.extend(d for d in (train, valid) if d is not None)
        return fit(self, train, valid)

    def spy_init(self: Evaluator, train: Interactions, test: Interactions, *args, **kwargs):
        seen.extend((train, test))
        init(self, train, test, *args, **kwargs)

    monkeypatch.setattr(Recommender, "fit", spy_fit)
    monkeypatch.setattr(Evaluator, "__init__", spy_init)
    result = tune_experiment(exp)
    assert len(seen) >= 2 + 4  # the evaluator's two parts and one fit per trial
    assert all(not (_pairs(data) & test_pairs) for data in seen)
    assert result.validation["method"] == "leave-last-out"
    assert len(result.trials) == 4


def test_tune_writes_a_runnable_best_file_and_trials_deterministically(tmp_path: Path) -> None:
    path = tmp_path / "tune.toml"
    path.write_text(TUNE)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["tune", str(path), "--trials", "3", "--out", str(out)]) == 0
    info = [json.loads((out / "tune.json").read_text()) for out in outs]
    assert info[0]["best_params"] == info[1]["best_params"]
    assert info[0]["best_value"] == info[1]["best_value"]
    assert info[0]["n_trials"] == 3 and info[0]["metric"] == "NDCG@10"
    trials = pd.read_csv(outs[0] / "trials.csv")
    assert len(trials) == 3 and trials["value"].max() == pytest.approx(info[0]["best_value"])
    best = load_experiment(outs[0] / "best.toml")
    ials = next(m for m in best.models if m.name == "ials")
    assert ials.params["factors"] == info[0]["best_params"]["factors"]
    assert ials.params["epochs"] == 2  # the file's fixed parameters are kept
    assert [m.name for m in best.models] == ["most-popular", "ials"]


def test_builtin_spaces_name_real_parameters() -> None:
    for name, space in BUILTIN_SPACES.items():
        assert set(space) <= set(get_model_class(name).param_names()), name


def test_builtin_spaces_respect_the_parameter_rules() -> None:
    for name, spaces in BUILTIN_SPACES.items():
        rules = get_model_class(name).rules()
        for param, space in spaces.items():
            check_space(space, f"{name}.{param}", rules[param])  # raises on a violation


@pytest.mark.parametrize(("edit", "message"), [
    (('model = "ials"', 'model = "bpr"'), "tune.model: unknown model label 'bpr'"),
    (("factors = {", "factorz = {"), "tune.space.factorz: unknown parameter of ials"),
    (("low = 4, high = 32", "low = 32, high = 4"), "tune.space.factors: needs low < high"),
    (('type = "int"', 'type = "integer"'), "tune.space.factors.type: must be 'int'"),
    (("trials = 4", "trials = 0"), "tune.trials: must be an integer in [1, "),
    (("trials = 4", "trials = 4.5"), "tune.trials: expected int"),
    (("trials = 4", "trials = 4\ntimeout = nan"), "tune.timeout: must be a finite number > 0"),
    (("trials = 4", "trials = 4\ntimeout = -1.0"), "tune.timeout: must be a finite number > 0"),
    (("low = 0.1, high = 100.0, log = true", "low = -1.0, high = 100.0"),
     "tune.space.reg.low: must be a finite number >= 0, got -1.0"),
    (("low = 0.1, high = 100.0", "low = 0.1, high = inf"),
     "tune.space.reg.high: must be a finite number, got inf"),
    (("low = 4, high = 32, log = true", "low = 0, high = 32"),
     "tune.space.factors.low: must be an integer in [1, 10000], got 0"),
    (("low = 4, high = 32", "low = 4, high = 1000000000"),
     "tune.space.factors.high: must be an integer in [1, 10000], got 1000000000"),
    (("low = 4, high = 32", "low = 4.5, high = 32"), "tune.space.factors.low: an int space"),
    (('type = "int", ', ""), "tune.space.factors.type: the parameter takes integers"),
    (("reg = { low = 0.1, high = 100.0, log = true }",
      'solver = { type = "categorical", choices = ["cg", "lu"] }'),
     "tune.space.solver.choices[1]: must be one of 'cg', 'cholesky', got 'lu'"),
    (('metric = "ndcg@10"', 'metric = "ndcg"'), "tune.metric: metric 'ndcg' needs a cutoff"),
    (('model = "ials"', 'model = "most-popular"'), "tune.space.factors: unknown parameter"),
])
def test_bad_tune_sections_are_named(edit: tuple[str, str], message: str) -> None:
    old, new = edit
    with pytest.raises(ExperimentConfigError, match="^exp.toml: .*") as info:
        parse_experiment(TUNE.replace(old, new), source="exp.toml")
    assert message in str(info.value)


def test_model_without_builtin_space_needs_one() -> None:
    text = TUNE.split("[tune.space]")[0].replace('model = "ials"', 'model = "most-popular"')
    with pytest.raises(ExperimentConfigError, match="no built-in search space"):
        parse_experiment(text)


def test_missing_optuna_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "tune.toml"
    path.write_text(TUNE)
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert main(["tune", str(path)]) == 2
    assert "pip install 'recforge[tune]'" in capsys.readouterr().err
