"""Hyperparameter and option rules (`recforge.params`): the rules themselves, their declaration
by every model, and each invalid value reported as one line naming the parameter -- from
Python, an experiment file and the command line -- before any data is loaded."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recforge.cli import main
from recforge.errors import InputError, ParameterError, TrainingDivergedError, UnknownNameError
from recforge.experiments import tomlw
from recforge.experiments.config import ExperimentConfigError, load_experiment
from recforge.models import create_model, get_model_class, model_names
from recforge.models.base import Recommender
from recforge.models.factorization.blend import LinearBlend
from recforge.models.factorization.bpr import BPR
from recforge.models.factorization.mf import BiasedMF
from recforge.models.neighbours.ease import EASE
from recforge.models.neural.ncf import MLP, NeuMF
from recforge.nn.trainer import TrainingConfig
from recforge.params import (
    Boolean,
    Choice,
    Integer,
    Mapping,
    Optional,
    Real,
    Sequence,
    Text,
    check_all,
)
from recforge.testing import contract_data


def _error(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------- the rules
@pytest.mark.parametrize(("rule", "value", "expected"), [
    (Integer(1), 3, 3), (Integer(1), np.int64(3), 3), (Integer(0, 5), 0, 0),
    (Real(0, low_open=True), 2, 2.0), (Real(0, low_open=True), np.float32(0.5), 0.5),
    (Real(allow_inf=True), math.inf, math.inf), (Real(0, 1), 1, 1.0),
    (Boolean(), np.bool_(True), True), (Choice("a", "b"), "b", "b"),
    (Optional(Integer(1)), None, None), (Sequence(Integer(1)), [1, 2], (1, 2)),
    (Mapping(Integer(1)), {"zip": 2}, {"zip": 2}), (Text(), Path("x"), "x"),
])
def test_rules_accept_and_canonicalise(rule: Any, value: Any, expected: Any) -> None:
    checked = rule.check("p", value)
    assert checked == expected and type(checked) is type(expected)


@pytest.mark.parametrize(("rule", "value", "message"), [
    (Integer(1), 2.5, "p: must be an integer >= 1, got 2.5"),
    (Integer(1), 2.0, "p: must be an integer >= 1, got 2.0"),
    (Integer(1), True, "p: must be an integer >= 1, got True"),
    (Integer(1), 0, "p: must be an integer >= 1, got 0"),
    (Integer(1, 10), 10**9, "p: must be an integer in [1, 10], got 1000000000"),
    (Integer(1), "3", "p: must be an integer >= 1, got '3'"),
    (Real(0, low_open=True), math.nan, "p: must be a finite number > 0, got nan"),
    (Real(0, low_open=True), math.inf, "p: must be a finite number > 0, got inf"),
    (Real(0, low_open=True), 0, "p: must be a finite number > 0, got 0"),
    (Real(0), -1e-9, "p: must be a finite number >= 0, got -1e-09"),
    (Real(0), "abc", "p: must be a finite number >= 0, got 'abc'"),
    (Real(0), False, "p: must be a finite number >= 0, got False"),
    (Real(0), 10**400, "p: must be a finite number >= 0, got 1000000000"),
    (Real(0, 1, high_open=True), 1.0, "p: must be a finite number in [0, 1), got 1.0"),
    (Boolean(), 1, "p: must be true or false, got 1"),
    (Boolean(), "true", "p: must be true or false, got 'true'"),
    (Choice("a", "b"), ["a"], "p: must be one of 'a', 'b', got ['a']"),
    (Sequence(Integer(1), min_len=2), "[16, 8", "p: must be a list of at least 2 items"),
    (Sequence(Integer(1), min_len=2), [16], "p: must have 2 to"),
    (Sequence(Integer(1)), [16, [8]], "p[1]: must be an integer >= 1, got [8]"),
    (Optional(Integer(1)), 0, "p: must be an integer >= 1 or null, got 0"),
    (Mapping(Integer(1)), {"zip": 0}, "p.zip: must be an integer >= 1, got 0"),
    (Text("auto|cpu", "'auto' or 'cpu'"), "gpu", "p: must be 'auto' or 'cpu', got 'gpu'"),
])
def test_rules_refuse_with_one_line_naming_the_parameter(rule: Any, value: Any,
                                                         message: str) -> None:
    with pytest.raises(ParameterError) as info:
        rule.check("p", value)
    assert _error(info).startswith(message)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    assert info.value.param.startswith("p")  # type: ignore[attr-defined]


def test_check_all_names_unknown_parameters() -> None:
    with pytest.raises(ParameterError, match="^m.x: unknown parameter; valid: a"):
        check_all({"a": Integer()}, {"x": 1}, where="m.")


# ---------------------------------------------------------------------- declarations
@pytest.mark.parametrize("name", model_names())
def test_every_parameter_has_a_rule_and_the_defaults_pass(name: str) -> None:
    cls = get_model_class(name)
    rules = cls.rules()  # raises when a parameter has no rule
    assert set(rules) == set(cls.param_names())
    defaults = cls().get_params()
    assert cls.validate_params(defaults) == defaults


def test_defaults_keep_their_values() -> None:
    """The rules only canonicalise types; every default is unchanged."""
    assert EASE().get_params() == {"reg": 30.0, "dtype": "float64", "dropout": 0.0,
                                   "weight_exponent": 0.3}
    assert MLP().layers == (128, 64, 32, 16) and MLP().learning_rate == 0.003


# ---------------------------------------------------------------------- the listed cases
@pytest.mark.parametrize(("name", "params", "message"), [
    ("ease", {"reg": math.nan}, "reg: must be a finite number > 0, got nan"),
    ("ease", {"reg": math.inf}, "reg: must be a finite number > 0, got inf"),
    ("ease", {"reg": -1.0}, "reg: must be a finite number > 0, got -1.0"),
    ("ease", {"dropout": 1.0}, "dropout: must be a finite number in [0, 1), got 1.0"),
    ("bpr", {"epochs": 0}, "epochs: must be an integer in [1, "),
    ("ials", {"epochs": -3}, "epochs: must be an integer in [1, "),
    ("gmf", {"epochs": 0}, "epochs: must be an integer in [1, "),
    ("biased-mf", {"factors": 0}, "factors: must be an integer in [1, 100000], got 0"),
    ("ials", {"factors": 10**9}, "factors: must be an integer in [1, 10000], got 1000000000"),
    ("als-wr", {"factors": 20_000}, "factors: must be an integer in [1, 10000], got 20000"),
    ("two-tower", {"id_dim": 10**9}, "id_dim: must be an integer in [1, 100000]"),
    ("biased-mf", {"reg": -0.1}, "reg: must be a finite number >= 0, got -0.1"),
    ("ials", {"reg": -1}, "reg: must be a finite number >= 0, got -1"),
    ("bpr", {"learning_rate": math.nan}, "learning_rate: must be a finite number > 0, got nan"),
    ("bpr", {"factors": 2.5}, "factors: must be an integer in [1, 100000], got 2.5"),
    ("bpr", {"factors": True}, "factors: must be an integer in [1, 100000], got True"),
    ("ease", {"reg": "abc"}, "reg: must be a finite number > 0, got 'abc'"),
    ("mlp", {"layers": "[16, 8"}, "layers: must be a list of at least 2 items"),
    ("mlp", {"layers": [15, 8]}, "layers[0]: the input width must be even"),
    ("mlp", {"layers": [16, 0]}, "layers[1]: must be an integer in [1, 100000], got 0"),
    ("bpr", {"seed": -1}, "seed: must be an integer in [0, 4294967295], got -1"),
    ("random", {"seed": 1.0}, "seed: must be an integer in [0, 4294967295], got 1.0"),
    ("gmf", {"patience": 0}, "patience: must be an integer in [1, "),
    ("gmf", {"device": "gpu"}, "device: must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ("gmf", {"negatives": 10**9}, "negatives: must be an integer in [1, 1000]"),
    ("gmf", {"clip_norm": 0.0}, "clip_norm: must be a finite number > 0 or null, got 0.0"),
    ("biased-mf", {"strata": 0}, "strata: must be an integer in [1, 1024] or null, got 0"),
    ("bpr", {"n_shards": 10**6}, "n_shards: must be an integer in [1, 1024]"),
    ("two-tower", {"history_length": 10**9}, "history_length: must be an integer in [1, 10000]"),
    ("two-tower", {"text_method": "bert"}, "text_method: must be one of 'auto', 'minilm'"),
    ("user-knn", {"similarity": "adjusted-cosine"}, "similarity: must be one of 'cosine'"),
    ("item-knn-implicit", {"bm25_b": 2}, "bm25_b: must be a finite number in [0, 1], got 2"),
    ("neumf", {"gmf_params": {"epochs": 0}}, "gmf_params.epochs: must be an integer in [1, "),
    ("neumf", {"mlp_params": {"layrs": [8, 4]}}, "mlp_params.layrs: MLP has no parameter"),
    ("blend", {"models": ["most-popular"]}, "models[0]: blend member 'most-popular' does not"),
    ("blend", {"params": {"truncated-svd": {"factors": 0}}},
     "params.truncated-svd.factors: must be an integer"),
    ("blend", {"params": {"nope": {}}}, "params key: unknown model 'nope'"),
    ("blend", {"valid_fraction": 1.0}, "valid_fraction: must be a finite number in (0, 1)"),
])
def test_invalid_values_name_the_parameter(name: str, params: dict[str, Any],
                                           message: str) -> None:
    with pytest.raises(ParameterError) as info:
        create_model(name, **params)
    assert _error(info).startswith(message)


def test_ints_pass_for_floats_and_numpy_scalars_are_accepted() -> None:
    model = EASE(reg=np.float32(5.0), dropout=0)
    assert model.reg == 5.0 and type(model.reg) is float and type(model.dropout) is float
    bpr = BPR(factors=np.int64(8), seed=np.uint32(3))
    assert bpr.factors == 8 and type(bpr.factors) is int and type(bpr.seed) is int


def test_set_params_checks_and_changes_nothing_on_error() -> None:
    model = BiasedMF(factors=8)
    with pytest.raises(ParameterError,
                       match=r"^learning_rate: must be a finite number > 0, got -1"):
        model.set_params(factors=16, learning_rate=-1)
    assert model.factors == 8 and model.learning_rate == 0.02
    assert model.set_params(factors=np.int32(16)).factors == 16
    with pytest.raises(ParameterError, match="^nope: BiasedMF has no parameter 'nope'"):
        model.set_params(nope=1)


def test_validate_params_is_the_shared_check() -> None:
    assert BPR.validate_params({"factors": 8, "learning_rate": 1}) == {
        "factors": 8, "learning_rate": 1.0}
    with pytest.raises(ParameterError, match=r"^models\[0\].params.reg: must be"):
        EASE.validate_params({"reg": 0}, where="models[0].params.")


def test_training_config_uses_the_same_rules() -> None:
    with pytest.raises(ParameterError, match="^learning_rate: must be a finite number > 0"):
        TrainingConfig(learning_rate=math.nan)
    with pytest.raises(ParameterError, match="^lr_gamma: must be a finite number in"):
        TrainingConfig(lr_gamma=math.inf)


def test_cross_parameter_checks_name_the_parameters() -> None:
    with pytest.raises(ParameterError, match="^weighting: similarity 'jaccard'"):
        create_model("user-knn-implicit", similarity="jaccard").fit(contract_data())


def test_saved_parameters_pass_the_rules_again() -> None:
    """The canonical values (tuples, floats) survive a get_params -> constructor round trip."""
    model = NeuMF(layers=[8, 4], gmf_params={"epochs": 2}, learning_rate=1)
    params = model.get_params()
    assert params["layers"] == (8, 4) and params["learning_rate"] == 1.0
    assert NeuMF(**params).get_params() == params


# ---------------------------------------------------------------------- non-finite fits
class _Degenerate(Recommender):
    """A model whose fit produces a NaN (as a diverged optimiser would)."""

    param_rules = {"bad": Boolean()}  # noqa: RUF012

    def __init__(self, bad: bool = True):
        self.bad = bad

    def _fit(self, train: Any, valid: Any) -> None:
        self.item_factors_ = np.ones((self.n_items_, 2), dtype=np.float32)
        self.item_factors_[0, 1] = np.nan if self.bad else 0.0

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.zeros((len(users), self.n_items_), dtype=np.float32)


def test_non_finite_learned_state_is_a_clear_error() -> None:
    with pytest.raises(TrainingDivergedError) as info:
        _Degenerate().fit(contract_data())
    assert _error(info).startswith("_Degenerate: training produced NaN or infinite values in "
                                   "item_factors_")
    assert isinstance(info.value, InputError) and isinstance(info.value, FloatingPointError)
    assert _Degenerate(bad=False).fit(contract_data()).item_factors_.shape[1] == 2


@pytest.mark.parametrize(("name", "params", "where"), [
    ("biased-mf", {"learning_rate": 1000.0, "epochs": 3, "factors": 4}, "user_bias_"),
    ("bpr", {"learning_rate": 1e30, "epochs": 2, "factors": 4}, "user_factors_"),
    ("ials", {"alpha": 1e30, "epochs": 1, "factors": 4}, "user_factors_"),
    ("als-wr", {"reg": 1e-30, "epochs": 2, "factors": 30}, "user_factors_"),
])
def test_degenerate_fits_are_detected(name: str, params: dict[str, Any], where: str) -> None:
    """Finite but absurd settings make the numba kernels produce NaN: reported at the end of
    `fit` (not a numba SystemError, not empty recommendation lists)."""
    with pytest.raises(TrainingDivergedError, match=f"training produced NaN .* in {where}"), \
            np.errstate(all="ignore"):
        create_model(name, **params).fit(contract_data())


def test_diverging_neural_training_is_an_input_error() -> None:
    with pytest.raises(TrainingDivergedError, match="diverged"):
        create_model("gmf", learning_rate=1e30, epochs=2, factors=4,
                     optimizer="sgd").fit(contract_data())


# ---------------------------------------------------------------------- experiment files
GOOD = """
[experiment]
name = "rules"
seeds = [0]

