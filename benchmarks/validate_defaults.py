"""Issue 11: do the leaderboard defaults still hold on validation splits made with file-order ties?

Every default below was chosen on validation splits carved from the *training* part by
leave-last-out with the old tie rule ``ties="item-id"``. This script reruns those selections
(or, where the time box did not allow the whole grid, the default and its grid neighbours)
with ``ties="file-order"`` (the default of `recforge.data.splits.leave_last_out` since issue
11) for both the outer and the inner leave-last-out. Never the test split.

Parts (each writes ``benchmarks/results/validate_defaults_<part>.json``):

``knn-ease``
    The whole top-N grid of ``bench_knn_ease.py validate`` (`TOP_N_GRID`: EASE, item-kNN,
    user-kNN), the same two validation folds per dataset (the last and the second-to-last
    training interaction of each user), sampled-99 HR@10 averaged over the folds and negatives
    seeds 0-2, on ML-100K and the implicit synthetic set, the same selection rule
    (`bench_knn_ease.choose`).
``ials-bpr``
    The default and its one-at-a-time neighbours from the grids the iALS and BPR docstrings
    describe, on the inner leave-last-out of ML-100K and of the synthetic implicit set,
    sampled-99 HR@10 (negatives seed 0) and full-ranking NDCG@10, model seeds ``--seeds``.
``ncf``
    GMF and NeuMF entries of ``bench_ncf.py --tune``'s grid (per-epoch validation curves on
    the inner leave-last-out, ``bench_ncf.curve``), ML-100K.
``two-tower``
    Entries of ``bench_two_tower.py --tune``'s grid (``bench_two_tower.curve`` on its
    ``validation_sets(ties)``, model histories under the same rule), ML-100K.
``recent``
    ``bench_next_item.py``'s window grid for ``recent-popular`` (next-item NDCG@10 on the last
    training event of each user), with the tie rule explicit.

Noise: for a deterministic model (EASE, kNN, recent-popular) a paired bootstrap over users
(1,000 resamples, seed 0) of the difference between the best setting and the default, each
user's difference averaged over the folds and negatives seeds first; for seeded models the
spread over model seeds.

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/validate_defaults.py knn-ease
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from recforge.data.loading import load_dataset
from recforge.data.splits import TIE_RULES, leave_last_out
from recforge.data.synthetic import generate
from recforge.evaluation import Evaluator
from recforge.models import create_model

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": 1}


def datasets(names: tuple[str, ...] = ("ml-100k", "synthetic")) -> dict[str, Any]:
    loaders = {"ml-100k": lambda: load_dataset("ml-100k"),
               "synthetic": lambda: generate(feedback="implicit")}
    return {name: loaders[name]() for name in names}


def paired_bootstrap(diffs: dict[int, list[float]], n_boot: int = 1000,
                     seed: int = 0) -> dict[str, float]:
    """Mean and 95% interval of the per-user mean difference, users resampled."""
    per_user = np.array([np.mean(v) for v in diffs.values()])
    rng = np.random.default_rng(seed)
    boots = per_user[rng.integers(0, len(per_user), (n_boot, len(per_user)))].mean(axis=1)
    return {"mean": round(float(per_user.mean()), 4),
            "ci95": [round(float(np.quantile(boots, 0.025)), 4),
                     round(float(np.quantile(boots, 0.975)), 4)],
            "users": len(per_user)}


def user_diffs(a: list[tuple[np.ndarray, np.ndarray]],
               b: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, list[float]]:
    """Per-user differences a - b over matching evaluations ((users, values) pairs)."""
    out: dict[int, list[float]] = {}
    for (users_a, va), (users_b, vb) in zip(a, b):
        assert np.array_equal(users_a, users_b)
        for u, d in zip(users_a.tolist(), (va - vb).tolist()):
            out.setdefault(u, []).append(d)
    return out


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "values": [round(v, 4) for v in values]}


# ---------------------------------------------------------------------- kNN and EASE
def knn_ease(args: argparse.Namespace) -> dict[str, Any]:
    from bench_knn_ease import TOP_N_GRID, choose

    ties = args.ties
    rows: list[dict[str, Any]] = []
    per_user: dict[tuple[str, str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for label, full in datasets().items():
        v1 = leave_last_out(leave_last_out(full, ties=ties).train, ties=ties)
        v2 = leave_last_out(v1.train, ties=ties)
        evaluators = [(fold, Evaluator(fold.train, fold.test, metrics=["hr@10"],
                                       protocol="sampled-99", seed=seed))
                      for fold in (v1, v2) for seed in (0, 1, 2)]
        for name in args.models:
            for params in TOP_N_GRID[name]:
                hrs, users = [], []
                for fold in (v1, v2):
                    model = create_model(name, **params).fit(fold.train)
                    for f, ev in evaluators:
                        if f is fold:
                            res = ev.evaluate(model)
                            hrs.append(res.metrics["HR@10"])
                            users.append((res.users, res.per_user["HR@10"]))
                key = json.dumps(params, sort_keys=True)
                per_user[(label, name, key)] = users
                rows.append({"data": label, "model": name, "params": params,
                             "sampled-99 HR@10": float(np.mean(hrs)), "per_fold_seed": hrs})
                print(rows[-1], flush=True)
    chosen = choose(rows)
    summary: dict[str, Any] = {}
    for name in args.models:
        defaults = create_model(name).get_params()
        grid_keys = {k for k in TOP_N_GRID[name][0]} | {k for p in TOP_N_GRID[name] for k in p}
        default_params = {k: defaults[k] for k in sorted(grid_keys)}
        default_key = json.dumps(default_params, sort_keys=True)
        best_key = json.dumps(chosen[name]["params"], sort_keys=True)
        out = {"default": default_params, "chosen": chosen[name]}
        for label in ("ml-100k", "synthetic"):
            part = {json.dumps(r["params"], sort_keys=True): r["sampled-99 HR@10"]
                    for r in rows if r["model"] == name and r["data"] == label}
            matching = [k for k in part if all(
                json.loads(k).get(p, defaults[p]) == defaults[p] for p in grid_keys)]
            dkey = matching[0] if matching else None
            best_here = max(part, key=part.get)
            entry: dict[str, Any] = {"best": json.loads(best_here), "best HR@10": part[best_here]}
            if dkey is not None:
                entry["default HR@10"] = part[dkey]
                entry["rank of default"] = sorted(part.values(), reverse=True).index(part[dkey]) + 1
                entry["settings"] = len(part)
                entry["best - default (paired bootstrap over users)"] = paired_bootstrap(
                    user_diffs(per_user[(label, name, best_here)], per_user[(label, name, dkey)]))
                if best_key in part:
                    entry["chosen - default (paired bootstrap over users)"] = paired_bootstrap(
                        user_diffs(per_user[(label, name, best_key)],
                                   per_user[(label, name, dkey)]))
            else:
                entry["default HR@10"] = None
                entry["note"] = f"the default {default_key} is not in the grid"
            out[label] = entry
        summary[name] = out
    return {"rule": "per model, the setting with the best mean over the two datasets of "
                    "sampled-99 HR@10 (mean over 2 leave-last-out validation folds x negatives "
                    "seeds 0-2) relative to that dataset's best (bench_knn_ease.choose)",
            "rows": rows, "chosen": chosen, "summary": summary}


# ---------------------------------------------------------------------- iALS and BPR
IALS_GRID: list[dict[str, Any]] = [
    {}, {"factors": 128}, {"reg": 10.0}, {"reg": 100.0}, {"reg": 1.0}, {"alpha": 1.0},
    {"alpha": 5.0}, {"alpha": 10.0}, {"use_values": True}, {"scaling": "log"}, {"epochs": 30},
]
BPR_GRID: list[dict[str, Any]] = [
    {}, {"learning_rate": 0.01}, {"learning_rate": 0.1}, {"reg": 0.003, "reg_bias": 0.003},
    {"reg": 0.03, "reg_bias": 0.03}, {"epochs": 100},
]


def inner_split(data: Any, ties: str) -> Any:
    return leave_last_out(leave_last_out(data, ties=ties).train, ties=ties)


def ials_bpr(args: argparse.Namespace) -> dict[str, Any]:
    grids = {"ials": IALS_GRID, "bpr": BPR_GRID}
    runs: list[dict[str, Any]] = []
    for label, full in datasets(tuple(args.datasets)).items():
        inner = inner_split(full, args.ties)
        sampled = Evaluator(inner.train, inner.test, ["hr@10", "ndcg@10"], "sampled-99", seed=0)
        fullrank = Evaluator(inner.train, inner.test, ["hr@10", "ndcg@10"], "full", seed=0)
        for name in args.models:
            for params in grids[name]:
                hr, nd, seconds = [], [], []
                for seed in args.seeds:
                    start = time.perf_counter()
                    model = create_model(name, **params, threads=1, seed=seed).fit(inner.train)
                    seconds.append(time.perf_counter() - start)
                    hr.append(sampled.evaluate(model).metrics["HR@10"])
                    nd.append(fullrank.evaluate(model).metrics["NDCG@10"])
                runs.append({"data": label, "model": name, "params": params or "default",
                             "sampled-99 HR@10": spread(hr), "full NDCG@10": spread(nd),
                             "fit_seconds": round(statistics.fmean(seconds), 1)})
                print(runs[-1], flush=True)
    return {"protocol": "inner leave-last-out (validation item: each user's last training "
                        "interaction); sampled-99 negatives seed 0, full ranking; mean and "
                        "standard deviation over model seeds", "runs": runs}


# ---------------------------------------------------------------------- NCF
NCF_ENTRIES = (1, 3, 12, 14)


def ncf(args: argparse.Namespace) -> dict[str, Any]:
    from bench_ncf import GRID, curve

    inner = inner_split(load_dataset("ml-100k"), args.ties)
    runs = []
    for index in args.entries or NCF_ENTRIES:
        name, params = GRID[index]
        params = {**params, **({"epochs": args.max_epochs} if args.max_epochs else {})}
        for seed in args.seeds:
            start = time.perf_counter()
            records = curve(name, {**params, "seed": seed, "threads": 1}, inner.train,
                            inner.test)
            best = max(records, key=lambda r: r["sampled-99 HR@10"])
            runs.append({"dataset": "ml-100k", "grid_entry": index, "model": name,
                         "params": params, "seed": seed,
                         "seconds": round(time.perf_counter() - start),
                         "best_epoch_by_sampled_hr": best["epoch"], "curve": records})
            print(name, params, seed, "best:", best, flush=True)
    return {"protocol": "bench_ncf.py --tune's curves on the inner leave-last-out of ML-100K",
            "runs": runs}


# ---------------------------------------------------------------------- two-tower
TWO_TOWER_ENTRIES: list[dict[str, Any]] = [{}, {"temperature": 0.05}, {"logq": False}]


def two_tower(args: argparse.Namespace) -> dict[str, Any]:
    import bench_two_tower as bt

    train, valid, _ = bt.validation_sets(args.ties)["ml-100k"]
    runs = []
    for params in TWO_TOWER_ENTRIES[: args.two_tower_entries]:
        for seed in args.seeds:
            start = time.perf_counter()
            records = bt.curve({"epochs": args.max_epochs or bt.TUNE_EPOCHS, "ties": args.ties,
                                **params, "seed": seed}, train, valid, None)
            runs.append({"dataset": "ml-100k", "params": params or "default", "seed": seed,
                         "seconds": round(time.perf_counter() - start), "curve": records})
            print(params, seed, "last:", records[-1], flush=True)
    return {"protocol": "bench_two_tower.py --tune's curves on its ML-100K validation set "
                        "(inner leave-last-out), model histories under the same tie rule",
            "runs": runs}


# ---------------------------------------------------------------------- recent-popular
def recent(args: argparse.Namespace) -> dict[str, Any]:
    from bench_next_item import WINDOWS

    split = leave_last_out(load_dataset("ml-100k"), ties=args.ties)
    inner = leave_last_out(split.train, ties=args.ties)
    grid, users = {}, {}
    for w in WINDOWS:
        model = create_model("recent-popular", window_days=w).fit(inner.train)
        res = Evaluator(inner.train, inner.test, ["ndcg@10", "hr@10"],
                        protocol="next-item").evaluate(model)
        grid[str(w)] = {k: round(v, 4) for k, v in res.metrics.items()}
        users[str(w)] = [(res.users, res.per_user["NDCG@10"])]
        print(w, grid[str(w)], flush=True)
    best = max(grid, key=lambda w: grid[w]["NDCG@10"])
    default = str(create_model("recent-popular").get_params()["window_days"]).removesuffix(".0")
    return {"protocol": "next-item (full ranking) on the last training event of each user",
            "grid": grid, "best_window_days": best, "default_window_days": default,
            "best - default NDCG@10 (paired bootstrap over users)":
                paired_bootstrap(user_diffs(users[best], users[default]))}


PARTS = {"knn-ease": knn_ease, "ials-bpr": ials_bpr, "ncf": ncf, "two-tower": two_tower,
         "recent": recent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=list(PARTS))
    parser.add_argument("--ties", choices=TIE_RULES, default="file-order")
    parser.add_argument("--models", nargs="+", help="knn-ease / ials-bpr: models to run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", choices=["ml-100k", "synthetic"],
                        default=["ml-100k", "synthetic"], help="ials-bpr: validation data")
    parser.add_argument("--entries", nargs="+", type=int, help="ncf: indices into bench_ncf.GRID")
    parser.add_argument("--max-epochs", type=int, help="ncf / two-tower: shorter curves")
    parser.add_argument("--two-tower-entries", type=int, default=len(TWO_TOWER_ENTRIES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.models is None:
        args.models = {"knn-ease": ["ease", "item-knn-implicit", "user-knn-implicit"],
                       "ials-bpr": ["ials", "bpr"]}.get(args.part, [])
    start = time.perf_counter()
    result = {"machine": machine(), "part": args.part, "ties": args.ties,
              "command": " ".join(sys.argv), **PARTS[args.part](args)}
    result["seconds"] = round(time.perf_counter() - start)
    result["machine"]["load_average_end"] = os.getloadavg()
    path = args.json or RESULTS / f"validate_defaults_{args.part}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
