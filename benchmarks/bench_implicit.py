"""recforge's iALS and BPR side by side with the `implicit` library, in one process.

Speed: both libraries fit the same data with the same factors, iterations and threads
(implicit ``num_threads`` = recforge ``threads``; BLAS limited to one thread for both,
as implicit recommends), alternating between libraries for ``--repeats`` rounds after a
warm-up (numba's compiled kernels are cached on disk; the warm-up loads them). Reported:
median fit seconds per library and their ratio (recforge / implicit).

Quality (ML-100K only): each library with its *default* hyperparameters, fitted on the
leave-last-out training part and scored by the shared `Evaluator` (sampled-99 and full
ranking HR@10/NDCG@10), plus recforge's defaults on a random 80/20 split
(Precision/Recall/MAP/NDCG@10). implicit's factors are evaluated through a thin recforge
wrapper, so both are ranked by identical code.

Usage::

    .venv/bin/python benchmarks/bench_implicit.py --datasets ml-100k synthetic-10m \
        --synthetic-parquet /tmp/synthetic-10m.parquet

writes ``benchmarks/results/bench_implicit_<dataset>.json``. The 10M-interaction synthetic
set (100k users x 50k items, seed 0) takes minutes to generate; ``--synthetic-parquet``
keeps it between runs. Needs the ``bench`` extra (``pip install -e .[bench]``) and ML-100K
under ``$RECFORGE_DATA_DIR``.
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
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from recforge.data import Interactions
from recforge.data.loading import load_dataset
from recforge.data.splits import leave_last_out, random_split
from recforge.data.synthetic import generate
from recforge.evaluation import Evaluator
from recforge.models import BPR, ImplicitALS, Recommender
from recforge.models.factorization.factors import FactorModel
from recforge.params import Anything, Rule

RESULTS = Path(__file__).parent / "results"


class ImplicitModel(FactorModel, Recommender):
    """Wraps a model of the `implicit` library so recforge's Evaluator can rank with it."""

    param_rules: ClassVar[dict[str, Rule]] = {"model": Anything()}  # checked by `implicit`

    def __init__(self, model: Any):
        self.model = model

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.model.fit(train.binary_csr, show_progress=False)
        self.user_factors_ = np.asarray(self.model.user_factors)
        self.item_factors_ = np.asarray(self.model.item_factors)


def implicit_als(**params: Any) -> ImplicitModel:
    from implicit.cpu.als import AlternatingLeastSquares

    return ImplicitModel(AlternatingLeastSquares(**params))


def implicit_bpr(**params: Any) -> ImplicitModel:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    return ImplicitModel(BayesianPersonalizedRanking(**params))


def timed_fit(make: Callable[[], Recommender], train: Interactions) -> tuple[float, Recommender]:
    model = make()
    with threadpool_limits(1, "blas"):
        start = time.perf_counter()
        model.fit(train)
        return time.perf_counter() - start, model


def compare_speed(name: str, ours: Callable[[], Recommender], theirs: Callable[[], Recommender],
                  train: Interactions, repeats: int) -> dict[str, Any]:
    """Alternate the two fits ``repeats`` times; median seconds and the ratio."""
    times: dict[str, list[float]] = {"recforge": [], "implicit": []}
    for _ in range(repeats):
        for label, make in (("recforge", ours), ("implicit", theirs)):
            seconds, _ = timed_fit(make, train)
            times[label].append(round(seconds, 3))
            print(f"  {name} {label}: {seconds:.2f}s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds": times, "median_seconds": med,
            "ratio_recforge_over_implicit": round(med["recforge"] / med["implicit"], 3)}


def ranking_metrics(model: Recommender, train: Interactions, test: Interactions) -> dict[str, Any]:
    out = {}
    for protocol in ("sampled-99", "full"):
        result = Evaluator(train, test, metrics=["hr@10", "ndcg@10"], protocol=protocol,
                           seed=0).evaluate(model)
        out[protocol] = {k: round(v, 4) for k, v in result.metrics.items()}
    return out


