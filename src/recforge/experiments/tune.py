"""`recforge tune`: search one model's hyperparameters with Optuna's TPE sampler.

Every trial fits on the training part minus a validation split carved from it
(`recforge.data.splits.validation_split`) and is scored on that validation split; the test
part of the experiment's split is dropped as soon as the data is split and never reaches a
model or an evaluator. The sampler is seeded with the experiment's first seed, so the same
file gives the same trials. The result is the experiment file with the best hyperparameters
filled in, and the table of trials.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recforge.data.interactions import Interactions
from recforge.data.splits import Split, validation_split
from recforge.evaluation import Evaluator
from recforge.evaluation.metrics import parse_metric
from recforge.experiments import tomlw
from recforge.experiments.config import (
    LOWER_IS_BETTER,
    Experiment,
    KeyProblem,
    ParamSpace,
    SplitSection,
    TuneSection,
    check_rule,
    checked,
    resolved_config,
    unknown_key,
    validate_split,
)
from recforge.experiments.runner import Step, load_split, quiet_step
from recforge.experiments.steps import SPLIT_METHODS, build_model
from recforge.params import MAX_COUNT, Integer, Optional, Real, Rule


def _int(low: int, high: int, log: bool = True) -> ParamSpace:
    return ParamSpace("int", low, high, log)


def _float(low: float, high: float, log: bool = True) -> ParamSpace:
    return ParamSpace("float", low, high, log)


_FACTORS = _int(8, 256)
_SGD_MF = {"factors": _FACTORS, "lr": _float(1e-3, 0.05), "reg": _float(1e-3, 0.3)}
_NEURAL = {"learning_rate": _float(1e-4, 1e-2), "weight_decay": _float(1e-7, 1e-3)}
_EXPLICIT_KNN = {"k": _int(5, 200), "shrinkage": _float(0.0, 300.0, log=False)}

#: search spaces used when ``[tune.space]`` is not given, by model name
BUILTIN_SPACES: dict[str, dict[str, ParamSpace]] = {
    "ials": {"factors": _FACTORS, "regularization": _float(0.1, 100.0),
             "alpha": _float(0.1, 30.0)},
    "bpr": {"factors": _FACTORS, "learning_rate": _float(5e-3, 0.2),
            "regularization": _float(1e-4, 0.1)},
    "ease": {"reg": _float(1.0, 10_000.0)},
    "item-knn-implicit": {"k": _int(10, 1000), "shrinkage": _float(0.0, 100.0, log=False)},
    "user-knn-implicit": {"k": _int(5, 500), "shrinkage": _float(0.0, 100.0, log=False)},
    "item-knn": _EXPLICIT_KNN,
    "user-knn": _EXPLICIT_KNN,
    "biased-mf": _SGD_MF,
    "svdpp": _SGD_MF,
    "svd": {"factors": _int(2, 100)},
    "als": {"factors": _int(2, 64), "reg": _float(0.01, 1.0)},
    "biased-mf-als": {"factors": _int(2, 64), "reg": _float(0.5, 30.0)},
    "autorec": {"hidden": _int(50, 1000), "reg": _float(1.0, 1000.0)},
    "gmf": {"factors": _FACTORS, **_NEURAL},
    "dot-mf": {"factors": _FACTORS, **_NEURAL},
    "mlp": _NEURAL,
    "neumf": {"factors": _int(8, 128), "learning_rate": _float(1e-4, 1e-2)},
}


@dataclass
class TuneResult:
    """The best hyperparameters, their validation score and every trial."""

    model: str
    metric: str
    best_value: float
    best_params: dict[str, Any]
    trials: pd.DataFrame
    experiment: Experiment
    validation: dict[str, Any]


def search_space(experiment: Experiment) -> dict[str, ParamSpace]:
    """``[tune.space]``, or the built-in space of the tuned model."""
    tune = experiment.tune or TuneSection()
    return tune.space or BUILTIN_SPACES[experiment.tuned_model().name]


def validate_tune(experiment: Experiment) -> None:
    """Check the ``[tune]`` section (raises the config module's key problems)."""
    tune = experiment.tune or TuneSection()
    try:
        target = experiment.tuned_model()
    except KeyError:
        raise unknown_key("tune.model", str(tune.model), experiment.labels(), "model label") from None
    checked("tune.metric", parse_metric, tune.metric)
    from recforge.evaluation.protocols import make_protocol

    checked("tune.protocol", make_protocol, tune.protocol)
    check_rule("tune.trials", Integer(1, MAX_COUNT), tune.trials)
    check_rule("tune.timeout", Optional(Real(0, low_open=True)), tune.timeout)
    if tune.validation is not None:
        if tune.validation.method not in SPLIT_METHODS:
            raise unknown_key("tune.validation.method", tune.validation.method,
                              list(SPLIT_METHODS), "validation split method")
        validate_split(tune.validation, experiment.data.dataset, "tune.validation")
    if not tune.space and target.name not in BUILTIN_SPACES:
        raise KeyProblem("tune.space", f"model {target.name!r} has no built-in search space; "
                                        "give one in [tune.space]")
    from recforge.models.registry import get_model_class

    cls = get_model_class(target.name)
    valid = cls.param_names()
    for name, space in tune.space.items():
        if name not in valid:
            raise unknown_key(f"tune.space.{name}", name, valid, f"parameter of {target.name}")
        check_space(space, f"tune.space.{name}", cls.rules()[name])


def check_space(space: ParamSpace, path: str, rule: Rule) -> None:
    """A search range that can only propose values the parameter's ``rule`` accepts: its
    bounds (or choices) pass the rule, and an integer parameter has an ``int`` space."""
    if space.type == "categorical":
        if not space.choices:
            raise KeyProblem(f"{path}.choices", "a categorical space needs choices")
        for i, choice in enumerate(space.choices):
            check_rule(f"{path}.choices[{i}]", rule, choice)
        return
    if space.type not in ("int", "float"):
        raise KeyProblem(f"{path}.type", f"must be 'int', 'float' or 'categorical', "
                                          f"got {space.type!r}")
    integer = _takes_integers(rule)
    if integer and space.type != "int":
        raise KeyProblem(f"{path}.type", f"the parameter takes integers; use type = 'int', "
                                          f"got {space.type!r}")
    for end in ("low", "high", "step"):
        value = getattr(space, end)
        if value is None:
            continue
        check_rule(f"{path}.{end}", Real(0, low_open=True) if end == "step" else Real(), value)
        if space.type == "int" and not float(value).is_integer():
            raise KeyProblem(f"{path}.{end}", f"an int space needs whole numbers, got {value}")
        if end != "step":
            check_rule(f"{path}.{end}", rule, int(value) if integer else value)
    if space.low is None or space.high is None or space.low >= space.high:
        raise KeyProblem(path, f"needs low < high, got low={space.low}, high={space.high}")
    if space.log and (space.low <= 0 or space.step is not None):
        raise KeyProblem(f"{path}.log", "a log scale needs low > 0 and no step")


def _takes_integers(rule: Rule) -> bool:
    inner = rule.inner if isinstance(rule, Optional) else rule
    return isinstance(inner, Integer)


def validation_part(experiment: Experiment, train: Interactions) -> Split:
    """The validation split carved from ``train``: ``[tune.validation]``, else the
    experiment's split method and options (a random 80/20 split for canonical folds)."""
    tune = experiment.tune or TuneSection()
    section = tune.validation or experiment.split
    if section.method not in SPLIT_METHODS:
        section = SplitSection(method="random", seed=experiment.split.seed)
    return validation_split(train, section.method, seed=section.seed, **section.options())


def tune_experiment(experiment: Experiment, trials: int | None = None,
                    timeout: float | None = None, step: Step = quiet_step,
                    notify: Callable[[str], None] = lambda message: None) -> TuneResult:
    """Run the TPE search on the validation split; only training data is ever used."""
    optuna = require_optuna()
    tune = experiment.tune or TuneSection()
    target = experiment.tuned_model()
    space = search_space(experiment)
    train = load_split(experiment, step).train  # the test part is dropped here
    parts = validation_part(experiment, train)
    metric = parse_metric(tune.metric).name
    seed = experiment.experiment.seeds[0]
    evaluator = Evaluator(parts.train, parts.test, [metric], protocol=tune.protocol, seed=seed,
                          ties=experiment.evaluation.ties)
    n_trials = trials if trials is not None else tune.trials

    def objective(trial: Any) -> float:
        params = {**target.params, **{n: _suggest(trial, n, s) for n, s in space.items()}}
        model = build_model(target.name, params, seed).fit(parts.train)
        return evaluator.evaluate(model).metrics[metric]

    def report(study: Any, trial: Any) -> None:
        notify(f"trial {trial.number + 1}/{n_trials}: {metric} {trial.value:.4f} "
               f"(best {study.best_value:.4f}) {format_params(trial.params)}")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize" if metric in LOWER_IS_BETTER else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials, timeout=timeout or tune.timeout,
                   callbacks=[report])
    best = {**target.params, **study.best_params}
    models = [dataclasses.replace(m, params=best) if m is target else m
              for m in experiment.models]
    return TuneResult(target.name, metric, float(study.best_value), best,
                      study.trials_dataframe(), dataclasses.replace(experiment, models=models),
                      parts.summary())


