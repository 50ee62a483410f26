"""kNN and EASE: default validation, ML-100K quality, and speed beside reference libraries.

Parts (each writes ``benchmarks/results/bench_knn_ease_<part>.json``):

``validate``
    How the defaults were chosen: grids evaluated on validation splits carved from the
    *training* data only (top-N: leave-last-out of the leave-last-out training part and
    leave-last-out of what precedes it, sampled-99 HR@10 as in the ML-100K bars averaged
    over the two folds and negatives seeds 0-2, on ML-100K and the implicit synthetic set; a
    seeded random 20% of ML-100K u1.base / of the synthetic ratings for RMSE). Never the
    test split.
``quality``
    ML-100K test figures of the defaults: leave-last-out with 99 sampled negatives and with
    full ranking (HR@10, NDCG@10), random 80/20 (Precision/Recall/MAP/NDCG@10, full
    ranking), and u1 RMSE beside Surprise's KNNBaseline / KNNWithMeans when installed.
``speed`` and ``speed-synthetic``
    Fit times, recforge and the reference side by side in one process, repeated (median and
    ratio): implicit's CosineRecommender/BM25Recommender, Surprise's KNNBaseline and a direct
    numpy EASE (``np.linalg.inv``), on ML-100K; then the synthetic set of 10M interactions
    (100k users x 50k items): item-item kNN (top-k pruned, blocked) beside implicit, rating
    item-kNN, and EASE on the most popular items only (a 50k-item EASE needs a 10 GB float32
    matrix and an O(n^3) solve).

    .venv/bin/python benchmarks/bench_knn_ease.py validate
    .venv/bin/python benchmarks/bench_knn_ease.py quality
    .venv/bin/python benchmarks/bench_knn_ease.py speed --repeat 5
    .venv/bin/python benchmarks/bench_knn_ease.py speed-synthetic [--data syn10m.parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.movielens import load_ml100k, load_ml100k_fold
from recforge.data.synthetic import generate
from recforge.evaluation import Evaluator
from recforge.models import create_model

RESULTS = Path(__file__).parent / "results"
DATA_DIR = os.environ.get("RECFORGE_DATA_DIR")
TOP_N_MODELS = ("ease", "item-knn-implicit", "user-knn-implicit")
RATING_MODELS = ("item-knn", "user-knn")


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def write(part: str, payload: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_knn_ease_{part}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"wrote {path}")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def fit(name: str, params: dict[str, Any], train: Interactions) -> Any:
    return create_model(name, **params).fit(train)


def surprise_predict(algo: Any, test: Interactions) -> np.ndarray:
    return np.array([algo.predict(u, i).est for u, i in zip(test.users, test.items)])


def rmse(model: Any, test: Interactions) -> float:
    err = model.predict(test.users, test.items).astype(np.float64) - test.ratings
    return float(np.sqrt(np.mean(err**2)))


# ---------------------------------------------------------------------- validate
_CLASSIC_KNN = [{"k": k, "similarity": s, "weighting": w}
                for s, w in (("cosine", "none"), ("cosine", "bm25"), ("cosine", "tfidf"),
                             ("jaccard", "none"), ("dot", "bm25"), ("dot", "tfidf"))
                for k in (10, 20, 50, 100, 200, 400)]
TOP_N_GRID: dict[str, list[dict[str, Any]]] = {
    "ease": [{"reg": r, "weight_exponent": 0.0, "dropout": p}
             for r in (50.0, 100.0, 200.0, 300.0, 500.0, 800.0) for p in (0.0, 0.1, 0.25, 0.5)]
    + [{"reg": r, "weight_exponent": b} for b, regs in (
        (0.1, (40.0, 70.0, 100.0, 150.0)), (0.15, (40.0, 70.0, 100.0, 150.0)),
        (0.25, (20.0, 40.0, 50.0, 70.0, 100.0)), (0.3, (30.0, 50.0)),
        (0.35, (10.0, 20.0, 40.0, 70.0)), (0.5, (6.0, 10.0, 20.0))) for r in regs],
    "item-knn-implicit": [{**p, "alpha": 0.5, "neighbourhood": "history"} for p in _CLASSIC_KNN]
    + [{"k": k, "similarity": "cosine", "weighting": "none", "alpha": a, "neighbourhood": n}
       for n in ("history", "candidate") for a in (0.2, 0.3, 0.4, 0.5)
       for k in (50, 100, 200, 400)],
    "user-knn-implicit": _CLASSIC_KNN,
}
RATING_GRID = [{"similarity": s, "prediction": p, "shrinkage": 100.0 if s == "pearson-baseline"
                else 0.0} for s in ("pearson-baseline", "pearson", "msd", "cosine")
               for p in ("baseline-centred", "mean-centred")] + [
    {"k": k, "shrinkage": s, "min_support": m}
    for k in (20, 40, 80) for s in (0.0, 25.0, 50.0, 100.0, 200.0) for m in (1, 3)]


def validate(args: argparse.Namespace) -> None:
    from recforge.data.splits import leave_last_out, random_split

    datasets = {"ml-100k": (load_ml100k(DATA_DIR), load_ml100k_fold("u1", DATA_DIR)[0]),
                "synthetic": (generate(feedback="implicit"), generate(seed=0))}
    rows: list[dict[str, Any]] = []
    for label, (full, rated) in datasets.items():
        # validation folds from the training part only: each user's last training
        # interaction (v1) and, from what precedes it, the one before (v2)
        v1 = leave_last_out(leave_last_out(full, ties="item-id").train, ties="item-id")
        v2 = leave_last_out(v1.train, ties="item-id")
        evaluators = [Evaluator(fold.train, fold.test, metrics=["hr@10"],
                                protocol="sampled-99", seed=seed)
                      for fold in (v1, v2) for seed in (0, 1, 2)]
        for name, grid in TOP_N_GRID.items():
            for params in grid:
                hrs = []
                for fold in (v1, v2):
                    model = create_model(name, **params).fit(fold.train)
                    hrs += [ev.evaluate(model).metrics["HR@10"] for ev in evaluators
                            if ev.train is fold.train]
                rows.append({"data": label, "model": name, "params": params,
                             "sampled-99 HR@10": float(np.mean(hrs)), "per_fold_seed": hrs})
                print(rows[-1], flush=True)
        fit_part, valid = random_split(rated, test_fraction=0.2, seed=0)
        for name in RATING_MODELS:
            for params in RATING_GRID:
                model = create_model(name, **params).fit(fit_part)
                rows.append({"data": label, "model": name, "params": params,
                             "RMSE": rmse(model, valid)})
                print(rows[-1], flush=True)
    write("validation", {"rule": "per model, the setting with the best mean over the two "
                                 "datasets of sampled-99 HR@10 (mean over 2 leave-last-out "
                                 "validation folds x negatives seeds 0-2; or 1/RMSE) relative "
                                 "to that dataset's best", "rows": rows, "chosen": choose(rows)})


def choose(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Best mean relative score over the datasets, per model."""
    chosen: dict[str, dict[str, Any]] = {}
    for name in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == name]
        score = {}
        for label in {r["data"] for r in mine}:
            part = [r for r in mine if r["data"] == label]
            values = [r["sampled-99 HR@10"] if "RMSE" not in r else 1.0 / r["RMSE"]
                      for r in part]
            best = max(values)
            for r, v in zip(part, values):
                key = json.dumps(r["params"], sort_keys=True)
                score.setdefault(key, []).append(v / best)
        key, rel = max(score.items(), key=lambda kv: np.mean(kv[1]))
        chosen[name] = {"params": json.loads(key), "mean_relative": float(np.mean(rel))}
    return chosen


