"""The retrieve -> rank -> re-rank pipeline on ML-100K leave-last-out, full ranking.

Split: leave-last-out (the default tie rule, file order) of ML-100K; the validation split is
leave-last-out again inside the training part, and every choice (ranker training, the MMR
``lambda_`` and DPP ``theta`` kept) is made there; the test part is scored once per setting.

Compared, with the same two-tower retriever (defaults, seed 0):
* the two-tower alone;
* two-tower top ``--candidates`` -> a click model (``--ranker``, trained on the training
  interactions with sampled negatives, `ClickModel`) ;
* the same pipeline with MMR or DPP on the ranked top 50 (genre similarity), over a grid of
  ``lambda_``/``theta``: for each re-ranker, the most diverse setting (intra-list diversity
  on genres, ``diversity@10``) whose validation NDCG@10 is within 2% of the pipeline without re-ranking is
  kept, and its test NDCG@10, HR@10, ILD@10 and genre coverage@10 are reported;
* latency: one request at a time through `Retriever.recommend` on one thread (1,000 users,
  after 50 warm-up requests), p50/p99 in milliseconds, with the mean seconds per stage.

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_pipeline.py \
        --json benchmarks/results/bench_pipeline_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from recforge.data.loading import load_dataset
from recforge.data.splits import leave_last_out
from recforge.evaluation import Evaluator
from recforge.experiments.rundir import write_json
from recforge.models.base import Recommender
from recforge.rerank.base import item_genres
from recforge.retrieval import Retriever
from recforge.retrieval.pipeline import Pipeline

METRICS = ("ndcg@10", "hr@10", "diversity@10", "genre-coverage@10")
MMR_GRID = (0.9, 0.8, 0.7, 0.6, 0.5)
DPP_GRID = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
DEPTH = 50


def evaluate(model: Recommender, train: Any, test: Any) -> dict[str, float]:
    genres = item_genres(train)
    return Evaluator(train, test, list(METRICS), item_features=genres).evaluate(model).metrics


def pipeline(args: argparse.Namespace, threads: int) -> Pipeline:
    return Pipeline(retriever="two-tower", retriever_params={"threads": threads},
                    candidates=args.candidates, ranker=args.ranker,
                    ranker_params={"threads": threads, **json.loads(args.ranker_params)},
                    rerank_depth=DEPTH, similarity="genres", seed=0)


def sweep(model: Pipeline, train: Any, test: Any) -> dict[str, Any]:
    """Every re-ranking setting of an already fitted pipeline (members unchanged)."""
    out: dict[str, Any] = {"none": evaluate(model.set_params(reranker=None), train, test)}
    for name, key, grid in (("mmr", "lambda_", MMR_GRID), ("dpp", "theta", DPP_GRID)):
        for value in grid:
            model.set_params(reranker=name, reranker_params={key: value})
            out[f"{name}:{value}"] = evaluate(model, train, test)
    model.set_params(reranker=None, reranker_params=None)
    return out


def matched(valid: dict[str, Any], name: str) -> str:
    """The most diverse ``name`` setting within 2% of the unre-ranked validation NDCG@10."""
    floor = 0.98 * valid["none"]["NDCG@10"]
    ok = [k for k in valid if k.startswith(name + ":") and valid[k]["NDCG@10"] >= floor]
    return max(ok, key=lambda k: valid[k]["Diversity@10"]) if ok else "none"


def latency(model: Recommender, data: Any, n: int = 1000) -> dict[str, Any]:
    retriever = Retriever.from_data(model, data)
    users = data.user_map.ids[np.random.default_rng(0).choice(data.n_users, n + 50)]
    times, stages = [], []
    for k, user in enumerate(users):
        start = time.perf_counter()
        retriever.recommend(user, k=10)
        if k >= 50:
            times.append(time.perf_counter() - start)
            stages.append(dict(getattr(model, "last_timings", {})))
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "stage_mean_ms": {s: float(np.mean([t[s] for t in stages]) * 1000)
                              for s in (stages[0] if stages else {})}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--ranker", default="deepfm")
    parser.add_argument("--ranker-params", default="{}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    data = load_dataset("ml-100k")
    train, test = leave_last_out(data)
    inner_train, valid = leave_last_out(train)
    record: dict[str, Any] = {"benchmark": "bench_pipeline", "dataset": "ml-100k",
                              "split": "leave-last-out (file order), full ranking",
                              "candidates": args.candidates, "ranker": args.ranker,
                              "ranker_params": json.loads(args.ranker_params),
                              "rerank_depth": DEPTH}
    start = time.perf_counter()
    model = pipeline(args, args.threads).fit(inner_train)
    record["valid"] = sweep(model, inner_train, valid)
    record["valid"]["two-tower alone"] = evaluate(model._models[0], inner_train, valid)
    chosen = {name: matched(record["valid"], name) for name in ("mmr", "dpp")}
    record["chosen_on_validation"] = chosen
    print(json.dumps({"valid": record["valid"], "chosen": chosen}, indent=1), flush=True)

    model = pipeline(args, args.threads).fit(train)
    alone = model._models[0]
    test_rows = {"two-tower alone": evaluate(alone, train, test),
                 "pipeline": evaluate(model.set_params(reranker=None), train, test)}
    for name, setting in chosen.items():
        if setting != "none":
            key = "lambda_" if name == "mmr" else "theta"
            value = float(setting.split(":")[1])
            model.set_params(reranker=name, reranker_params={key: value})
            test_rows[f"pipeline + {setting}"] = evaluate(model, train, test)
    record["test"] = test_rows
    model.set_params(reranker="dpp" if chosen["dpp"] != "none" else None,
                     reranker_params=None if chosen["dpp"] == "none" else
                     {"theta": float(chosen["dpp"].split(":")[1])})
    import torch

    torch.set_num_threads(1)
    for member in model._models:
        if "threads" in member.get_params():
            member.set_params(threads=1)
    record["latency_one_thread"] = latency(model, data)
    record["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps({"test": test_rows, "latency": record["latency_one_thread"]}, indent=1))
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
