"""The NCF family on ML-100K: GMF, MLP, NeuMF (pre-trained and from scratch) and dot-MF.

Benchmark (default): every model with its default hyperparameters, fitted on the
leave-last-out training part for each of ``--seeds`` (model seeds; the evaluation negatives
are always drawn with seed 0), scored by the shared `Evaluator`: sampled-99 and full-ranking
HR@10/NDCG@10. Reported per model: mean, standard deviation, min and max over seeds, fit
seconds (pre-training included) and training samples per second per epoch, with the
machine, thread count and load average. Writes ``benchmarks/results/bench_ncf_ml-100k.json``.

Tuning (``--tune``): the validation curves behind the defaults. Validation data is carved
from training data only: the leave-last-out training part of ML-100K is split again by
leave-last-out (each user's latest training interaction is the validation item), and the
synthetic implicit set (2000 users x 1000 items x 100k, seed 0) is split the same way twice
(the outer test part is never used). Each configuration in `GRID` trains for a fixed number
of epochs (no early stopping, as the defaults are used) and records per epoch the sampled-99
HR@10/NDCG@10 and full-ranking HR@10/NDCG@10 on the validation items. Writes
``benchmarks/results/bench_ncf_tuning.json``.

Usage::

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_ncf.py
    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_ncf.py --tune
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from recforge.data import Interactions
from recforge.data.loading import load_dataset
from recforge.data.splits import leave_last_out
from recforge.data.synthetic import generate
from recforge.evaluation import Evaluator
from recforge.models import GMF, MLP, DotMF, NeuMF, create_model
from recforge.models.neural.torch_base import TorchRecommender

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = ("sampled-99", "full")
METRICS = ("hr@10", "ndcg@10")

#: the benchmarked models: defaults, except NeuMF without pre-training, whose optimiser,
#: learning rate and epochs were validated separately (its defaults are the fine-tuning ones)
MODELS: dict[str, Callable[[int], TorchRecommender]] = {
    "gmf": lambda seed: GMF(seed=seed),
    "mlp": lambda seed: MLP(seed=seed),
    "neumf": lambda seed: NeuMF(seed=seed),
    "neumf-scratch": lambda seed: NeuMF(pretrain=False, seed=seed, **NEUMF_SCRATCH),
    "dot-mf": lambda seed: DotMF(seed=seed),
}
NEUMF_SCRATCH: dict[str, Any] = {"optimizer": "adam", "learning_rate": 0.001, "epochs": 11}

#: validation grid (model name, parameters); each run trains with ``--tune-seeds`` and
#: records its whole validation curve, so the epoch count is read off the curve
GRID: list[tuple[str, dict[str, Any]]] = [
    ("gmf", {"factors": 8, "learning_rate": 0.01, "weight_decay": 0.0, "epochs": 20}),
    ("gmf", {"factors": 16, "learning_rate": 0.01, "weight_decay": 0.0, "epochs": 20}),
    ("gmf", {"factors": 32, "learning_rate": 0.003, "weight_decay": 0.0, "epochs": 20}),
    ("gmf", {"factors": 32, "learning_rate": 0.003, "weight_decay": 1e-5, "epochs": 20}),
    ("mlp", {"layers": [64, 32, 16, 8], "learning_rate": 0.003, "epochs": 20}),
    ("mlp", {"layers": [128, 64, 32, 16], "learning_rate": 0.003, "epochs": 20}),
    ("mlp", {"layers": [128, 64, 32, 16], "learning_rate": 0.001, "epochs": 20}),
    ("dot-mf", {"factors": 32, "learning_rate": 0.003, "weight_decay": 0.0, "epochs": 20}),
    ("dot-mf", {"factors": 64, "learning_rate": 0.003, "weight_decay": 1e-5, "epochs": 20}),
    ("neumf", {"pretrain": False, "learning_rate": 0.001, "epochs": 15}),
    ("neumf", {"pretrain": False, "learning_rate": 0.003, "epochs": 15}),
    ("neumf", {"learning_rate": 0.0003, "epochs": 8}),  # after the default GMF and MLP
    ("neumf", {"learning_rate": 0.001, "epochs": 8}),
    # fine-tuning variations after the default GMF and MLP (plain SGD as in the paper, more
    # weight on the stronger GMF branch, a smaller Adam step)
    ("neumf", {"optimizer": "sgd", "learning_rate": 0.01, "epochs": 8}),
    ("neumf", {"optimizer": "sgd", "learning_rate": 0.05, "epochs": 8}),
    ("neumf", {"alpha": 0.7, "learning_rate": 0.001, "epochs": 8}),
    ("neumf", {"learning_rate": 0.0001, "epochs": 8}),
    # variations of the default GMF (none better on ML-100K validation)
    ("gmf", {"weight_decay": 1e-4, "epochs": 16}),
    ("gmf", {"optimizer": "adamw", "weight_decay": 0.1, "epochs": 16}),
    ("gmf", {"sampling": "popularity", "epochs": 16}),
    ("gmf", {"negatives": 2, "epochs": 16}),
    ("gmf", {"negatives": 8, "epochs": 16}),
    ("gmf", {"train_batch_size": 256, "epochs": 16}),
    ("gmf", {"schedule": "cosine", "epochs": 16}),
    ("gmf", {"init_std": 0.1, "epochs": 16}),
]


# ---------------------------------------------------------------------- helpers
def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                if line.startswith("Model name")), platform.processor())
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "load_average": os.getloadavg(),
            "date": datetime.date.today().isoformat()}


def ranking(model: TorchRecommender, train: Interactions, test: Interactions
            ) -> dict[str, float]:
    out = {}
    for protocol in PROTOCOLS:
        result = Evaluator(train, test, METRICS, protocol, seed=0).evaluate(model)
        out |= {f"{protocol} {k}": round(v, 4) for k, v in result.metrics.items()}
    return out


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def timed_fit(model: Any, train: Interactions) -> dict[str, Any]:
    """Fit ``model``: wall and CPU seconds, the load average after, and for models that
    train by epochs their count, examples per second and mean epoch seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(train)
    record: dict[str, Any] = {"fit_seconds": round(time.perf_counter() - wall, 1),
                              "fit_cpu_seconds": round(time.process_time() - cpu, 1),
                              "load_average": [round(x, 2) for x in os.getloadavg()]}
    history = getattr(model, "history_", None)
    if history and "samples_per_second" in history[0]:
        record["epochs"] = len(history)
        record["examples_per_second"] = round(
            sum(h["samples"] for h in history) / sum(h["seconds"] for h in history))
        record["epoch_seconds"] = round(sum(h["seconds"] for h in history) / len(history), 2)
    return record


