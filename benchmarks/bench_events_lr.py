"""Logistic-regression CTR baseline on ML-100K events (label: rating >= 4).

Events come from `Events.from_movielens` (one per rating); features (`movielens_fields`):
user gender, occupation and age bucket, item genres (multi-hot) and release year (10
quantile bins), hour and weekday of the rating, one-hot/multi-hot through `FeatureCodec`
(fitted on the training part only). Split by time: the earliest 80% of the events train,
the next 10% validate, the last 10% test. scikit-learn's ``LogisticRegression`` (lbfgs, L2)
is fitted on the training part for each ``C`` of the grid; ``C`` is chosen by validation
log loss, and the test part is scored once with that model. Metrics come from
`recforge.evaluation.classification` (ROC-AUC, GAUC over users, log loss, ECE with 10 bins);
a constant predictor (the training share of likes) is reported beside it.

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_events_lr.py \
        --json benchmarks/results/bench_events_lr_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from recforge.data.codec import FeatureCodec
from recforge.data.events import Events, movielens_fields
from recforge.evaluation.classification import calibration_error, gauc, log_loss, roc_auc
from recforge.experiments.rundir import write_json

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
LABEL = "like"


def metrics(part: Events, probabilities: np.ndarray) -> dict[str, float]:
    """ROC-AUC, GAUC (by user), log loss and calibration error of ``probabilities``."""
    labels = part.label(LABEL)
    return {"roc_auc": roc_auc(labels, probabilities),
            "gauc": gauc(labels, probabilities, part.users),
            "log_loss": log_loss(labels, probabilities),
            "calibration_error": calibration_error(labels, probabilities)}


def fit(x: Any, y: np.ndarray, c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    events = Events.from_movielens("ml-100k", data_dir=args.data_dir)
    train, valid, test = events.split_by_time((0.8, 0.1, 0.1))
    codec = FeatureCodec(movielens_fields()).fit(train.columns())
    x_train, x_valid, x_test = (codec.design_matrix(p.columns()) for p in (train, valid, test))
    y_train = train.label(LABEL).astype(int)
    grid = {}
    for c in C_GRID:
        model = fit(x_train, y_train, c)
        grid[c] = metrics(valid, model.predict_proba(x_valid)[:, 1])
    best_c = min(grid, key=lambda c: grid[c]["log_loss"])
    model = fit(x_train, y_train, best_c)
    prior = float(y_train.mean())
    record = {
        "benchmark": "bench_events_lr", "dataset": "ml-100k", "label": "rating >= 4",
        "split": {"method": "time order, earliest 80% / next 10% / last 10%",
                  "events": [len(train), len(valid), len(test)],
                  "like_share": [float(p.label(LABEL).mean()) for p in (train, valid, test)]},
        "features": [f"{f.name}:{f.kind}" for f in codec.fields],
        "design_columns": x_train.shape[1],
        "model": "sklearn LogisticRegression(lbfgs, L2), fitted on the training part",
        "c_grid_validation": {str(c): m for c, m in grid.items()},
        "chosen_c": best_c, "chosen_by": "validation log loss",
        "test": metrics(test, model.predict_proba(x_test)[:, 1]),
        "test_constant_predictor": metrics(test, np.full(len(test), prior)),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(record, indent=2))
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
