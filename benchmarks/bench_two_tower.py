"""The two-tower retrieval model on ML-100K: warm leave-last-out and cold-start items.

Benchmark (default), for each of ``--seeds`` (model seed; for the cold split also the seed of
the held-out items):

* warm: the default `TwoTower` fitted on the leave-last-out training part, scored by the
  shared `Evaluator` with sampled-99 and full-ranking HR@10/NDCG@10 (evaluation seed 0), as
  in ``bench_ncf.py``;
* cold items: 10% of the items (drawn with the seed) lose all their interactions to the test
  part; the model trains on the rest, so those items' vectors come from their features alone.
  Recall@50 of each test user's held-out items is measured two ways: ranked among all items
  the user has not interacted with in training ("all"), and among the held-out items only
  ("cold"). MostPopular and Random are measured the same way (popularity is 0 for every
  held-out item, so among all items it ranks them last and among the cold items it is the
  index order).

Tuning (``--tune``): validation curves behind the defaults, on data carved from training
data only. ML-100K and the synthetic implicit set (2000 users x 1000 items x 100k, seed 0, with
demographics, genres, years and titles): the leave-last-out training part split again by
leave-last-out; cold
items: a further 10% of the items of the cold split's training part (seed 0) held out as validation
cold items. Each configuration of `GRID` records per epoch the sampled-99 and full-ranking
HR@10/NDCG@10 (warm) or Recall@50 (cold). Writes ``bench_two_tower_tuning.json``.

``--ties`` is the tie rule of both the leave-last-out splits and the model's histories
(`TwoTower(ties=...)`); it defaults to ``item-id``, the rule the BENCHMARKS.md figures of
issue 5 were measured under, so the commands below still reproduce them. ``--warm-only``
skips the cold-item runs.

Usage::

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_two_tower.py
    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_two_tower.py --tune
    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_two_tower.py \
        --ties file-order --warm-only --json benchmarks/results/bench_two_tower_file-order.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_ncf import RESULTS, machine, ranking, spread

from recforge.data import Interactions
from recforge.data.loading import load_dataset
from recforge.data.splits import TIE_RULES, leave_last_out
from recforge.data.synthetic import generate
from recforge.evaluation import Evaluator
from recforge.evaluation.metrics import recall
from recforge.models import MostPopular, RandomRecommender, Recommender
from recforge.models.retrieval.two_tower import TwoTower

COLD_SHARE = 0.1
COLD_K = 50
#: the tie rule of the splits and of the model's histories (``--ties``) of the recorded figures
TIES = "item-id"

#: validation grid (validation sets, parameters); every run records its whole curve (the
#: default's over 20 epochs, the others' over `TUNE_EPOCHS`)
GRID: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("ml-100k",), {"epochs": 20}),
    (("ml-100k",), {"logq": False}),
    (("ml-100k",), {"temperature": 0.1}),
    (("ml-100k",), {"layers": [256, 64]}),
    (("ml-100k-cold",), {}),
    (("ml-100k-cold",), {"id_dropout": 0.3}),
    # the defaults checked on the synthetic set (2000 users x 1000 items, with features)
    (("synthetic",), {"epochs": 20}),
    (("synthetic",), {"temperature": 0.05}),
    (("synthetic",), {"logq": False}),
    (("synthetic",), {"layers": [256, 64]}),
    (("synthetic",), {"id_dropout": 0.3}),
]
TUNE_EPOCHS = 10


# ---------------------------------------------------------------------- cold items
def cold_item_split(data: Interactions, seed: int) -> tuple[Interactions, Interactions,
                                                            np.ndarray]:
    """(train, test, held-out item mask): a ``COLD_SHARE`` of the items with interactions
    moves to test with all its interactions."""
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(data.item_counts > 0)
    held = np.zeros(data.n_items, dtype=bool)
    held[rng.choice(active, round(COLD_SHARE * len(active)), replace=False)] = True
    in_test = held[data.items]
    return data.subset(~in_test), data.subset(in_test), held


def cold_recall(model: Recommender, train: Interactions, test: Interactions,
                held: np.ndarray) -> dict[str, float]:
    """Recall@50 of the held-out items among all unseen items and among the held-out ones."""
    users = np.unique(test.users)
    relevant = test.binary_csr[users]
    n_relevant = np.diff(relevant.indptr)
    among_all = Evaluator(train, test, [f"recall@{COLD_K}"]).evaluate(model)
    top, _ = model.recommend(users, k=COLD_K, candidates=held)
    rows = np.repeat(np.arange(len(users)), COLD_K)
    hits = np.asarray(relevant[rows, np.maximum(top, 0).ravel()]).reshape(top.shape) > 0
    among_cold = recall(hits & (top >= 0), n_relevant, COLD_K).mean()
    return {f"all Recall@{COLD_K}": round(among_all.metrics[f"Recall@{COLD_K}"], 4),
            f"cold Recall@{COLD_K}": round(float(among_cold), 4)}


# ---------------------------------------------------------------------- benchmark
def warm_runs(data: Interactions, seeds: list[int], ties: str) -> dict[str, Any]:
    train, test = leave_last_out(data, ties=ties)
    runs = []
    for seed in seeds:
        model = TwoTower(seed=seed, ties=ties)
        start = time.perf_counter()
        model.fit(train)
        runs.append({"seed": seed, "fit_seconds": round(time.perf_counter() - start, 2),
                     **ranking(model, train, test),
                     "samples_per_second": [round(h["samples_per_second"])
                                            for h in model.history_],
                     "load_average": os.getloadavg()})
        print("warm", runs[-1], flush=True)
    return {"params": TwoTower(ties=ties).get_params(), "runs": runs,
            "summary": _summary(runs)}


def cold_runs(data: Interactions, seeds: list[int], ties: str) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {"two-tower": [], "most-popular": [], "random": []}
    for seed in seeds:
        train, test, held = cold_item_split(data, seed)
        models = {"two-tower": TwoTower(seed=seed, ties=ties), "most-popular": MostPopular(),
                  "random": RandomRecommender(seed=seed)}
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(train)
            out[name].append({"seed": seed, "fit_seconds": round(time.perf_counter() - start, 2),
                              "n_cold_items": int(held.sum()), "n_test_users":
                              len(np.unique(test.users)),
                              **cold_recall(model, train, test, held)})
            print("cold", name, out[name][-1], flush=True)
    return {name: {"runs": runs, "summary": _summary(runs)} for name, runs in out.items()}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, float) and k != "seed"]
    return {k: spread([r[k] for r in runs]) for k in keys}


def benchmark(seeds: list[int], ties: str = TIES, warm_only: bool = False) -> dict[str, Any]:
    data = load_dataset("ml-100k")
    return {"machine": machine(),
            "protocol": {"warm": f"leave-last-out (ties={ties!r}, also the model's); sampled-99 "
                                 "and full ranking, evaluation seed 0",
                         "cold": f"{COLD_SHARE:.0%} of items held out entirely (seeded); "
                                 f"Recall@{COLD_K} among all unseen items and among the "
                                 "held-out items only"},
            "warm": warm_runs(data, seeds, ties),
            "cold": None if warm_only else cold_runs(data, seeds, ties),
            "load_average_end": os.getloadavg()}


# ---------------------------------------------------------------------- tuning
def validation_sets(ties: str) -> dict[str, tuple[Interactions, Interactions, np.ndarray | None]]:
    """(train, validation, held-out item mask or None), carved from training data only."""
    ml = load_dataset("ml-100k")
    sets: dict[str, tuple[Interactions, Interactions, np.ndarray | None]] = {}
    inner = leave_last_out(leave_last_out(ml, ties=ties).train, ties=ties)
    sets["ml-100k"] = (inner.train, inner.test, None)
    outer_train, _, _ = cold_item_split(ml, 0)
    sets["ml-100k-cold"] = cold_item_split(outer_train, 0)
    inner = leave_last_out(
        leave_last_out(generate(feedback="implicit"), ties=ties).train, ties=ties)
    sets["synthetic"] = (inner.train, inner.test, None)
    return sets


def curve(params: dict[str, Any], train: Interactions, valid: Interactions,
          held: np.ndarray | None) -> list[dict[str, Any]]:
    """Fit with ``params`` (no early stopping); validation figures after every epoch."""
    records: list[dict[str, Any]] = []

    def after_epoch(self: TwoTower, loop: Any) -> None:
        TwoTower._after_epoch(self, loop)
        scores = (ranking(self, train, valid) if held is None
                  else cold_recall(self, train, valid, held))
        records.append({"epoch": loop.history[-1]["epoch"],
                        "loss": round(loop.history[-1]["loss"], 4), **scores})

    model = TwoTower(**params)
    model.__class__ = type("TrackedTwoTower", (TwoTower,), {"_after_epoch": after_epoch})
    model.fit(train)
    return records


def tune(seeds: list[int], only: list[str] | None = None, ties: str = TIES) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(),
                           "defaults_at_tuning": TwoTower(ties=ties).get_params(),
                           "runs": []}
    sets = validation_sets(ties)
    for names, params in GRID:
        for dataset in names:
            if only and dataset not in only:
                continue
            for seed in seeds:
                start = time.perf_counter()
                records = curve({"epochs": TUNE_EPOCHS, "ties": ties, **params, "seed": seed},
                                *sets[dataset])
                out["runs"].append({"dataset": dataset, "params": params, "seed": seed,
                                    "seconds": round(time.perf_counter() - start),
                                    "curve": records})
                print(dataset, params, seed, "last:", records[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--tune", action="store_true", help="run the validation grid")
    parser.add_argument("--tune-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--tune-sets", nargs="+", choices=["ml-100k", "ml-100k-cold", "synthetic"],
                        help="validation sets of the grid to run (default: all)")
    parser.add_argument("--json", type=Path, help="results path (default benchmarks/results/)")
    parser.add_argument("--ties", choices=TIE_RULES, default=TIES,
                        help="tie rule of the splits and the model's histories (default: "
                             "%(default)s, the rule of the recorded figures)")
    parser.add_argument("--warm-only", action="store_true", help="skip the cold-item runs")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.tune:
        result, path = (tune(args.tune_seeds, args.tune_sets, args.ties),
                        RESULTS / "bench_two_tower_tuning.json")
    else:
        result = benchmark(args.seeds, args.ties, args.warm_only)
        path = RESULTS / "bench_two_tower_ml-100k.json"
    path = args.json or path
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
