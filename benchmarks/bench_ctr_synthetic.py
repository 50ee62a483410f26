"""Click models on synthetic Criteo-like data against the known ground truth.

`make_criteo_like` draws rows (26 categorical fields with power-law vocabularies, 13 numeric
fields, a logistic ground truth with pairwise interactions) together with each row's true
click probability. The rows are split at random (seeded) 80/10/10: each model trains on the
first part and stops early on the validation AUC; the test part is scored once per model.
The ground-truth model's test AUC (``roc_auc(labels, true_probability)``) is the ceiling up
to sampling noise; the bar is the best model (by validation AUC) within 0.01 of it.

    .venv/bin/python benchmarks/bench_ctr_synthetic.py --rows 400000 --threads 1 \
        --json benchmarks/results/bench_ctr_synthetic.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.events import Events
from recforge.data.synthetic_ctr import make_criteo_like
from recforge.evaluation.classification import log_loss, roc_auc
from recforge.evaluation.ctr import click_metrics, click_model_names, evaluate_clicks, random_parts
from recforge.experiments.rundir import write_json
from recforge.models.registry import create_model

MODELS = ("logistic-regression", "fm", "deepfm", "dcn", "dcn-v2", "xdeepfm", "wide-deep")
METRICS = ("auc", "logloss", "calibration")
BAR = 0.01


def data_parts(rows: int, seed: int) -> tuple[tuple[Events, ...], tuple[np.ndarray, ...],
                                              list[dict[str, Any]]]:
    """The three parts, each part's true probabilities, and the field declarations."""
    data, truth = make_criteo_like(rows, seed=seed)
    index = np.arange(len(truth))
    marked = data.events.subset(index)
    marked.labels["row"] = index.astype(np.float32)  # carries each row's position
    parts = random_parts(marked, (0.8, 0.1, 0.1), seed=seed)
    truths = tuple(truth[p.labels.pop("row").astype(np.int64)] for p in parts)
    return parts, truths, [dataclasses.asdict(f) for f in data.fields]


def ground_truth(part: Events, truth: np.ndarray) -> dict[str, float]:
    y = part.label("label")
    return {"auc": roc_auc(y, truth), "logloss": log_loss(y, truth)}


def run_model(name: str, parts: tuple[Events, ...], fields: list[dict[str, Any]], seed: int,
              threads: int, params: dict[str, Any]) -> dict[str, Any]:
    train, valid, test = parts
    model = create_model(name, fields=fields, history_length=0, seed=seed, threads=threads,
                         **params)
    result = evaluate_clicks(model, train, test, valid, metrics=METRICS)
    valid_p = model.predict_proba(valid)
    return {"model": name, "params": params, "best_epoch": result["best_epoch"],
            "epochs_run": len(model.history_), "fit_seconds": round(result["fit_seconds"], 1),
            "train_samples_per_second": float(np.median([e["samples_per_second"]
                                                         for e in model.history_])),
            "valid": click_metrics(valid.label("label"), valid_p, valid.users, METRICS),
            "test": result["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=None,
                        help=f"comma-separated (default: those of {', '.join(MODELS)} that are "
                             "registered)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--params", default="{}",
                        help="JSON: parameters for every model (e.g. a grid point)")
    parser.add_argument("--model-params", default="{}",
                        help='JSON: per-model parameters, e.g. {"fm": {"learning_rate": 0.003}}')
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    registered = set(click_model_names())
    names = args.models.split(",") if args.models else [m for m in MODELS if m in registered]
    common, own = json.loads(args.params), json.loads(args.model_params)
    start = time.perf_counter()
    parts, truths, fields = data_parts(args.rows, args.seed)
    print(f"data: {args.rows} rows in {time.perf_counter() - start:.1f} s; parts "
          f"{[len(p) for p in parts]}", flush=True)
    truth = {"valid": ground_truth(parts[1], truths[1]), "test": ground_truth(parts[2], truths[2])}
    print(json.dumps({"ground_truth": truth}), flush=True)
    runs = []
    for name in names:
        run = run_model(name, parts, fields, args.seed, args.threads,
                        {**common, **own.get(name, {})})
        run["test_auc_gap"] = truth["test"]["auc"] - run["test"]["auc"]
        runs.append(run)
        print(json.dumps({k: run[k] for k in ("model", "best_epoch", "fit_seconds", "valid",
                                              "test", "test_auc_gap")}), flush=True)
    best = max(runs, key=lambda r: r["valid"]["auc"])
    result = {"rows": args.rows, "seed": args.seed, "threads": args.threads,
              "split": "random 80/10/10", "part_rows": [len(p) for p in parts],
              "positive_rate": {k: float(p.label("label").mean())
                                for k, p in zip(("train", "valid", "test"), parts)},
              "ground_truth": truth, "runs": runs, "best_by_validation": best["model"],
              "best_test_auc_gap": best["test_auc_gap"], "bar": BAR,
              "bar_met": bool(best["test_auc_gap"] <= BAR)}
    print(json.dumps({k: result[k] for k in ("best_by_validation", "best_test_auc_gap",
                                             "bar_met")}))
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
