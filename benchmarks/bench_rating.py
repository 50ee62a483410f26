"""recforge's rating-prediction family side by side with Surprise, in one process.

``u1`` part: every model fits ML-100K ``u1.base`` with its *default* hyperparameters and is
scored on ``u1.test`` (RMSE, MAE; predictions clipped to the rating range by both
libraries). Surprise runs SVD, SVD++, KNNBaseline (item-based, pearson_baseline) and
BaselineOnly; recforge runs its rating models plus its own baseline-only and item-knn for
reference. Fit times are medians over ``--repeats`` rounds that alternate between the
libraries (numba's compiled kernels are cached on disk; a warm-up loads them first), and the
paired ratios compare recforge to the Surprise model it replaces:

* biased-mf / SVD, svdpp / SVD++, baseline-only / BaselineOnly, item-knn / KNNBaseline.

``folds`` part: RMSE on each canonical fold u1..u5 and the mean, for recforge's models
(optionally ``--fold-models``) and Surprise's SVD.

``synthetic`` part: recforge's rating models fit a synthetic explicit set of
``--synthetic-interactions`` ratings (default 10M over 100k users x 50k items, from
`recforge.data.synthetic`), split 90/10 at random; fit seconds and held-out RMSE. Surprise is
skipped there unless ``--surprise-synthetic`` (its SVD++ alone would take hours).

Usage::

    .venv/bin/python benchmarks/bench_rating.py --parts u1 folds synthetic

writes ``benchmarks/results/bench_rating.json`` (u1 and folds) and
``benchmarks/results/bench_rating_synthetic.json``. Needs the ``bench`` extra
(``pip install -e .[bench]``) and ML-100K under ``$RECFORGE_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data import Interactions
from recforge.data.movielens import load_ml100k_fold
from recforge.data.splits import random_split
from recforge.data.synthetic import generate
from recforge.models import Recommender, create_model

RESULTS = Path(__file__).parent / "results"
RECFORGE_U1 = ["baseline-only", "truncated-svd", "biased-mf", "biased-mf-als", "als-wr", "svdpp", "autorec",
               "item-knn", "blend"]
PAIRS = {"biased-mf": "SVD", "svdpp": "SVDpp", "baseline-only": "BaselineOnly",
         "item-knn": "KNNBaseline"}
#: on 10M ratings AutoRec's defaults (500 hidden units: 100M parameters, and L-BFGS keeps 10
#: pairs of vectors that size) need ~20 GB, so the synthetic run times it smaller, per epoch
SYNTHETIC_MODELS = ["baseline-only", "truncated-svd", "biased-mf", 'biased-mf={"strata": 1}',
                    "biased-mf-als", "als-wr", "svdpp", 'autorec={"hidden": 100, "epochs": 2}']


# ---------------------------------------------------------------------- Surprise side
def surprise_models() -> dict[str, Callable[[], Any]]:
    import surprise

    return {
        "SVD": lambda: surprise.SVD(random_state=0),
        "SVDpp": lambda: surprise.SVDpp(random_state=0),
        "KNNBaseline": lambda: surprise.KNNBaseline(
            sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False),
        "BaselineOnly": lambda: surprise.BaselineOnly(verbose=False),
    }


def surprise_data(train: Interactions, test: Interactions) -> tuple[Any, list[tuple]]:
    """Surprise's trainset and testset built from the same `Interactions` (external ids)."""
    import surprise

    frame = train.to_pandas()[["user", "item", "rating"]]
    reader = surprise.Reader(rating_scale=(float(frame.rating.min()), float(frame.rating.max())))
    trainset = surprise.Dataset.load_from_df(frame, reader).build_full_trainset()
    test_frame = test.to_pandas()
    testset = list(zip(test_frame.user, test_frame.item, test_frame.rating.astype(float)))
    return trainset, testset


def surprise_scores(algo: Any, testset: list[tuple]) -> dict[str, float]:
    predictions = algo.test(testset)
    err = np.array([p.est - p.r_ui for p in predictions])
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


