"""Click models on ML-100K as a CTR problem: test ROC-AUC, log loss and GAUC, mean over seeds.

Events come from `Events.from_movielens` (one per rating, label ``like`` = rating >= 4),
split by time: the earliest 80% train, the next 10% validate (early stopping on validation
AUC, and every choice of default), the last 10% test, scored once per model and seed.
Features (`movielens_fields(ids=True, zip_prefix=1)`): user id, item id, gender, occupation,
age bucket, zip prefix, genres (multi-hot), release year (10 quantile bins), hour and weekday
of the rating, plus each event's user's previous 20 items (`Events.with_history` over the
whole log before the split, so a test event's history holds the validation period too). GAUC is
the per-user AUC weighted by the user's test events over users with both classes; the test
part holds few users (late users), so their number is reported.

LightGBM (``--lightgbm``, benchmark-only) gets the same fields as columns: the index fields
as categorical features, genres as 0/1 columns, the year bin; no history. Its number of
rounds is chosen by early stopping on the validation part.

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_ctr.py \
        --models logistic-regression,fm,wide-deep,deepfm,xdeepfm,dcn,dcn-v2 --seeds 0,1,2 \
        --lightgbm --json benchmarks/results/bench_ctr_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.codec import FeatureCodec
from recforge.data.events import Events, movielens_fields
from recforge.evaluation.classification import calibration_error, gauc, log_loss, roc_auc
from recforge.experiments.rundir import write_json
from recforge.models.registry import create_model

LABEL = "like"
#: the zip-code prefix length, chosen on the validation part (DeepFM, seed 0, best epoch's
#: validation AUC): 1 character 0.6897, 2 0.6838, 3 0.6827, no zip field 0.6890
ZIP_PREFIX = 1


def metrics(part: Events, p: np.ndarray) -> dict[str, float]:
    y = part.label(LABEL)
    return {"auc": roc_auc(y, p), "log_loss": log_loss(y, p), "gauc": gauc(y, p, part.users),
            "calibration_error": calibration_error(y, p)}


def split(data_dir: str | None) -> tuple[Events, Events, Events]:
    events = Events.from_movielens("ml-100k", data_dir=data_dir).with_history(20)
    return events.split_by_time((0.8, 0.1, 0.1))


def fields(zip_prefix: int | None = None) -> list[dict[str, Any]]:
    import dataclasses

    prefix = ZIP_PREFIX if zip_prefix is None else zip_prefix
    return [dataclasses.asdict(f) for f in movielens_fields(ids=True, zip_prefix=prefix)]


def run_model(name: str, seed: int, parts: tuple[Events, ...], threads: int,
              params: dict[str, Any]) -> dict[str, Any]:
    train, valid, test = parts
    model = create_model(name, seed=seed, threads=threads, fields=fields(), **params)
    start = time.perf_counter()
    model.fit(train, valid)
    seconds = time.perf_counter() - start
    epochs = model.history_
    return {"model": name, "seed": seed, "params": params, "best_epoch": model.best_epoch_,
            "epochs_run": len(epochs), "fit_seconds": round(seconds, 1),
            "train_samples_per_second": float(np.median([e["samples_per_second"]
                                                         for e in epochs])),
            "valid": metrics(valid, model.predict_proba(valid)),
            "test": metrics(test, model.predict_proba(test))}


def lightgbm_columns(parts: tuple[Events, ...]) -> tuple[list[Any], list[str]]:
    """Index fields as integer columns (categorical for LightGBM), genres as 0/1 columns."""
    import pandas as pd

    codec = FeatureCodec(movielens_fields(ids=True, zip_prefix=ZIP_PREFIX))
    columns = [_with_ids(p) for p in parts]
    codec.fit(columns[0])
    frames = []
    for cols in columns:
        encoded = codec.transform(cols)
        frame = pd.DataFrame({name: encoded[name] for name in codec.names("categorical",
                                                                           "bucketised")})
        genres = encoded["genres"].toarray()
        for k in range(genres.shape[1]):
            frame[f"genre{k}"] = genres[:, k]
        frames.append(frame)
    return frames, codec.names("categorical", "bucketised")


def _with_ids(part: Events) -> dict[str, Any]:
    return {"user": part.user_map.ids[part.users], "item": part.item_map.ids[part.items],
            **part.columns()}


def run_lightgbm(parts: tuple[Events, ...], seed: int, threads: int) -> dict[str, Any]:
    import lightgbm as lgb

    frames, categorical = lightgbm_columns(parts)
    train, valid, test = parts
    model = lgb.LGBMClassifier(n_estimators=2000, learning_rate=0.05, num_leaves=31,
                               min_child_samples=50, subsample=0.8, subsample_freq=1,
                               colsample_bytree=0.8, random_state=seed, n_jobs=threads,
                               verbose=-1)
    start = time.perf_counter()
    model.fit(frames[0], train.label(LABEL), eval_set=[(frames[1], valid.label(LABEL))],
              eval_metric="auc", categorical_feature=categorical,
              callbacks=[lgb.early_stopping(50, verbose=False)])
    seconds = time.perf_counter() - start
    return {"model": "lightgbm", "seed": seed, "best_iteration": int(model.best_iteration_),
            "fit_seconds": round(seconds, 1),
            "valid": metrics(valid, model.predict_proba(frames[1])[:, 1]),
            "test": metrics(test, model.predict_proba(frames[2])[:, 1])}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == name]
        out[name] = {f"{part}_{m}": {"mean": float(np.mean([r[part][m] for r in mine])),
                                     "std": float(np.std([r[part][m] for r in mine])),
                                     "min": float(np.min([r[part][m] for r in mine])),
                                     "max": float(np.max([r[part][m] for r in mine]))}
                     for part in ("valid", "test") for m in ("auc", "log_loss", "gauc")}
        out[name]["seeds"] = len(mine)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", default="logistic-regression,fm,deepfm")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default="{}",
                        help="JSON: extra parameters for every model (e.g. a grid point)")
    parser.add_argument("--lightgbm", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    parts = split(args.data_dir)
    seeds = [int(s) for s in args.seeds.split(",")]
    params = json.loads(args.params)
    runs = []
    for name in args.models.split(","):
        for seed in seeds:
            runs.append(run_model(name, seed, parts, args.threads, params))
            print(json.dumps({k: runs[-1][k] for k in ("model", "seed", "best_epoch", "test")}),
                  flush=True)
    if args.lightgbm:
        for seed in seeds:
            runs.append(run_lightgbm(parts, seed, args.threads))
            print(json.dumps({k: runs[-1][k] for k in ("model", "seed", "test")}), flush=True)
    test = parts[2]
    record = {
        "benchmark": "bench_ctr", "dataset": "ml-100k", "label": "rating >= 4",
        "split": {"method": "time order, earliest 80% / next 10% / last 10%",
                  "events": [len(p) for p in parts],
                  "users": [len(np.unique(p.users)) for p in parts],
                  "test_users_with_both_classes": int(sum(
                      len(np.unique(test.label(LABEL)[test.users == u])) == 2
                      for u in np.unique(test.users)))},
        "features": fields(), "history_length": "model default (20)",
        "threads": args.threads, "seeds": seeds, "params": params,
        "summary": summary(runs), "runs": runs,
    }
    print(json.dumps(record["summary"], indent=1))
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
