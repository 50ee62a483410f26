"""LightGCN on ML-100K (random 80/20 per user, full ranking Recall@20 / NDCG@20) beside
most-popular, BPR and iALS, its validation curves, and the speed of one epoch.

Benchmark (default): ML-100K split by ``random_split(data, 0.2, seed=0, per_user=True)``
(each user with two or more ratings puts 20% of them in test), every model fitted on the
training part with its defaults for each of ``--seeds`` (LightGCN with each of ``--layers``)
and scored by the shared `Evaluator` over the full catalogue (training items excluded):
Recall@20 and NDCG@20, each run with its fit time; the summary gives mean, standard
deviation, min and max over the seeds. One thread by default. Writes
``benchmarks/results/lightgcn_ml-100k.json``.

LightGCN with 1 and 2 layers takes the ``reg`` its validation curves chose
(`LAYER_SETTINGS`); with 3 layers the defaults.

Tuning (``--tune``): validation curves on data carved from the training part only (the
training part split again by the same per-user random 80/20, seed 0): each configuration of
``--grid`` is fitted once (seed 0) and scored every ``--every`` epochs; BPR and iALS with their
defaults on the same validation split as references. Writes ``lightgcn_tuning.json`` (the
committed one merges the runs of several invocations, ``--grid`` a few entries at a time).

Speed (``--speed``): one epoch of the defaults over ``--rows`` implicit synthetic
interactions (`recforge.data.synthetic.generate`, seed 0) on ``--threads`` threads (2 by
default) or ``--device cuda``: the trainer's examples per second and the epoch's seconds
(the mini-batches, then the item side propagated once more), after a one-epoch warm-up
that compiles the kernels. Writes ``lightgcn_speed_<device>.json``.

Usage::

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_lightgcn.py
    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_lightgcn.py --tune
    .venv/bin/python benchmarks/bench_lightgcn.py --speed
    .venv/bin/python benchmarks/bench_lightgcn.py --speed --threads 1 \
        --json benchmarks/results/lightgcn_speed_cpu_1thread.json
    .venv/bin/python benchmarks/bench_lightgcn.py --speed --batch 2048 \
        --json benchmarks/results/lightgcn_speed_cpu_batch2048.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench_ncf import RESULTS, machine, spread, timed_fit, validation_curve

from recforge.data import Interactions
from recforge.data.loading import load_dataset
from recforge.data.splits import random_split
from recforge.data.synthetic import generate
from recforge.evaluation import Evaluator
from recforge.experiments.rundir import write_json
from recforge.models import Recommender, create_model

METRICS = ("recall@20", "ndcg@20")
MODELS = ("most-popular", "bpr", "ials", "lightgcn")
SEEDED = ("bpr", "ials", "lightgcn")

#: validation grid: name -> LightGCN parameters; each curve runs to its ``epochs``. The
#: first entries sample every training interaction once per epoch (``uniform_users=False``,
#: as RecBole does), the ``uu-`` ones users uniformly (the LightGCN authors' sampler)
_EVERY = {"uniform_users": False}
_BIG = {"train_batch_size": 8192}
GRID: dict[str, dict[str, Any]] = {
    "paper": {**_EVERY, "reg": 1e-4, "learning_rate": 0.001, "train_batch_size": 2048,
              "epochs": 300},
    "lr0.005": {**_EVERY, "reg": 1e-4, "learning_rate": 0.005, "train_batch_size": 2048,
                "epochs": 150},
    "lr0.005-b8192": {**_EVERY, **_BIG, "reg": 1e-4, "learning_rate": 0.005, "epochs": 300},
    "lr0.01-b8192": {**_EVERY, **_BIG, "reg": 1e-4, "learning_rate": 0.01, "epochs": 200},
    "lr0.02-b8192": {**_EVERY, **_BIG, "reg": 1e-4, "learning_rate": 0.02, "epochs": 200},
    "lr0.01-b8192-reg1e-3": {**_EVERY, **_BIG, "learning_rate": 0.01, "reg": 1e-3,
                             "epochs": 200},
    "lr0.01-b8192-reg1e-5": {**_EVERY, **_BIG, "learning_rate": 0.01, "reg": 1e-5,
                             "epochs": 200},
    "lr0.01-b8192-reg3e-3": {**_EVERY, **_BIG, "learning_rate": 0.01, "reg": 3e-3,
                             "epochs": 400},
    "lr0.01-b8192-reg1e-2": {**_EVERY, **_BIG, "learning_rate": 0.01, "reg": 1e-2,
                             "epochs": 400},
    "lr0.02-b8192-reg3e-3": {**_EVERY, **_BIG, "learning_rate": 0.02, "reg": 3e-3,
                             "epochs": 300},
    "lr0.01-b8192-reg3e-3-d128": {**_EVERY, **_BIG, "learning_rate": 0.01, "reg": 3e-3,
                                  "embedding_dim": 128, "epochs": 300},
    "lr0.01-b8192-reg1e-3-neg4": {**_EVERY, **_BIG, "learning_rate": 0.01, "reg": 1e-3,
                                  "negatives": 4, "epochs": 150},
    "uu-lr0.01-b8192-reg1e-3": {**_BIG, "learning_rate": 0.01, "reg": 1e-3, "epochs": 200},
    "uu-lr0.01-b8192-reg1e-3-neg4": {**_BIG, "learning_rate": 0.01, "reg": 1e-3,
                                     "negatives": 4, "epochs": 150},
    "uu-lr0.01-b8192-reg1e-3-cosine": {**_BIG, "learning_rate": 0.01, "reg": 1e-3,
                                       "schedule": "cosine", "epochs": 200},
    "uu-lr0.01-b8192-reg1e-3-l1": {**_BIG, "learning_rate": 0.01, "reg": 1e-3, "layers": 1,
                                   "epochs": 200},
    "uu-lr0.01-b8192-reg1e-3-l2": {**_BIG, "learning_rate": 0.01, "reg": 1e-3, "layers": 2,
                                   "epochs": 200},
    "uu-lr0.01-b8192-reg1e-2-l1": {**_BIG, "learning_rate": 0.01, "reg": 1e-2, "layers": 1,
                                   "epochs": 200},
    "uu-lr0.01-b8192-reg3e-3-l1": {**_BIG, "learning_rate": 0.01, "reg": 3e-3, "layers": 1,
                                   "epochs": 200},
    "uu-lr0.01-b8192-reg3e-3-l2": {**_BIG, "learning_rate": 0.01, "reg": 3e-3, "layers": 2,
                                   "epochs": 200},
    "uu-lr0.01-b8192-reg1e-3-300": {**_BIG, "learning_rate": 0.01, "reg": 1e-3, "epochs": 300},
    "uu-lr0.01-b8192-reg3e-3-300": {**_BIG, "learning_rate": 0.01, "reg": 3e-3, "epochs": 300},
    "uu-lr0.01-b8192-reg3e-3-l2-300": {**_BIG, "learning_rate": 0.01, "reg": 3e-3, "layers": 2,
                                       "epochs": 300},
    "uu-lr0.01-b8192-reg1e-2-l1-300": {**_BIG, "learning_rate": 0.01, "reg": 1e-2, "layers": 1,
                                       "epochs": 300},
}


#: LightGCN with fewer layers overfits sooner: the benchmark's ``layers=1`` and ``layers=2``
#: runs take the ``reg`` their validation curves chose (``uu-...-reg1e-2-l1``,
#: ``uu-...-reg3e-3-l2``); ``layers=3`` is the model's defaults
LAYER_SETTINGS: dict[int, dict[str, Any]] = {1: {"reg": 1e-2}, 2: {"reg": 3e-3}}


def split_ml100k() -> Any:
    """The benchmark's split of ML-100K: per-user random 80/20, seed 0."""
    return random_split(load_dataset("ml-100k"), 0.2, seed=0, per_user=True)


