"""Sequential models (SASRec, GRU4Rec, BERT4Rec) on ML-100K leave-one-out, beside the best
non-sequential model (two-tower), BPR and most-popular, under one split and tie rule.

Benchmark (default): ML-100K split by `leave_last_out` with the tie rule ``--ties`` (default
``file-order``, the project's default; ``random`` orders equal timestamps at random, seed 0),
every model fitted on the training part with its defaults (sequential models and the
two-tower with the same tie rule for their histories) for each of ``--seeds`` and scored by
the shared `Evaluator` with sampled-100 (100 negatives drawn uniformly among the items the
user never interacted with, evaluation seed 0, the held-out item loses ties) and full
ranking (training items excluded), HR@10 and NDCG@10. Each run records its fit wall time,
CPU time, examples per second and the load average.

Tuning (``--tune``): validation curves on data carved from the training part only (the
leave-last-out training part split again by leave-last-out, same tie rule): each
configuration of ``--grid`` is fitted once (seed 0) and scored with sampled-100 and full
ranking every ``--every`` epochs. Writes ``sequential_tuning_<ties>.json``.

Usage::

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_sequential.py \\
        --models most-popular bpr two-tower sasrec --json benchmarks/results/sequential_ml-100k.json
    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_sequential.py \\
        --tune --grid sasrec
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench_ncf import RESULTS, machine, spread, timed_fit, validation_curve

from recforge.data import Interactions
from recforge.data.loading import load_dataset
from recforge.data.splits import TIE_RULES, leave_last_out
from recforge.evaluation import Evaluator
from recforge.experiments.rundir import write_json
from recforge.models import Recommender, create_model

PROTOCOLS = ("sampled-100", "full")
METRICS = ("hr@10", "ndcg@10")
MODELS = ("most-popular", "bpr", "two-tower", "sasrec", "gru4rec", "bert4rec")
#: models whose histories follow a tie rule (the benchmark gives them the split's)
TIED = ("two-tower", "sasrec", "gru4rec", "bert4rec")
#: models with a seed
SEEDED = ("bpr", *TIED)

#: validation grid: name -> (model, parameters); each curve runs to its ``epochs``
GRID: dict[str, tuple[str, dict[str, Any]]] = {
    "sasrec": ("sasrec", {"epochs": 100}),
    "sasrec-bce": ("sasrec", {"loss": "bce", "epochs": 100}),
    "sasrec-l200": ("sasrec", {"history_length": 200, "epochs": 60}),
    "sasrec-sampled": ("sasrec", {"loss": "sampled-softmax", "negatives": 256, "epochs": 100}),
    "sasrec-lr3": ("sasrec", {"learning_rate": 0.003, "epochs": 60}),
    "sasrec-lr3-dropout4": ("sasrec", {"learning_rate": 0.003, "epochs": 40, "dropout": 0.4}),
    "sasrec-d128": ("sasrec", {"embedding_dim": 128, "epochs": 30}),
    "sasrec-blocks3": ("sasrec", {"blocks": 3, "epochs": 30}),
    "sasrec-l100": ("sasrec", {"history_length": 100, "epochs": 30}),
    "sasrec-lr3-l200": ("sasrec", {"learning_rate": 0.003, "epochs": 40, "history_length": 200}),
    "gru4rec": ("gru4rec", {"epochs": 60}),
    "gru4rec-bpr-max": ("gru4rec", {"loss": "bpr-max", "epochs": 16}),
    "gru4rec-top1-max": ("gru4rec", {"loss": "top1-max", "epochs": 16}),
    "bert4rec": ("bert4rec", {"epochs": 200}),
    "bert4rec-lr3": ("bert4rec", {"learning_rate": 0.003, "epochs": 60}),
}


def ranking(model: Recommender, train: Interactions, test: Interactions) -> dict[str, float]:
    """Sampled-100 and full-ranking HR@10 / NDCG@10."""
    out = {}
    for protocol in PROTOCOLS:
        result = Evaluator(train, test, METRICS, protocol, seed=0).evaluate(model)
        out |= {f"{protocol} {k}": round(v, 4) for k, v in result.metrics.items()}
    return out


def make(name: str, seed: int, ties: str, threads: int, **params: Any) -> Recommender:
    """``name`` with its defaults, the seed, the tie rule and the threads where it has them."""
    if name in SEEDED:
        params["seed"] = seed
    if name in TIED:
        params |= {"ties": ties, "threads": threads}
    return create_model(name, **params)


def fit_run(model: Recommender, train: Interactions, test: Interactions) -> dict[str, Any]:
    """Fit, timed (`timed_fit`), and evaluate."""
    return timed_fit(model, train) | ranking(model, train, test)


def benchmark(names: list[str], seeds: list[int], ties: str, threads: int,
              previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every model of ``names`` over ``seeds``; the models of ``previous`` (an earlier result
    file of the same tie rule) that were not rerun are kept, each with its own machine."""
    split = leave_last_out(load_dataset("ml-100k"), ties=ties, seed=0)
    out: dict[str, Any] = {
        "machine": machine(), "ties": ties, "threads": threads,
        "protocol": f"leave-last-out (ties={ties!r}, seed 0; also the models' histories); "
                    "sampled-100 (evaluation seed 0, pessimistic) and full ranking",
        "models": {}}
    if previous is not None and previous.get("ties") == ties:
        for name, entry in previous["models"].items():
            out["models"][name] = {"machine": previous["machine"], **entry}
    for name in names:
        runs = []
        for seed in seeds if name in SEEDED else seeds[:1]:
            model = make(name, seed, ties, threads)
            runs.append({"seed": seed, **fit_run(model, split.train, split.test)})
            print(ties, name, runs[-1], flush=True)
        keys = [k for k in runs[0] if k.startswith(PROTOCOLS)]
        out["models"][name] = {"machine": out["machine"], "params": model.get_params(),
                               "runs": runs,
                               "summary": {k: spread([r[k] for r in runs]) for k in keys}}
    return out


def tune(names: list[str], ties: str, every: int, threads: int) -> dict[str, Any]:
    outer = leave_last_out(load_dataset("ml-100k"), ties=ties, seed=0)
    inner = leave_last_out(outer.train, ties=ties, seed=0)
    out: dict[str, Any] = {"machine": machine(), "ties": ties,
                           "validation": "leave-last-out of the leave-last-out training part",
                           "runs": {}}
    for key in names:
        name, params = GRID[key]
        curve = validation_curve(make(name, 0, ties, threads, **params), inner.train, inner.test,
                                 ranking, every, key)
        out["runs"][key] = {"model": name, "params": params,
                            "curve": curve}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ties", choices=TIE_RULES, default="file-order")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model")
    parser.add_argument("--tune", action="store_true", help="validation curves of --grid")
    parser.add_argument("--grid", nargs="+", choices=list(GRID), default=list(GRID))
    parser.add_argument("--every", type=int, default=5, help="epochs between curve points")
    parser.add_argument("--json", type=Path, help="results path (default benchmarks/results/)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the other models of an existing results file")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.tune:
        result = tune(args.grid, args.ties, args.every, args.threads)
        path = args.json or RESULTS / f"sequential_tuning_{args.ties}.json"
    else:
        path = args.json or RESULTS / f"sequential_ml-100k_{args.ties}.json"
        previous = json.loads(path.read_text()) if args.keep and path.exists() else None
        result = benchmark(args.models, args.seeds, args.ties, args.threads, previous)
    write_json(path, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
