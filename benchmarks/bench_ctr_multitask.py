"""Multi-task click models on ML-100K with two labels: ``like`` (rating >= 4) and ``five``
(rating == 5). Per-task test ROC-AUC of MMoE, PLE and a shared-bottom model against two
single-task DeepFMs (one per label), mean over seeds.

Same split and features as `bench_ctr.py` (time order 80/10/10, ids, demographics, zip
prefix, genres, year bin, hour, weekday, previous 20 items); every model stops early on the
validation part (multi-task models on the mean of their tasks' validation AUCs).

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_ctr_multitask.py \
        --seeds 0,1,2 --json benchmarks/results/bench_ctr_multitask_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from bench_ctr import fields, split

from recforge.data.events import Events
from recforge.evaluation.classification import roc_auc
from recforge.experiments.rundir import write_json
from recforge.models.registry import create_model

TASKS = ("like", "five")
#: (row name, model, its tasks)
SETUPS = [("deepfm (like only)", "deepfm", ("like",)), ("deepfm (five only)", "deepfm", ("five",)),
          ("shared-bottom", "shared-bottom", TASKS), ("mmoe", "mmoe", TASKS),
          ("ple", "ple", TASKS)]


def with_five(part: Events) -> Events:
    part.labels["five"] = (part.labels["rating"] == 5).astype(np.float32)
    return part


def run(model_name: str, tasks: tuple[str, ...], seed: int, parts: tuple[Events, ...],
        threads: int) -> dict[str, float]:
    train, valid, test = parts
    model = create_model(model_name, seed=seed, threads=threads, fields=fields(),
                         tasks=tasks).fit(train, valid)
    probs = model.predict_proba(test).reshape(len(test), -1)
    return {task: roc_auc(test.label(task), probs[:, k]) for k, task in enumerate(tasks)} | {
        "best_epoch": model.best_epoch_}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    parts = tuple(with_five(p) for p in split(args.data_dir))
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: list[dict[str, Any]] = []
    for row, name, tasks in SETUPS:
        for seed in seeds:
            runs.append({"row": row, "seed": seed, **run(name, tasks, seed, parts, args.threads)})
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for row, _, tasks in SETUPS:
        mine = [r for r in runs if r["row"] == row]
        summary[row] = {task: {"mean": float(np.mean([r[task] for r in mine])),
                               "std": float(np.std([r[task] for r in mine]))} for task in tasks}
    record = {"benchmark": "bench_ctr_multitask", "dataset": "ml-100k", "tasks": {
        "like": "rating >= 4", "five": "rating == 5"},
        "test_share": {t: float(parts[2].label(t).mean()) for t in TASKS},
        "seeds": seeds, "threads": args.threads, "summary": summary, "runs": runs}
    print(json.dumps(summary, indent=1))
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