def ranking(model: Recommender, train: Interactions, test: Interactions) -> dict[str, float]:
    """Full-ranking Recall@20 and NDCG@20."""
    result = Evaluator(train, test, METRICS).evaluate(model)
    return {k: round(v, 4) for k, v in result.metrics.items()}


def make(name: str, seed: int, threads: int, **params: Any) -> Recommender:
    """``name`` with its defaults, the seed and the threads where it has them."""
    if name in SEEDED:
        params |= {"seed": seed, "threads": threads}
    return create_model(name, **params)


def fit_run(model: Recommender, train: Interactions, test: Interactions) -> dict[str, Any]:
    """Fit, timed (`timed_fit`), and evaluate."""
    return timed_fit(model, train) | ranking(model, train, test)


def benchmark(names: list[str], seeds: list[int], layers: list[int],
              threads: int) -> dict[str, Any]:
    split = split_ml100k()
    out: dict[str, Any] = {
        "machine": machine(), "threads": threads,
        "protocol": "ML-100K random_split(0.2, seed=0, per_user=True); full ranking, training "
                    "items excluded; Recall@20, NDCG@20", "models": {}}
    configs = [(name, {}) for name in names if name != "lightgcn"]
    if "lightgcn" in names:
        configs += [(f"lightgcn-{k}", {"layers": k, **LAYER_SETTINGS.get(k, {})})
                    for k in layers]
    for label, params in configs:
        name = label.split("-")[0] if label.startswith("lightgcn") else label
        runs = []
        for seed in seeds if name in SEEDED else seeds[:1]:
            model = make(name, seed, threads, **params)
            runs.append({"seed": seed, **fit_run(model, split.train, split.test)})
            print(label, runs[-1], flush=True)
        keys = [k for k in runs[0] if k in ("Recall@20", "NDCG@20")]
        out["models"][label] = {"params": model.get_params(), "runs": runs,
                                "summary": {k: spread([r[k] for r in runs]) for k in keys}}
    return out


