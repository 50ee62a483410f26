"""Run an experiment: load and split once, then per seed fit every model and evaluate it under
every protocol, collecting an `ExperimentRecord`.

The split uses ``[split] seed``, so every run seed sees the same train/test data; a run seed
sets each model's ``seed`` hyperparameter (unless the file sets it) and the sampled
protocols' negatives.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from recforge.data.interactions import Interactions
from recforge.evaluation import Evaluator
from recforge.evaluation.evaluator import check_compatible
from recforge.evaluation.metrics import parse_metric
from recforge.evaluation.protocols import make_protocol
from recforge.experiments.config import Experiment, ModelSection, resolved_config
from recforge.experiments.record import ExperimentRecord, ModelRecord
from recforge.experiments.steps import (
    PreparedSplit,
    build_model,
    check_rating_models,
    prepare_split,
)

Step = Callable[[str], AbstractContextManager[Any]]


@contextlib.contextmanager
def quiet_step(description: str) -> Iterator[None]:
    """A progress step that shows nothing."""
    yield


def load_split(experiment: Experiment, step: Step = quiet_step) -> PreparedSplit:
    """Load the experiment's dataset and split it as ``[split]`` says."""
    data, split = experiment.data, experiment.split
    with step(f"loading {data.dataset} and splitting ({split.method})"):
        return prepare_split(data.dataset, split.method, seed=split.seed, columns=data.columns,
                             dataset_kwargs=data.options, split_options=split.options())


def protocol_metrics(experiment: Experiment, protocol: str) -> list[str]:
    """The experiment's metrics that ``protocol`` can compute (beyond-accuracy metrics need
    full ranking)."""
    names = experiment.evaluation.metric_names()
    if protocol.strip().lower() == "full":
        return names
    return [name for name in names if parse_metric(name).family != "beyond"]


def check_data(experiment: Experiment, prepared: PreparedSplit) -> None:
    """Problems only the loaded data shows (rating models without ratings, a protocol the
    split cannot serve, a model consuming what a protocol cannot give on this data:
    `check_compatible`), raised before any model is trained."""
    from recforge.models.registry import get_model_class

    classes = [get_model_class(model.name) for model in experiment.models]
    needy = [label for label, cls in zip(experiment.labels(), classes) if cls.requires_ratings]
    if needy and prepared.train.ratings is None:
        raise ValueError(f"models {', '.join(needy)} need ratings; dataset "
                         f"{experiment.data.dataset!r} has none")
    for name in experiment.evaluation.protocols:
        protocol = make_protocol(name)
        protocol.check_data(prepared.train, prepared.test)
        for cls in classes:
            check_compatible(cls, protocol, prepared.train, prepared.test)


def run_experiment(experiment: Experiment, step: Step = quiet_step) -> ExperimentRecord:
    """Fit and evaluate the lineup for every seed; ``step(description)`` shows progress."""
    check_rating_models([model.name for model in experiment.models],
                        experiment.evaluation.metric_names())
    prepared = load_split(experiment, step)
    check_data(experiment, prepared)
    test_users = np.unique(prepared.test.users)
    records: list[ModelRecord] = []
    total = len(experiment.models) * len(experiment.experiment.seeds)
    for seed in experiment.experiment.seeds:
        evaluators = _evaluators(experiment, prepared, seed)
        for model, label in zip(experiment.models, experiment.labels()):
            where = f"{len(records) + 1}/{total} {label} (seed {seed})"
            records.append(_run_model(model, label, seed, prepared.train, evaluators,
                                      test_users, experiment.report.max_k,
                                      _labelled(step, where)))
    protocols = experiment.evaluation.protocols
    metrics = list(dict.fromkeys(m for p in protocols for m in protocol_metrics(experiment, p)))
    return ExperimentRecord(
        name=experiment.experiment.name, dataset=prepared.dataset, split=prepared.summary(),
        train=prepared.train, test=prepared.test, test_users=test_users, metrics=metrics,
        protocols=list(protocols), models=records, config=resolved_config(experiment),
        max_k=experiment.report.max_k)


def _labelled(step: Step, prefix: str) -> Step:
    """``step`` with every description prefixed by ``prefix: ``."""
    return lambda description: step(f"{prefix}: {description}")


def _evaluators(experiment: Experiment, prepared: PreparedSplit,
                seed: int) -> dict[str, Evaluator]:
    """One evaluator per protocol (built before training, so bad metrics stop the run)."""
    return {protocol: Evaluator(prepared.train, prepared.test,
                                protocol_metrics(experiment, protocol), protocol=protocol,
                                seed=seed, ties=experiment.evaluation.ties)
            for protocol in experiment.evaluation.protocols}


def _run_model(entry: ModelSection, label: str, seed: int, train: Interactions,
               evaluators: dict[str, Evaluator], test_users: np.ndarray, max_k: int,
               step: Step) -> ModelRecord:
    """Fit one model, evaluate it under every protocol and take its top-``max_k`` lists."""
    model = build_model(entry.name, entry.params, seed)
    with step("fitting"):
        start = time.perf_counter()
        model.fit(train)
        fit_seconds = time.perf_counter() - start
    results = {}
    for protocol, evaluator in evaluators.items():
        with step(f"evaluating, {protocol}"):
            results[protocol] = evaluator.evaluate(model)
    top_items = model.recommend(test_users, k=max_k)[0]
    return ModelRecord(label, model, seed, fit_seconds, results, top_items,
                       list(getattr(model, "history_", [])))