def validation_curve(model: Any, train: Interactions, test: Interactions,
                     ranking: Callable[[Any, Interactions, Interactions], dict[str, float]],
                     every: int, label: str) -> list[dict[str, Any]]:
    """Fit ``model`` on ``train`` without early stopping, scoring it on ``test`` with
    ``ranking`` every ``every`` epochs: the curve's points (epoch, metrics, seconds)."""
    records: list[dict[str, Any]] = []
    start = time.perf_counter()

    def score(fitted: Any) -> tuple[str, float]:
        epoch = len(records) + 1
        records.append({"epoch": epoch})
        if epoch % every == 0:
            records[-1] |= ranking(fitted, train, test)
            records[-1]["seconds"] = round(time.perf_counter() - start, 1)
            print(label, records[-1], flush=True)
        return "epoch", -epoch  # never "improves": no early stop, the curve runs out

    model.set_params(patience=10**6)
    model.fit(train, valid=score)
    return [r for r in records if len(r) > 1]


def throughput(model: TorchRecommender) -> dict[str, list[float]]:
    """Training samples per second of every epoch, per training stage."""
    stages = {**getattr(model, "pretrain_history_", {}), model.name: model.history_}
    return {name: [round(h["samples_per_second"]) for h in history]
            for name, history in stages.items()}