def tune(names: list[str], every: int, threads: int) -> dict[str, Any]:
    inner = random_split(split_ml100k().train, 0.2, seed=0, per_user=True)
    out: dict[str, Any] = {"machine": machine(), "threads": threads,
                           "validation": "per-user random 80/20 (seed 0) of the benchmark's "
                                         "training part", "references": {}, "runs": {}}
    for name in ("bpr", "ials"):
        out["references"][name] = fit_run(make(name, 0, threads), inner.train, inner.test)
        print(name, out["references"][name], flush=True)
    for key in names:
        params = GRID[key]
        curve = validation_curve(make("lightgcn", 0, threads, **params), inner.train, inner.test,
                                 ranking, every, key)
        out["runs"][key] = {"params": params, "curve": curve}
    return out


def speed(rows: int, threads: int, device: str, batch: int | None) -> dict[str, Any]:
    users = max(rows // 50, 1)
    data = generate(n_users=users, n_items=max(users // 2, 100), n_interactions=rows,
                    feedback="implicit", seed=0)
    extra = {} if batch is None else {"train_batch_size": batch}
    model = create_model("lightgcn", epochs=1, threads=threads, device=device, **extra)
    model.fit(data)  # warm-up: numba's kernels compile (or load from the cache)
    wall = time.perf_counter()
    model.fit(data)
    record = model.history_[0]
    return {"machine": machine(), "threads": threads, "device": device,
            "data": {"users": data.n_users, "items": data.n_items, "interactions": len(data)},
            "params": model.get_params(), "fit_seconds": round(time.perf_counter() - wall, 2),
            "epoch_seconds": record["seconds"],
            "examples_per_second": record["samples_per_second"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--layers", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/numba threads per model (default 1; 2 with --speed)")
    parser.add_argument("--tune", action="store_true", help="validation curves of --grid")
    parser.add_argument("--grid", nargs="+", choices=list(GRID), default=list(GRID))
    parser.add_argument("--every", type=int, default=10, help="epochs between curve points")
    parser.add_argument("--speed", action="store_true", help="one epoch on synthetic data")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, help="--speed: train_batch_size (default: the "
                                                  "model's)")
    parser.add_argument("--json", type=Path, help="results path (default benchmarks/results/)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.speed:
        result = speed(args.rows, args.threads or 2, args.device, args.batch)
        path = args.json or RESULTS / f"lightgcn_speed_{args.device.split(':')[0]}.json"
    elif args.tune:
        result = tune(args.grid, args.every, args.threads or 1)
        path = args.json or RESULTS / "lightgcn_tuning.json"
    else:
        result = benchmark(args.models, args.seeds, args.layers, args.threads or 1)
        path = args.json or RESULTS / "lightgcn_ml-100k.json"
    write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
