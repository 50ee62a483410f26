"""Property tests: hostile values for every parameter of every registered model.

Construction either succeeds with a valid value (finite, of the default's kind, accepted
again as is) or raises `ParameterError` with one line that names the parameter; the same
value given on the command line (``recforge evaluate --param name=value``) exits with
status 2 and one line naming the parameter before any data is loaded, and in an experiment
file `load_experiment` names the dotted key. Construction only: nothing is fitted.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from recforge.cli import main
from recforge.cli.common import parse_value
from recforge.errors import ParameterError
from recforge.experiments import tomlw
from recforge.experiments.config import ExperimentConfigError, load_experiment
from recforge.experiments.tomlw import tomllib
from recforge.models import get_model_class, model_names

#: every (model, parameter) pair of the registered models
PAIRS = [(model, name) for model in model_names()
         for name in get_model_class(model).param_names()]
SETTINGS = settings(max_examples=10, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
#: the command line and experiment files each build a parser or read a file per example
SLOW_SETTINGS = settings(SETTINGS, max_examples=3)

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_scalars = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 0.5, 1.0, 1e300, 5e-324,
                     0, -1, 1, 2, 3, 8, 10**9, 2**31, 2**63, -(2**63), True, False, None]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30), st.booleans(), st.none(), _text,
    st.sampled_from(["nan", "inf", "1e400", "[16, 8", "cpu", "cuda:0", "uniform", "cosine"]),
    st.builds(np.float32, st.floats(width=32)), st.builds(np.int64, st.integers(-5, 10**6)),
    st.builds(np.bool_, st.booleans()),
)
#: scalars, lists (nested), tables
HOSTILE = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=3)), max_leaves=8)
#: what JSON (the command line) and TOML can spell: no None inside containers, no numpy
_plain = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 0.5, 0, -1, 1,
                                    3, 10**9, True, False, "", "abc", "[16, 8"]),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-(2**63), 2**63 - 1), st.booleans(),
                   st.text(st.characters(codec="ascii", exclude_categories=("Cc",)),
                           max_size=10))
SPELLABLE = st.recursive(_plain, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=3)),
    max_leaves=6)


#: every kind of value, always tried for every parameter (Hypothesis then draws more)
HOSTILE_EXAMPLES = [math.nan, math.inf, -math.inf, 0, -1, 0.0, -1.0, 0.5, 2.5, 10**9, 10**30,
                    1e300, True, False, None, "abc", "", "nan", "[16, 8", [], [1, 2], [[8], 4],
                    {"a": 1}, np.float32("nan"), np.int64(-3), np.bool_(True)]
#: the same kinds as command-line text
TEXT_EXAMPLES = ["NaN", "Infinity", "-Infinity", "0", "-1", "0.0", "2.5", "1000000000",
                 "1e400", "true", "null", "abc", "", "[16, 8", "[1, [2]]", '{"a": 1}']
#: and as TOML values
TOML_EXAMPLES = [math.nan, math.inf, -1, 0, 0.0, 2.5, 10**9, True, "abc", [16, [8]], [],
                 {"a": 1}]


def _with_examples(argument: str, values: list[Any]) -> Any:
    """Decorator: an explicit Hypothesis example per value, as keyword ``argument``."""

    def decorate(test: Any) -> Any:
        for value in values:
            test = example(**{argument: value})(test)
        return test

    return decorate


def _construct(model: str, name: str, value: Any) -> Any:
    """The model, or the ParameterError; anything else fails the test."""
    try:
        return get_model_class(model)(**{name: value})
    except ParameterError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert message.startswith(name), message
        return exc


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def _kept_kind(value: Any, stored: Any) -> bool:
    """A rule canonicalises but never converts between kinds (a bool is not an int, a float is
    not an int, a string is not a number or a list); only an int may become a float."""
    if isinstance(value, (bool, np.bool_)):
        return isinstance(stored, bool)
    if isinstance(value, (float, np.floating)):
        return type(stored) is float
    if isinstance(value, (int, np.integer)):
        return type(stored) in (int, float)
    if isinstance(value, str):
        return isinstance(stored, str)
    if isinstance(value, (list, tuple)):
        return isinstance(stored, (list, tuple))
    if isinstance(value, dict):
        return isinstance(stored, dict)
    return value is None and stored is None


def _same_kind(default: Any, value: Any) -> bool:
    """A valid value has its default's type (bool, int, float, str, tuple); a parameter that
    defaults to None takes None or a value of its own kind."""
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return type(default) is type(value)
    if isinstance(default, (int, float, str, tuple)):
        return type(value) is type(default)
    return True


@pytest.mark.parametrize(("model", "name"), PAIRS)
@SETTINGS
@given(value=HOSTILE)
@_with_examples("value", HOSTILE_EXAMPLES)
def test_construction_accepts_only_valid_values(model: str, name: str, value: Any) -> None:
    result = _construct(model, name, value)
    if isinstance(result, ParameterError):
        return
    cls = get_model_class(model)
    stored = result.get_params()[name]
    assert _finite(stored), stored
    assert _kept_kind(value, stored), (value, stored)
    assert _same_kind(cls().get_params()[name], stored), (stored, cls().get_params()[name])
    assert cls.validate_params({name: stored}) == {name: stored}  # canonical: a fixed point
    assert type(result)(**result.get_params()).get_params() == result.get_params()


@pytest.mark.parametrize(("model", "name"), PAIRS)
@SETTINGS
@given(value=HOSTILE)
def test_set_params_follows_the_same_rule(model: str, name: str, value: Any) -> None:
    built = _construct(model, name, value)
    target = get_model_class(model)()
    before = target.get_params()
    try:
        target.set_params(**{name: value})
    except ParameterError as exc:
        assert isinstance(built, ParameterError) and str(exc) == str(built)
        assert target.get_params() == before  # nothing changed
        return
    assert not isinstance(built, ParameterError)
    assert target.get_params()[name] == built.get_params()[name]


@pytest.mark.parametrize(("model", "name"), PAIRS)
@SLOW_SETTINGS
@given(text=st.one_of(SPELLABLE.map(json.dumps),
                      st.text(st.characters(codec="ascii", exclude_categories=("Cc",)),
                              max_size=12)))
@_with_examples("text", TEXT_EXAMPLES)
def test_command_line_refuses_before_loading_data(model: str, name: str, text: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    refused = isinstance(_construct(model, name, parse_value(text)), ParameterError)
    capsys.readouterr()
    code = main(["evaluate", "--model", model, "--param", f"{name}={text}",
                 "--dataset", "/no/such/dataset.csv"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    if refused:  # the parameter's error, before the data is looked at
        assert name in err and "dataset.csv" not in err, err
    else:  # accepted: the run goes on to load the (missing) data
        assert "dataset.csv" in err, err


@pytest.mark.parametrize(("model", "name"), PAIRS)
@SLOW_SETTINGS
@given(value=SPELLABLE)
@_with_examples("value", TOML_EXAMPLES)
def test_experiment_file_names_the_dotted_key(model: str, name: str, value: Any,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("exp") / "exp.toml"
    path.write_text(tomlw.dumps({"experiment": {"name": "hostile"},
                                 "data": {"dataset": "synthetic"},
                                 "models": [{"name": model, "params": {name: value}}]}))
    written = tomllib.loads(path.read_text())["models"][0]["params"].get(name)
    assume(written is not None)  # TOML has no null: an empty value is left out
    built = _construct(model, name, written)
    try:
        load_experiment(path)
    except ExperimentConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert isinstance(built, ParameterError), message
        assert f"{path}: models[0].params.{name}" in message, message
        return
    assert not isinstance(built, ParameterError), str(built)
