"""Experiment files: the typed schema, its error messages, the resolved form and TOML writing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tomllib

from recforge.experiments import tomlw
from recforge.experiments.config import (
    ExperimentConfigError,
    load_experiment,
    parse_experiment,
    resolved_config,
)

GOOD = """
[experiment]
name = "tiny"
seeds = [0, 1]

[data]
dataset = "synthetic"
options = { n_users = 100, n_items = 80, n_interactions = 2000 }

[split]
method = "random"
test_fraction = 0.25
seed = 3

[evaluation]
protocols = ["sampled-49", "full"]
metrics = ["hr", "ndcg@5", "mrr", "coverage"]
cutoffs = [10, 20]

[[models]]
name = "most-popular"

[[models]]
name = "ials"
label = "iALS small"
params = { factors = 8, epochs = 2 }
"""


def _error(text: str) -> str:
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiment(text, source="exp.toml")
    return str(info.value)


def test_good_file_is_typed_and_defaults_fill_in() -> None:
    exp = parse_experiment(GOOD)
    assert exp.experiment.seeds == [0, 1]
    assert exp.split.options() == {"test_fraction": 0.25}
    assert exp.labels() == ["most-popular", "iALS small"]
    assert exp.evaluation.metric_names() == ["HR@10", "HR@20", "NDCG@5", "MRR", "Coverage@10",
                                             "Coverage@20"]
    assert exp.report.enabled and exp.report.max_k == 50
    assert exp.evaluation.ties == "pessimistic"


@pytest.mark.parametrize(("edit", "expected"), [
    (("[split]", "[split]\nfractoin = 0.1"), "exp.toml: split.fractoin: unknown key 'fractoin'"),
    (("[evaluation]", "[evaluation]\nmetrik = []"), "did you mean 'metrics'"),
    (("[experiment]", "[experimnt]\n[experiment]"), ("unknown key 'experimnt' (did you mean "
                                                    "'experiment'")),
    (('name = "ials"', 'name = "ialz"'), ("models[1].name: unknown model 'ialz' (did you mean "
                                         "'ials'")),
    (("factors = 8", "factor = 8"), ("models[1].params.factor: unknown parameter of ials "
                                    "'factor' (did you mean 'factors'")),
    (("seeds = [0, 1]", 'seeds = "0"'), "experiment.seeds: expected a list, got a string"),
    (("seeds = [0, 1]", 'seeds = [0, "a"]'), "experiment.seeds[1]: expected int, got a string"),
    (("test_fraction = 0.25", "test_fraction = true"), ("split.test_fraction: expected float, "
                                                       "got a boolean")),
    (('method = "random"', 'method = "leave-last-out"'), ("split.test_fraction: does not apply "
                                                         "to split method 'leave-last-out'")),
    (('method = "random"', 'method = "u1"'), "canonical ML-100K fold"),
    (('"sampled-49"', '"sampled"'), "evaluation.protocols[0]: unknown protocol 'sampled'"),
    (('"ndcg@5"', '"ndgc@5"'), "evaluation.metrics: unknown metric 'ndgc@5'"),
    (("cutoffs = [10, 20]", "cutoffs = [0]"), "evaluation.cutoffs[0]: must be an integer in [1,"),
    (('protocols = ["sampled-49", "full"]', 'protocols = ["sampled-49"]'),
     "Coverage@10, Coverage@20 need the 'full' protocol"),
    (('label = "iALS small"', 'label = "most-popular"'), "labels must be unique"),
    (("factors = 8", 'factors = "8"'), ("models[1].params.factors: must be an integer in "
                                       "[1, 10000], got '8'")),
    (("factors = 8", "factors = 8.5"), "models[1].params.factors: must be an integer"),
    (('name = "most-popular"', 'name = "most-popular"\nparams = { k = 1 }'),
     "models[0].params.k: unknown parameter of most-popular 'k'"),
    (("n_users = 100", "n_userz = 100"), "data.options.n_userz: unknown option"),
    (('dataset = "synthetic"', 'dataset = "no-such-thing"'), ("data.dataset: 'no-such-thing' is "
                                                             "neither a registered dataset")),
    (("seeds = [0, 1]", "seeds = [0, 0]"), "experiment.seeds: repeats a seed"),
])
def test_malformed_files_name_the_key_and_problem(edit: tuple[str, str], expected: str) -> None:
    old, new = edit
    assert old in GOOD
    assert expected in _error(GOOD.replace(old, new, 1))


def test_missing_models_and_required_name() -> None:
    assert "models: missing (required)" in _error('[experiment]\nname = "x"\n')
    assert "models[0].name: missing (required)" in _error("[[models]]\nlabel = 'x'\n")


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    assert "exp.toml: invalid TOML" in _error("[experiment\n")
    with pytest.raises(ExperimentConfigError, match="cannot read"):
        load_experiment(tmp_path / "none.toml")


def test_dataset_file_is_found_beside_the_experiment(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("user,item\n1,2\n")
    (tmp_path / "exp.toml").write_text('[data]\ndataset = "log.csv"\n[[models]]\n'
                                       'name = "most-popular"\n')
    exp = load_experiment(tmp_path / "exp.toml")
    assert Path(exp.data.dataset) == tmp_path / "log.csv"


def test_resolved_config_is_a_runnable_file_that_resolves_the_same() -> None:
    exp = parse_experiment(GOOD)
    config = resolved_config(exp)
    assert list(config)[:6] == ["experiment", "data", "split", "evaluation", "models", "report"]
    ials = config["models"][1]
    assert ials["params"]["factors"] == 8 and ials["params"]["reg"] == 30.0
    assert "seed" not in ials["params"]  # the run seeds set it
    assert config["split"] == {"method": "random", "seed": 3, "test_fraction": 0.25}
    again = parse_experiment(tomlw.dumps(config))
    assert resolved_config(again) == config


def test_toml_writer_round_trips_values() -> None:
    document = {"a": {"s": 'q"u\\ote\né', "f": 1e-5, "g": 3.0, "i": -2, "b": False,
                      "l": [1, 2], "t": (0.5, 2), "inline": {"x": 1, "skip": None}},
                "arr": [{"name": "x", "params": {"nested": {"k": 1}}}, {"name": "y"}],
                "sub": {"space": {"p": {"low": 1, "high": 2}}}}
    back = tomllib.loads(tomlw.dumps(document))
    assert back["a"]["s"] == 'q"u\\ote\né' and back["a"]["f"] == 1e-5
    assert back["a"]["t"] == [0.5, 2] and back["a"]["inline"] == {"x": 1}
    assert back["arr"][0]["params"]["nested"] == {"k": 1} and back["arr"][1] == {"name": "y"}
    assert back["sub"]["space"]["p"] == {"low": 1, "high": 2}
    assert math.isinf(tomllib.loads(tomlw.dumps({"t": {"v": math.inf}}))["t"]["v"])
    with pytest.raises(TypeError, match="cannot write"):
        tomlw.dumps({"t": {"v": object()}})


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "examples").glob("*.toml")),
                         ids=lambda p: p.name)
def test_example_files_are_valid(path: Path) -> None:
    exp = load_experiment(path)
    assert exp.models and exp.data.dataset == "ml-100k"


def test_a_binary_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_bytes(b"\xff\xfe[experiment]")
    with pytest.raises(ExperimentConfigError, match=r"exp.toml: not a UTF-8 text file \(byte 0"):
        load_experiment(path)


def test_rating_metrics_for_a_ranking_model_are_refused_while_reading() -> None:
    text = GOOD.replace('metrics = ["hr", "ndcg@5", "mrr", "coverage"]', 'metrics = ["rmse"]')
    assert _error(text).startswith("exp.toml: models[0].name: RMSE needs a model that "
                                   "predicts ratings; most-popular only ranks items")
