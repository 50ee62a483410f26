"""One evaluation run: dataset -> split -> fit -> evaluate -> a JSON-ready record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from recforge.data.datasets import ML100K_FOLDS
from recforge.data.interactions import Interactions
from recforge.data.splits import SPLITTERS
from recforge.errors import InputError


@dataclass
class PreparedSplit:
    """Train and test interactions over one id space, with a description of the split."""

    train: Interactions
    test: Interactions
    dataset: str
    split: str
    seed: int

    def summary(self) -> dict[str, Any]:
        cold_users = int(((self.test.user_counts > 0) & (self.train.user_counts == 0)).sum())
        cold_items = int(((self.test.item_counts > 0) & (self.train.item_counts == 0)).sum())
        return {
            "dataset": self.dataset, "split": self.split, "seed": self.seed,
            "n_users": self.train.n_users, "n_items": self.train.n_items,
            "train_interactions": len(self.train), "test_interactions": len(self.test),
            "test_users": int((self.test.user_counts > 0).sum()),
            "cold_test_users": cold_users, "cold_test_items": cold_items,
        }


def load_data(dataset: str, *, columns: dict[str, str] | None = None,
              data_dir: str | None = None, download: bool = True,
              rating_range: tuple[float, float] | None = None,
              dataset_kwargs: dict[str, Any] | None = None) -> Interactions:
    """`load_dataset` with a declared rating scale: a file's ratings are checked line by line,
    a registered dataset's once loaded (`check_loaded_ratings`)."""
    from recforge.data.datasets import DATASETS
    from recforge.data.loading import load_dataset

    kwargs = dict(dataset_kwargs or {})
    registered = dataset.lower() in DATASETS
    if rating_range is not None and not registered:
        kwargs["rating_range"] = rating_range
    data = load_dataset(dataset, data_dir=data_dir, download=download, columns=columns, **kwargs)
    if registered:
        check_loaded_ratings(data, rating_range, dataset)
    return data


def check_loaded_ratings(data: Interactions, rating_range: tuple[float, float] | None,
                         label: str) -> None:
    """Refuse ratings of ``data`` outside ``rating_range`` (nothing to do without one)."""
    from recforge.data.readers import check_rating_scale

    if rating_range is None:
        return
    if data.ratings is None:
        raise InputError(f"{label}: a rating range was given but the data has no ratings")
    check_rating_scale(data.ratings, rating_range, label)


def check_rating_models(model_names: list[str], metrics: list[str]) -> None:
    """Refuse rating metrics (RMSE, MAE) for registered models that do not predict ratings,
    before any data is loaded."""
    from recforge.evaluation.evaluator import check_rating_metrics
    from recforge.models.registry import get_model_class

    for name in model_names:
        check_rating_metrics(get_model_class(name), metrics)


def prepare_split(dataset: str, split: str, seed: int = 0, columns: dict[str, str] | None = None,
                  data_dir: str | None = None, download: bool = True,
                  dataset_kwargs: dict[str, Any] | None = None,
                  split_options: dict[str, Any] | None = None,
                  rating_range: tuple[float, float] | None = None) -> PreparedSplit:
    """Load ``dataset`` and split it by ``split`` (a canonical ML-100K fold or a method name;
    ``split_options`` go to the splitter, e.g. ``test_fraction``); ``rating_range`` declares
    the rating scale (`load_data`)."""
    if split in ML100K_FOLDS:
        if dataset != "ml-100k":
            raise ValueError(f"split {split!r} is a canonical ML-100K fold; use --dataset ml-100k "
                             f"or one of {', '.join(SPLITTERS)}")
        from recforge.data.movielens import load_ml100k_fold

        train, test = load_ml100k_fold(split, data_dir=data_dir, download=download)
        for part in (train, test):
            check_loaded_ratings(part, rating_range, f"{dataset} {split}")
        return PreparedSplit(train, test, dataset, split, seed)
    if split not in SPLITTERS:
        raise ValueError(f"unknown split {split!r}; valid: "
                         f"{', '.join((*ML100K_FOLDS, *SPLITTERS))}")
    from recforge.data.splits import make_split

    kwargs = dict(dataset_kwargs or {})
    if dataset == "synthetic":
        kwargs.setdefault("seed", seed)
    data = load_data(dataset, columns=columns, data_dir=data_dir, download=download,
                     rating_range=rating_range, dataset_kwargs=kwargs)
    parts = make_split(data, split, seed=seed, **(split_options or {}))
    return PreparedSplit(parts.train, parts.test, dataset, split, seed)


def build_model(name: str, params: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """Create a registered model; a ``seed`` hyperparameter defaults to the run's seed."""
    from recforge.models.registry import create_model, get_model_class

    params = dict(params or {})
    if "seed" in get_model_class(name).param_names():
        params.setdefault("seed", seed)
    return create_model(name, **params)


def run_evaluation(model: Any, prepared: PreparedSplit, metrics: list[str],
                   protocol: str = "full") -> dict[str, Any]:
    """Fit ``model`` on the split's train part and evaluate it on the test part."""
    from recforge.evaluation import Evaluator

    evaluator = Evaluator(prepared.train, prepared.test, metrics=metrics, protocol=protocol,
                          seed=prepared.seed)
    start = time.perf_counter()
    model.fit(prepared.train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluator.evaluate(model)
    eval_seconds = time.perf_counter() - start
    summary = result.summary(seed=prepared.seed)
    return {
        "model": model.name,
        "dataset": prepared.dataset,
        "split": prepared.split,
        "protocol": protocol,
        "seed": prepared.seed,
        "params": model.get_params(),
        "metrics": result.metrics,
        "intervals": {name: [s["low"], s["high"]] for name, s in summary.items()},
        "fit_seconds": round(fit_seconds, 4),
        "eval_seconds": round(eval_seconds, 4),
        "n_users": prepared.train.n_users,
        "n_items": prepared.train.n_items,
        "n_train": len(prepared.train),
        "n_test": len(prepared.test),
    }


def default_dataset(notify: Any = print) -> str:
    """``ml-100k`` when it is local or downloadable, else ``synthetic`` (with a notice)."""
    from recforge.data.datasets import DatasetNotFoundError, resolve_dataset

    try:
        resolve_dataset("ml-100k", download=True)
        return "ml-100k"
    except (DatasetNotFoundError, OSError) as exc:
        notify(f"ML-100K is not available ({type(exc).__name__}); "
               "using the built-in synthetic dataset instead.")
        return "synthetic"