[data]
dataset = "synthetic"

[split]
method = "random"
seed = 0

[evaluation]
cutoffs = [10]

[report]
max_k = 50

[[models]]
name = "ease"
params = { reg = 30.0 }
"""


def _toml_error(tmp_path: Path, old: str, new: str) -> str:
    assert old in GOOD
    path = tmp_path / "exp.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ExperimentConfigError) as info:
        load_experiment(path)
    return _error(info)


def test_good_experiment_loads(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(GOOD)
    assert load_experiment(path).models[0].params == {"reg": 30.0}


@pytest.mark.parametrize(("old", "new", "message"), [
    ("reg = 30.0", "reg = nan", "models[0].params.reg: must be a finite number > 0, got nan"),
    ("reg = 30.0", "reg = -inf", "models[0].params.reg: must be a finite number > 0, got -inf"),
    ("reg = 30.0", 'reg = "abc"', "models[0].params.reg: must be a finite number > 0, got 'abc'"),
    ("reg = 30.0", "dropout = true", "models[0].params.dropout: must be a finite number in"),
    ('name = "ease"\nparams = { reg = 30.0 }', ('name = "neumf"\nparams = { gmf_params = '
     '{ epochs = 0 } }'), "models[0].params.gmf_params.epochs: must be an integer in [1, "),
    ('name = "ease"\nparams = { reg = 30.0 }', 'name = "mlp"\nparams = { layers = [16, [8]] }',
     "models[0].params.layers[1]: must be an integer in [1, 100000], got [8]"),
    ("seeds = [0]", "seeds = [-1]", "experiment.seeds[0]: must be an integer in [0, 4294967295]"),
    ("seeds = [0]", "seeds = [1.5]", "experiment.seeds[0]: expected int"),
    ("seeds = [0]", "seeds = [true]", "experiment.seeds[0]: expected int, got a boolean"),
    ("seed = 0", "seed = -5", "split.seed: must be an integer in [0, 4294967295], got -5"),
    ("seed = 0", "seed = 0\ntest_fraction = 1.5", ("split.test_fraction: must be a finite number "
     "in (0, 1), got 1.5")),
    ("seed = 0", "seed = 0\ntest_fraction = nan", "split.test_fraction: must be a finite number"),
    ("seed = 0", "seed = 0\ntest_fraction = 0", "split.test_fraction: must be a finite number"),
    ('method = "random"', 'method = "user-holdout"\ntest_users = -3',
     "split.test_users: must be an integer in [1, "),
    ('method = "random"', 'method = "user-holdout"\ntest_users = 1.0',
     "split.test_users: must be a finite number in (0, 1), got 1.0"),
    ('method = "random"', 'method = "leave-last-out"\nn = 0', "split.n: must be an integer in"),
    ("cutoffs = [10]", "cutoffs = [1000000000]", ("evaluation.cutoffs[0]: must be an integer in "
     "[1, 100000], got 1000000000")),
    ("max_k = 50", "max_k = 0", "report.max_k: must be an integer in [1, 100000], got 0"),
    ('dataset = "synthetic"', 'dataset = "synthetic"\noptions = { n_users = 1.5 }',
     "data.options.n_users: must be an integer, got 1.5"),
    ('dataset = "synthetic"', 'dataset = "synthetic"\noptions = { n_items = true }',
     "data.options.n_items: must be an integer, got True"),
    ('dataset = "synthetic"', 'dataset = "synthetic"\noptions = { seed = -1 }',
     "data.options.seed: must be an integer in [0, 4294967295], got -1"),
    ('dataset = "synthetic"', 'dataset = "synthetic"\noptions = { affinity = inf }',
     "data.options.affinity: must be a finite number, got inf"),
    ('dataset = "synthetic"', 'dataset = "synthetic"\noptions = { feedback = "both" }',
     "data.options.feedback: must be one of 'explicit', 'implicit', got 'both'"),
])
def test_experiment_files_name_the_dotted_key(tmp_path: Path, old: str, new: str,
                                              message: str) -> None:
    assert f"exp.toml: {message}" in _toml_error(tmp_path, old, new)


# ---------------------------------------------------------------------- command line
def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(argv))
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return int(info.value.code), err


MISSING = ["--dataset", "/no/such/data.csv"]  # loading it would fail: errors must come first


@pytest.mark.parametrize(("argv", "message"), [
    (["evaluate", "--model", "ease", "--param", "reg=NaN"], "reg: must be a finite number > 0"),
    (["evaluate", "--model", "ease", "--param", "reg=Infinity"], "reg: must be a finite"),
    (["evaluate", "--model", "ease", "--param", "reg=abc"], "reg: must be a finite number"),
    (["evaluate", "--model", "bpr", "--param", "learning_rate=NaN"], "learning_rate: must be"),
    (["evaluate", "--model", "bpr", "--param", "factors=2.5"], "factors: must be an integer"),
    (["evaluate", "--model", "bpr", "--param", "epochs=0"], "epochs: must be an integer"),
    (["evaluate", "--model", "mlp", "--param", "layers=[16,8"], "layers: must be a list"),
    (["evaluate", "--model", "ials", "--param", "factors=1000000000"], "factors: must be"),
    (["evaluate", "--model", "ials", "--param", "use_values=1"], "use_values: must be true or"),
    (["evaluate", "--model", "ease", "--seed", "-1"], ("argument --seed: must be an integer in "
     "[0, 4294967295], got -1")),
    (["evaluate", "--model", "ease", "--seed", "1.5"], "argument --seed: must be an integer"),
    (["split", "--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295]"),
    (["train", "--model", "ease", "--seed", "-2", "--out", "/tmp/x"], "argument --seed"),
    (["quickstart", "--seed", "-1"], "argument --seed: must be an integer"),
    (["recommend", "--model", "m", "--user", "1", "-k", "0"], ("argument -k: must be an integer "
     "in [1, 100000], got 0")),
    (["similar", "--model", "m", "--item", "1", "-k", "1000000000"], "argument -k: must be"),
    (["tune", "exp.toml", "--trials", "0"], "argument --trials: must be an integer in [1, "),
    (["tune", "exp.toml", "--timeout", "nan"], "argument --timeout: must be a finite number > 0"),
    (["evaluate", "--model", "ease", "--protocol", "sampled-0"], ("protocol 'sampled-0': N: "
     "must be an integer in [1, ")),
    (["evaluate", "--model", "ease", "--protocol", "sampled-10000000000"], ("protocol "
     "'sampled-10000000000': N: must be an integer in [1, 2147483647]")),
    (["evaluate", "--model", "ease", "--protocol", "sampled--5"], ("unknown protocol "
     "'sampled--5'")),
])
def test_cli_errors_are_one_line_before_any_data_is_loaded(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    extra = MISSING if argv[0] in ("evaluate", "split", "train") else []
    code, err = _cli(argv + extra, capsys)
    assert code == 2
    assert message in err
    assert "/no/such/data.csv" not in err


def test_experiment_seed_in_a_toml_run_is_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(tomlw.dumps({"experiment": {"name": "x", "seeds": [-1]},
                                 "models": [{"name": "ease"}]}))
    code, err = _cli(["run", str(path)], capsys)
    assert code == 2 and "experiment.seeds[0]: must be an integer in [0, 4294967295]" in err


def test_blend_checks_its_members_at_construction() -> None:
    members = ["truncated-svd", "biased-mf"]
    assert LinearBlend(models=members).models == tuple(members)
    with pytest.raises(ParameterError, match=r"^models: must be a list of at least 1 items"):
        LinearBlend(models=[])


@pytest.mark.parametrize("k", [0, -1, 2.5, True, 10**9, "10"])
def test_recommend_and_similar_items_check_k(k: Any) -> None:
    """A cut-off of the wrong kind, or one whose padded lists would exhaust memory."""
    model = EASE().fit(contract_data())
    with pytest.raises(ParameterError, match="^k: must be an integer in \\[1, 100000\\]"):
        model.recommend([0], k=k)
    with pytest.raises(ParameterError, match="^k: must be an integer in \\[1, 100000\\]"):
        model.similar_items([0], k=k)
    assert model.recommend([0], k=np.int64(3))[0].shape == (1, 3)


@pytest.mark.parametrize(("settings", "message"), [
    ({"lambda_": math.nan}, "lambda_: must be a finite number in [0, 1], got nan"),
    ({"candidates": 2.5}, "candidates: must be an integer in [1, 100000], got 2.5"),
    ({"candidates": 10**9}, "candidates: must be an integer in [1, 100000]"),
    ({"batch_size": 0}, "batch_size: must be an integer in [1, "),
])
def test_reranker_options_follow_the_rules(settings: dict[str, Any], message: str) -> None:
    from recforge.rerank.mmr import MMRReranker

    with pytest.raises(ParameterError) as info:
        MMRReranker(**settings)
    assert _error(info).startswith(message)


def test_unknown_names_suggest_the_closest() -> None:
    from recforge.models.registry import get_model_class

    with pytest.raises(UnknownNameError, match=r"unknown model 'eas' \(did you mean 'ease'\?\)"):
        get_model_class("eas")
    with pytest.raises(ParameterError, match=r"regg: .* \(did you mean 'reg'\?\)"):
        get_model_class("ease").validate_params({"regg": 1})