# ---------------------------------------------------------------------- quality
def quality(args: argparse.Namespace) -> None:
    from recforge.data.splits import leave_last_out, random_split

    full = load_ml100k(DATA_DIR)
    loo = leave_last_out(full, ties="item-id")
    rand = random_split(full, test_fraction=0.2, seed=0)
    figures: dict[str, Any] = {}
    for name in TOP_N_MODELS:
        fit_s, model = timed(partial(fit, name, {}, loo.train))
        sampled = Evaluator(loo.train, loo.test, metrics=["hr@10", "ndcg@10"],
                            protocol="sampled-99", seed=0).evaluate(model).metrics
        ranked = Evaluator(loo.train, loo.test, metrics=["hr@10", "ndcg@10"],
                           protocol="full").evaluate(model).metrics
        model = create_model(name).fit(rand.train)
        random_metrics = Evaluator(rand.train, rand.test, protocol="full", metrics=[
            "precision@10", "recall@10", "map@10", "ndcg@10"]).evaluate(model).metrics
        figures[name] = {"leave_last_out_sampled_99": sampled, "leave_last_out_full": ranked,
                         "random_80_20_full": random_metrics, "fit_seconds": fit_s}
        print(name, figures[name], flush=True)
    figures["rating_u1"] = rating_u1()
    write("quality", {"dataset": "ml-100k", "seed": 0, "figures": figures})


