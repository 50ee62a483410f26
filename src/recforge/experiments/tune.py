"""`recforge tune`: search one model's hyperparameters with Optuna's TPE sampler.

Every trial fits on the training part minus a validation split carved from it
(`recforge.data.splits.validation_split`) and is scored on that validation split; the test
part of the experiment's split is dropped as soon as the data is split and never reaches a
model or an evaluator. The sampler is seeded with the experiment's first seed, so the same
file gives the same trials. The result is the experiment file with the best hyperparameters
filled in, and the table of trials.

Distributed search (`Search`): with ``storage`` (any database URL Optuna accepts:
``sqlite:///study.db`` on one machine, PostgreSQL or MySQL for several) the study lives in
that database under ``study_name`` (default: the experiment's name) and several processes,
``recforge tune --storage URL --worker``, share it: each asks Optuna's storage for its next
trial (trial numbers are handed out by the database, so no trial is run twice), with a
sampler seeded from the experiment's seed and the worker's own number (two workers do not
propose the same points), and a trial whose parameters equal those of a trial already in the
study is not fitted again (it is pruned as a duplicate). ``trials`` is then the study's total
budget, counted over every worker. Only the command without ``--worker`` writes the result
(once, from the whole study). Distributed searches are not reproducible: which worker gets
which trial depends on timing.

Pruning (``pruner="median"`` or ``"hyperband"``: Optuna's ``MedianPruner`` and
``HyperbandPruner``, Li et al., JMLR 2018): an iterative model is scored on the validation
split after every epoch (`recforge.models.iterative`'s early-stopping hook); the score is
reported to the trial and a trial the pruner judges hopeless stops there. The model then also
stops early on that score (``patience``) and keeps its best epoch.
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
from recforge.models.iterative import IterativeRecommender

PRUNERS = ("none", "median", "hyperband")


@dataclass(frozen=True)
class Search:
    """Where and how the trials run: ``storage`` (a database URL, None: in memory),
    ``study_name`` (None: the experiment's name), ``worker`` (a number that seeds this
    worker's sampler; None: not a worker) and ``pruner`` (`PRUNERS`)."""

    storage: str | None = None
    study_name: str | None = None
    worker: int | None = None
    pruner: str = "none"

    def __post_init__(self) -> None:
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner must be one of {', '.join(PRUNERS)}, not {self.pruner!r}")
        if self.worker is not None and self.storage is None:
            raise ValueError("a worker shares a study: give --storage URL (e.g. "
                             "sqlite:///study.db)")


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
                    notify: Callable[[str], None] = lambda message: None,
                    search: Search = Search()) -> TuneResult:
    """Run the TPE search on the validation split; only training data is ever used. With
    ``search.storage`` the study is shared (module docstring) and ``trials`` is its total."""
    optuna = require_optuna()
    tune = experiment.tune or TuneSection()
    target = experiment.tuned_model()
    space = search_space(experiment)
    train = load_split(experiment, step).train  # the test part is dropped here
    parts = validation_part(experiment, train)
    metric = parse_metric(tune.metric).name
    lower = parse_metric(metric).lower_is_better
    seed = experiment.experiment.seeds[0]
    evaluator = Evaluator(parts.train, parts.test, [metric], protocol=tune.protocol, seed=seed,
                          ties=experiment.evaluation.ties)
    n_trials = trials if trials is not None else tune.trials

    def objective(trial: Any) -> float:
        params = {**target.params, **{n: _suggest(trial, n, s) for n, s in space.items()}}
        if search.worker is not None:
            trial.set_user_attr("worker", search.worker)
        _skip_duplicate(optuna, trial)
        model = build_model(target.name, params, seed)
        pruning = search.pruner != "none" and isinstance(model, IterativeRecommender)
        valid = _epoch_reporter(optuna, trial, evaluator, metric, lower) if pruning else None
        return evaluator.evaluate(model.fit(parts.train, valid=valid)).metrics[metric]

    def report(study: Any, trial: Any) -> None:
        if trial.state != optuna.trial.TrialState.COMPLETE:
            notify(f"trial {trial.number + 1}/{n_trials}: {trial.state.name.lower()} "
                   f"{format_params(trial.params)}")
            return
        notify(f"trial {trial.number + 1}/{n_trials}: {metric} {trial.value:.4f} "
               f"(best {study.best_value:.4f}) {format_params(trial.params)}")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(optuna, experiment, search, seed, lower)
    budget = optuna.study.MaxTrialsCallback(n_trials, states=None)
    if search.storage is None:
        study.optimize(objective, n_trials=n_trials, timeout=timeout or tune.timeout,
                       callbacks=[report])
    elif len(study.trials) < n_trials:  # the shared budget: every worker's trials count
        study.optimize(objective, n_trials=n_trials, timeout=timeout or tune.timeout,
                       callbacks=[report, budget])
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise ValueError(f"no trial of study {study.study_name!r} completed (every one was "
                         "pruned or failed); widen the space or use another pruner")
    best = {**target.params, **study.best_params}
    models = [dataclasses.replace(m, params=best) if m is target else m
              for m in experiment.models]
    return TuneResult(target.name, metric, float(study.best_value), best,
                      study.trials_dataframe(), dataclasses.replace(experiment, models=models),
                      parts.summary())


