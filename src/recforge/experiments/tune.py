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
from recforge.data.splits import SPLITTERS, Split, validation_split
from recforge.evaluation import Evaluator
from recforge.evaluation.metrics import parse_metric
from recforge.experiments import tomlw
from recforge.experiments.config import (
    BUILTIN_SPACES,
    Experiment,
    ParamSpace,
    SplitSection,
    TuneSection,
    resolved_config,
)
from recforge.experiments.runner import Step, load_split, quiet_step
from recforge.experiments.steps import build_model


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


def validation_part(experiment: Experiment, train: Interactions) -> Split:
    """The validation split carved from ``train``: ``[tune.validation]``, else the
    experiment's split method and options (a random 80/20 split for canonical folds)."""
    tune = experiment.tune or TuneSection()
    section = tune.validation or experiment.split
    if section.method not in SPLITTERS:
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
        direction="minimize" if parse_metric(metric).lower_is_better else "maximize",
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