# ---------------------------------------------------------------------- benchmark
def benchmark(names: list[str], seeds: list[int], device: str) -> dict[str, Any]:
    split = leave_last_out(load_dataset("ml-100k"), ties="item-id")
    out: dict[str, Any] = {"machine": machine(), "protocol": "leave-last-out; sampled-99 "
                           "negatives and full ranking, evaluation seed 0", "models": {}}
    for name in names:
        runs = []
        for seed in seeds:
            model = MODELS[name](seed).set_params(device=device)
            start = time.perf_counter()
            model.fit(split.train)
            seconds = time.perf_counter() - start
            runs.append({"seed": seed, "device": str(model.torch_device),
                         "fit_seconds": round(seconds, 2),
                         **ranking(model, split.train, split.test),
                         "samples_per_second": throughput(model),
                         "load_average": os.getloadavg()})
            print(f"{name} seed {seed}: {runs[-1]}", flush=True)
        keys = [k for k in runs[0] if k.startswith(PROTOCOLS) or k == "fit_seconds"]
        out["models"][name] = {"params": MODELS[name](seeds[0]).get_params(), "runs": runs,
                               "summary": {k: spread([r[k] for r in runs]) for k in keys}}
    out["machine"]["load_average_end"] = os.getloadavg()
    return out


# ---------------------------------------------------------------------- tuning
def validation_splits(names: list[str]) -> dict[str, tuple[Interactions, Interactions]]:
    """(train, validation) carved from the training part only, per dataset."""
    loaders = {"ml-100k": lambda: load_dataset("ml-100k"),
               "synthetic": lambda: generate(feedback="implicit")}
    out = {}
    for name in names:
        data = loaders[name]()
        inner = leave_last_out(leave_last_out(data, ties="item-id").train, ties="item-id")
        out[name] = (inner.train, inner.test)
    return out


def curve(name: str, params: dict[str, Any], train: Interactions,
          valid: Interactions) -> list[dict[str, Any]]:
    """Fit ``name`` on ``train`` (no early stopping) and score ``valid`` after every epoch."""
    model = create_model(name, **params)
    records: list[dict[str, Any]] = []
    base = type(model)

    def after_epoch(self: TorchRecommender, loop: Any) -> None:
        base._after_epoch(self, loop)
        last = loop.history[-1]
        records.append({"epoch": last["epoch"], "loss": round(last["loss"], 4),
                        **ranking(self, train, valid)})

    model.__class__ = type(f"Tracked{base.__name__}", (base,), {"_after_epoch": after_epoch})
    model.fit(train)
    return records


def tune(seeds: list[int], sets: list[str], entries: list[int] | None) -> dict[str, Any]:
    defaults = {name: create_model(name).get_params() for name in ("gmf", "mlp", "neumf")}
    out: dict[str, Any] = {"machine": machine(), "defaults_at_tuning": defaults, "runs": []}
    grid = GRID if entries is None else [GRID[i] for i in entries]
    for dataset, (train, valid) in validation_splits(sets).items():
        for name, params in grid:
            for seed in seeds:
                start = time.perf_counter()
                records = curve(name, {**params, "seed": seed}, train, valid)
                best = max(records, key=lambda r: r["sampled-99 HR@10"])
                out["runs"].append({"dataset": dataset, "model": name, "params": params,
                                    "seed": seed, "seconds": round(time.perf_counter() - start),
                                    "best_epoch_by_sampled_hr": best["epoch"],
                                    "curve": records})
                print(dataset, name, params, seed, "last:", records[-1], "best:", best,
                      flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--tune", action="store_true", help="run the validation grid")
    parser.add_argument("--tune-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--tune-sets", nargs="+", default=["ml-100k", "synthetic"],
                        choices=["ml-100k", "synthetic"])
    parser.add_argument("--grid-entries", nargs="+", type=int,
                        help="indices into GRID to run (default: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (benchmark)")
    parser.add_argument("--json", type=Path, help="results path (default benchmarks/results/)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.tune:
        result = tune(args.tune_seeds, args.tune_sets, args.grid_entries)
        path = RESULTS / "bench_ncf_tuning.json"
    else:
        result = benchmark(args.models, args.seeds, args.device)
        path = RESULTS / "bench_ncf_ml-100k.json"
    path = args.json or path
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