# ---------------------------------------------------------------------- recforge side
def recforge_scores(model: Recommender, test: Interactions) -> dict[str, float]:
    err = model.predict(test.users, test.items).astype(np.float64) - test.ratings
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def timed_fit(model: Any, data: Any) -> tuple[float, Any]:
    """Seconds ``model.fit(data)`` takes (either library), and the fitted model."""
    start = time.perf_counter()
    model.fit(data)
    return time.perf_counter() - start, model


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name={json params}`` -> (name, params)."""
    name, _, params = spec.partition("=")
    return name, json.loads(params) if params else {}


def warm_up(names: list[str]) -> None:
    """Load (or compile) every numba kernel the models use, on a tiny dataset."""
    tiny = generate(n_users=200, n_items=100, n_interactions=3000, seed=1)
    for name in names:
        create_model(name).fit(tiny).predict(tiny.users[:10], tiny.items[:10])


# ---------------------------------------------------------------------- parts
def bench_u1(repeats: int) -> dict[str, Any]:
    train, test = load_ml100k_fold("u1")
    trainset, testset = surprise_data(train, test)
    theirs = surprise_models()
    warm_up(RECFORGE_U1)
    times: dict[str, list[float]] = {}
    scores: dict[str, dict[str, float]] = {}
    for round_ in range(repeats):
        for name in RECFORGE_U1:
            seconds, model = timed_fit(create_model(name), train)
            times.setdefault(f"recforge {name}", []).append(seconds)
            if round_ == 0:
                scores[f"recforge {name}"] = recforge_scores(model, test)
            print(f"round {round_} recforge {name}: {seconds:.2f}s", flush=True)
        for name, make in theirs.items():
            seconds, algo = timed_fit(make(), trainset)
            times.setdefault(f"surprise {name}", []).append(seconds)
            if round_ == 0:
                scores[f"surprise {name}"] = surprise_scores(algo, testset)
            print(f"round {round_} surprise {name}: {seconds:.2f}s", flush=True)
    rows = {key: {**scores[key], "fit_seconds_median": statistics.median(values),
                  "fit_seconds": [round(v, 3) for v in values]}
            for key, values in times.items()}
    ratios = {f"{ours} / {ref}": rows[f"recforge {ours}"]["fit_seconds_median"]
              / rows[f"surprise {ref}"]["fit_seconds_median"] for ours, ref in PAIRS.items()}
    return {"split": "ml-100k u1.base -> u1.test", "n_train": len(train), "n_test": len(test),
            "repeats": repeats, "models": rows, "fit_time_ratio_recforge_over_surprise": ratios}


def bench_folds(names: list[str]) -> dict[str, Any]:
    import surprise

    out: dict[str, Any] = {}
    for fold in ("u1", "u2", "u3", "u4", "u5"):
        train, test = load_ml100k_fold(fold)
        for name in names:
            score = recforge_scores(create_model(name).fit(train), test)
            out.setdefault(f"recforge {name}", {})[fold] = score["rmse"]
        trainset, testset = surprise_data(train, test)
        score = surprise_scores(surprise.SVD(random_state=0).fit(trainset), testset)
        out.setdefault("surprise SVD", {})[fold] = score["rmse"]
        print(fold, {k: round(v[fold], 4) for k, v in out.items()}, flush=True)
    for row in out.values():
        row["mean"] = float(np.mean([row[f] for f in ("u1", "u2", "u3", "u4", "u5")]))
    return {"metric": "rmse", "models": out}


def bench_synthetic(n_interactions: int, n_users: int, n_items: int, names: list[str],
                    with_surprise: bool) -> dict[str, Any]:
    start = time.perf_counter()
    data = generate(n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=0)
    seconds = time.perf_counter() - start
    print(f"generated {len(data)} ratings in {seconds:.1f}s", flush=True)
    train, test = random_split(data, 0.1, seed=0)
    warm_up(sorted({parse_spec(spec)[0] for spec in names}))
    rows: dict[str, Any] = {}
    for spec in names:
        name, params = parse_spec(spec)
        seconds, model = timed_fit(create_model(name, **params), train)
        epochs = len(getattr(model, "history_", [])) or None
        rows[f"recforge {spec}"] = {**recforge_scores(model, test), "fit_seconds": seconds,
                                    "epochs": epochs}
        print(spec, rows[f"recforge {spec}"], flush=True)
        del model
    if with_surprise:
        trainset, testset = surprise_data(train, test)
        for name, make in surprise_models().items():
            seconds, algo = timed_fit(make(), trainset)
            rows[f"surprise {name}"] = {**surprise_scores(algo, testset), "fit_seconds": seconds}
            print(name, rows[f"surprise {name}"], flush=True)
    return {"data": {"users": n_users, "items": n_items, "interactions": len(data),
                     "train": len(train), "test": len(test), "generator": "recforge.data.synthetic",
                     "seed": 0}, "models": rows}


def machine() -> dict[str, Any]:
    cpu = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines()
                  if ln.startswith("Model name")), platform.processor())
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    import numba
    import surprise

    return {"cpu": model, "numba_threads": numba.get_num_threads(), "load_average": load,
            "python": platform.python_version(), "numpy": np.__version__,
            "surprise": surprise.__version__, "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["u1", "folds"],
                        choices=["u1", "folds", "synthetic"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fold-models", nargs="+", default=["biased-mf", "svdpp"])
    parser.add_argument("--synthetic-interactions", type=int, default=10_000_000)
    parser.add_argument("--synthetic-users", type=int, default=100_000)
    parser.add_argument("--synthetic-items", type=int, default=50_000)
    parser.add_argument("--synthetic-models", nargs="+", default=SYNTHETIC_MODELS)
    parser.add_argument("--surprise-synthetic", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_rating.json")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if "u1" in args.parts or "folds" in args.parts:
        report: dict[str, Any] = {"machine": machine()}
        if "u1" in args.parts:
            report["u1"] = bench_u1(args.repeats)
        if "folds" in args.parts:
            report["folds"] = bench_folds(args.fold_models)
        args.out.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    if "synthetic" in args.parts:
        report = {"machine": machine(), "synthetic": bench_synthetic(
            args.synthetic_interactions, args.synthetic_users, args.synthetic_items,
            args.synthetic_models, args.surprise_synthetic)}
        path = args.out.with_name(args.out.stem + "_synthetic.json")
        path.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