def quality(data: Interactions, threads: int) -> dict[str, Any]:
    """Default hyperparameters of each library on ML-100K."""
    split = leave_last_out(data, ties="item-id")
    makers: dict[str, Callable[[], Recommender]] = {
        "recforge-ials": lambda: ImplicitALS(threads=threads),
        "implicit-als": lambda: implicit_als(num_threads=threads, random_state=0),
        "recforge-bpr": lambda: BPR(threads=threads),
        "implicit-bpr": lambda: implicit_bpr(num_threads=threads, random_state=0),
    }
    out: dict[str, Any] = {}
    for label, make in makers.items():
        seconds, model = timed_fit(make, split.train)
        out[label] = {"fit_seconds": round(seconds, 3),
                      "leave_last_out": ranking_metrics(model, split.train, split.test)}
        print(f"  {label}: {out[label]}", flush=True)
    random = random_split(data, test_fraction=0.2, seed=0)
    metrics = ["precision@10", "recall@10", "map@10", "ndcg@10"]
    for label in ("recforge-ials", "recforge-bpr"):
        _, model = timed_fit(makers[label], random.train)
        result = Evaluator(random.train, random.test, metrics=metrics).evaluate(model)
        out[label]["random_80_20_full"] = {k: round(v, 4) for k, v in result.metrics.items()}
    return out


def speed(data: Interactions, threads: int, repeats: int, bpr_epochs: int) -> dict[str, Any]:
    """Matched settings: 64 factors, 15 ALS iterations with 3 CG steps, BPR epochs."""
    als = compare_speed(
        "als",
        lambda: ImplicitALS(factors=64, epochs=15, cg_steps=3, threads=threads),
        lambda: implicit_als(factors=64, iterations=15, num_threads=threads, random_state=0),
        data, repeats)
    bpr = compare_speed(
        "bpr",
        lambda: BPR(factors=64, epochs=bpr_epochs, threads=threads),
        lambda: implicit_bpr(factors=64, iterations=bpr_epochs, num_threads=threads,
                             random_state=0),
        data, repeats)
    hogwild = compare_speed(
        "bpr-hogwild",
        lambda: BPR(factors=64, epochs=bpr_epochs, hogwild=True, threads=threads),
        lambda: implicit_bpr(factors=64, iterations=bpr_epochs, num_threads=threads,
                             random_state=0),
        data, repeats)
    return {"ials_vs_implicit_als": als, "bpr_vs_implicit_bpr": bpr,
            "bpr_hogwild_vs_implicit_bpr": hogwild, "bpr_epochs": bpr_epochs}


def warm_up(threads: int) -> None:
    """Load numba's cached kernels and implicit's extensions outside the timings."""
    tiny = generate(n_users=200, n_items=100, n_interactions=4000, feedback="implicit", seed=1)
    for make in (lambda: ImplicitALS(epochs=1, threads=threads),
                 lambda: BPR(epochs=1, threads=threads),
                 lambda: BPR(epochs=1, hogwild=True, threads=threads),
                 lambda: implicit_als(iterations=1, num_threads=threads),
                 lambda: implicit_bpr(iterations=1, num_threads=threads)):
        timed_fit(make, tiny)


def synthetic_10m(cache: Path | None) -> Interactions:
    """100k users x 50k items x 10M implicit interactions (seed 0), cached as Parquet."""
    if cache is not None and cache.is_file():
        return Interactions.from_parquet(str(cache))
    data = generate(n_users=100_000, n_items=50_000, n_interactions=10_000_000,
                    feedback="implicit", seed=0)
    if cache is not None:
        data.to_parquet(str(cache))
    return data


def machine() -> dict[str, Any]:
    cpu = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines()
                  if ln.startswith("Model name")), platform.processor())
    import implicit

    return {"cpu": model, "python": platform.python_version(),
            "implicit": implicit.__version__, "date": time.strftime("%Y-%m-%d"),
            "threadpools": [{k: p[k] for k in ("internal_api", "num_threads")}
                            for p in threadpool_info()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic-10m"],
                        choices=["ml-100k", "synthetic-10m"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic-parquet", type=Path, default=None,
                        help="read the synthetic set from here, or write it here once made")
    args = parser.parse_args()
    warm_up(args.threads)
    for name in args.datasets:
        print(name, flush=True)
        report: dict[str, Any] = {"dataset": name, "machine": machine(),
                                  "threads": args.threads, "repeats": args.repeats}
        if name == "ml-100k":
            data = load_dataset("ml-100k")
            report["quality"] = quality(data, args.threads)
            report["speed"] = speed(leave_last_out(data, ties="item-id").train, args.threads, args.repeats,
                                    bpr_epochs=100)
        else:
            data = synthetic_10m(args.synthetic_parquet)
            data.binary_csr  # noqa: B018  (built once, outside the timings)
            report["speed"] = speed(data, args.threads, args.repeats, bpr_epochs=3)
        out = RESULTS / f"bench_implicit_{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