def rating_u1() -> dict[str, Any]:
    train, test = load_ml100k_fold("u1", DATA_DIR)
    out: dict[str, Any] = {}
    for name in RATING_MODELS:
        for prediction in ("baseline-centred", "mean-centred"):
            fit_s, model = timed(partial(fit, name, {"prediction": prediction}, train))
            pred_s, value = timed(partial(rmse, model, test))
            out[f"recforge {name} {prediction}"] = {"rmse": value, "fit_s": fit_s,
                                                    "predict_s": pred_s}
            print(out, flush=True)
    out.update(surprise_u1(train, test))
    return out


def surprise_u1(train: Interactions, test: Interactions) -> dict[str, Any]:
    try:
        import surprise
    except ImportError:
        return {"surprise": "not installed (pip install -e '.[bench]')"}
    frame = train.to_pandas(external_ids=False)[["user", "item", "rating"]]
    trainset = surprise.Dataset.load_from_df(
        frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()
    out = {}
    for user_based in (False, True):
        for cls in (surprise.KNNBaseline, surprise.KNNWithMeans):
            algo = cls(k=40, sim_options={"name": "pearson_baseline", "user_based": user_based},
                       verbose=False)
            fit_s, _ = timed(partial(algo.fit, trainset))
            pred_s, est = timed(partial(surprise_predict, algo, test))
            key = f"surprise {cls.__name__} {'user' if user_based else 'item'} pearson_baseline"
            out[key] = {"rmse": float(np.sqrt(np.mean((est - test.ratings) ** 2))),
                        "fit_s": fit_s, "predict_s": pred_s}
            print(key, out[key], flush=True)
    return out


# ---------------------------------------------------------------------- speed
def median_times(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(timed(fn)[0] for _ in range(repeat))


def implicit_reference(kind: str, k: int) -> Callable[[sp.csr_matrix], Any] | None:
    try:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
    except ImportError:
        return None
    cls = CosineRecommender if kind == "cosine" else BM25Recommender

    def fit(user_items: sp.csr_matrix) -> Any:
        return cls(K=k).fit(user_items, show_progress=False)

    return fit


def numpy_ease(binary: sp.csr_matrix, reg: float) -> np.ndarray:
    """EASE as in the paper's listing: dense Gram, ``np.linalg.inv``, divide by the diagonal."""
    gram = (binary.T @ binary).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += reg
    inverse = np.linalg.inv(gram)
    weights = inverse / (-np.diag(inverse))
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def side_by_side(label: str, ours: Callable[[], Any], reference: Callable[[], Any] | None,
                 repeat: int) -> dict[str, Any]:
    ours()  # warm-up: numba compilation and caches
    if reference is not None:
        reference()
    row: dict[str, Any] = {"recforge_s": median_times(ours, repeat)}
    if reference is not None:
        row["reference_s"] = median_times(reference, repeat)
        row["ratio_recforge_over_reference"] = row["recforge_s"] / row["reference_s"]
    print(label, row, flush=True)
    return row


def speed_ml100k(repeat: int) -> dict[str, Any]:
    full = load_ml100k(DATA_DIR)
    train, _ = load_ml100k_fold("u1", DATA_DIR)
    x = full.binary_csr
    out: dict[str, Any] = {"interactions": len(full)}
    for kind, params in (("cosine", {"similarity": "cosine", "weighting": "none"}),
                         ("bm25", {"similarity": "dot", "weighting": "bm25"})):
        ref = implicit_reference(kind, 100)
        out[f"item-knn-implicit {kind} k=100 vs implicit"] = side_by_side(
            kind, partial(fit, "item-knn-implicit", {"k": 100, **params}, full),
            None if ref is None else partial(ref, x), repeat)
    out["ease reg=100 vs numpy inv"] = side_by_side(
        "ease", lambda: create_model("ease", reg=100.0).fit(full),
        lambda: numpy_ease(x, 100.0), repeat)
    out["user-knn-implicit fit"] = side_by_side(
        "user-knn-implicit", lambda: create_model("user-knn-implicit").fit(full), None, repeat)
    for name in RATING_MODELS:
        out[f"{name} fit (u1)"] = side_by_side(
            name, partial(fit, name, {}, train), surprise_fit(train, name), repeat)
    return out


def surprise_fit(train: Interactions, name: str) -> Callable[[], Any] | None:
    try:
        import surprise
    except ImportError:
        return None
    frame = train.to_pandas(external_ids=False)[["user", "item", "rating"]]
    trainset = surprise.Dataset.load_from_df(
        frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()
    options = {"name": "pearson_baseline", "user_based": name == "user-knn"}
    return lambda: surprise.KNNBaseline(k=40, sim_options=options, verbose=False).fit(trainset)


def speed_synthetic(args: argparse.Namespace) -> dict[str, Any]:
    if args.data:  # a Parquet file from recforge.data.synthetic.write_parquet
        gen_s, data = timed(partial(Interactions.from_parquet, args.data))
    else:
        gen_s, data = timed(partial(generate, n_users=args.users, n_items=args.items,
                                    n_interactions=args.interactions, seed=0))
    x = data.binary_csr
    out: dict[str, Any] = {"users": data.n_users, "items": data.n_items,
                           "interactions": len(data), "generate_s": gen_s,
                           "sum_user_degree_squared": float((np.diff(x.indptr) ** 2.0).sum())}
    for kind, params in (("cosine", {"similarity": "cosine", "weighting": "none"}),
                         ("bm25", {"similarity": "dot", "weighting": "bm25"})):
        ref = implicit_reference(kind, 100)
        out[f"item-knn-implicit {kind} k=100 vs implicit"] = side_by_side(
            kind, partial(fit, "item-knn-implicit", {"k": 100, **params}, data),
            None if ref is None else partial(ref, x), 1)
    fit_s, model = timed(lambda: create_model("item-knn", max_neighbors=100).fit(data))
    pred_s, _ = timed(lambda: model.predict(data.users[:1_000_000], data.items[:1_000_000]))
    out["item-knn (ratings) max_neighbors=100"] = {"fit_s": fit_s, "predict_1M_s": pred_s}
    print(out, flush=True)
    popular = np.argsort(-data.item_counts, kind="stable")
    for n_items in args.ease_items:
        keep = np.isin(data.items, popular[:n_items])
        subset = data.subset(keep).compact()
        fit_s, _ = timed(partial(fit, "ease", {"reg": 100.0, "dtype": "float32"}, subset))
        out[f"ease float32 top {n_items} items"] = {"fit_s": fit_s,
                                                    "interactions_kept": len(subset)}
        print(out, flush=True)
    return out


def speed(args: argparse.Namespace) -> None:
    write("speed", {"ml-100k": speed_ml100k(args.repeat)})


def speed_large(args: argparse.Namespace) -> None:
    write("speed_synthetic", {"synthetic": speed_synthetic(args)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["validate", "quality", "speed", "speed-synthetic"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--ease-items", type=int, nargs="*", default=[5000, 10000])
    parser.add_argument("--data", help="synthetic Parquet (synthetic.write_parquet) to reuse")
    args = parser.parse_args()
    {"validate": validate, "quality": quality, "speed": speed,
     "speed-synthetic": speed_large}[args.part](args)


if __name__ == "__main__":
    main()