def _study(optuna: Any, experiment: Experiment, search: Search, seed: int, lower: bool) -> Any:
    """The study: in memory, or created in (or loaded from) ``search.storage``; a TPE sampler
    seeded by the experiment's seed (and the worker's number), the pruner chosen."""
    if search.worker is not None:
        import numpy as np

        seed = int(np.random.SeedSequence([seed, search.worker]).generate_state(1)[0])
    pruners = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
               "hyperband": optuna.pruners.HyperbandPruner}

    def create() -> Any:
        return optuna.create_study(
            storage=search.storage, load_if_exists=search.storage is not None,
            study_name=search.study_name or (experiment.experiment.name
                                             if search.storage is not None else None),
            direction="minimize" if lower else "maximize",
            sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruners[search.pruner]())

    return create() if search.storage is None else _first_creation(create)


def _first_creation(create: Callable[[], Any], attempts: int = 5) -> Any:
    """``create()``, again after a pause when workers started together race to create the
    database's tables (SQLAlchemy's integrity or operational error); the last error
    otherwise."""
    import time

    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts - 1):
        try:
            return create()
        except (IntegrityError, OperationalError):
            time.sleep(0.5 * (attempt + 1))
    return create()


def _skip_duplicate(optuna: Any, trial: Any) -> None:
    """Prune ``trial`` when a trial of its study already has exactly its parameters (run by
    another worker, or proposed twice): no point is fitted twice."""
    for other in trial.study.get_trials(deepcopy=False):
        if other.number != trial.number and other.params == trial.params and \
                other.state != optuna.trial.TrialState.FAIL:
            raise optuna.TrialPruned(f"same parameters as trial {other.number}")


def _epoch_reporter(optuna: Any, trial: Any, evaluator: Evaluator, metric: str,
                    lower: bool) -> Callable[[Any], tuple[str, float]]:
    """A `recforge.models.base.ValidationScore` that reports ``metric`` on the validation
    split to ``trial`` after every epoch and stops a trial the pruner judges hopeless (higher
    is better for early stopping: a lower-is-better metric is negated there)."""
    epoch = 0

    def score(model: Any) -> tuple[str, float]:
        nonlocal epoch
        value = float(evaluator.evaluate(model).metrics[metric])
        trial.report(value, epoch)
        epoch += 1
        if trial.should_prune():
            raise optuna.TrialPruned(f"{metric} {value:.4f} after epoch {epoch}")
        return metric, -value if lower else value

    return score


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