def format_params(params: dict[str, Any]) -> str:
    """``name=value`` pairs, floats to four significant digits."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def _suggest(trial: Any, name: str, space: ParamSpace) -> Any:
    if space.type == "categorical":
        return trial.suggest_categorical(name, space.choices)
    if space.type == "int":
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log,
                                 step=int(space.step or 1))
    return trial.suggest_float(name, space.low, space.high, log=space.log, step=space.step)


def require_optuna() -> Any:
    """The optuna module, or a clear error naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise ValueError("recforge tune needs Optuna: pip install 'recforge[tune]'") from None
    return optuna


def write_tune_result(result: TuneResult, out_dir: str | Path) -> Path:
    """``best.toml`` (the runnable experiment with the best hyperparameters), ``trials.csv``
    and ``tune.json`` in ``out_dir``, written as one unit (`recforge.experiments.rundir.
    run_output`: only over an absent or empty folder or an earlier recforge tune folder)."""
    from recforge.experiments.rundir import run_output

    with run_output(out_dir, "tune") as tmp:
        write_tune_files(result, tmp)
    return Path(out_dir)


def write_tune_files(result: TuneResult, folder: Path) -> None:
    """`write_tune_result` into ``folder``, the temporary folder of a tune output."""
    from recforge.experiments.rundir import package_versions, write_json

    (folder / "best.toml").write_text(tomlw.dumps(resolved_config(result.experiment)))
    result.trials.to_csv(folder / "trials.csv", index=False)
    write_json(folder / "tune.json", {
        "model": result.model, "metric": result.metric, "best_value": result.best_value,
        "best_params": result.best_params, "n_trials": len(result.trials),
        "validation_split": result.validation, "packages": package_versions()})
