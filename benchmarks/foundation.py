"""The foundation's reference figures on ML-100K (issue 2's bars), measured in one run.

* the ML-100K counts (users, items, ratings, genres, titles, demographics);
* MostPopular HR@10, leave-last-out, held-out item vs 99 sampled negatives, under both tie
  rules (the held-out item loses / wins score ties);
* BaselineOnly RMSE on the canonical u1 fold.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/foundation.py --json PATH
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from recforge.data.loading import load_dataset
from recforge.data.movielens import load_ml100k_fold
from recforge.data.splits import leave_last_out
from recforge.evaluation import Evaluator
from recforge.models import BaselineOnly, MostPopular


def dataset_counts() -> dict[str, Any]:
    data = load_dataset("ml-100k")
    labels, _ = data.item_features.multihot["genres"]
    return {
        "users": data.n_users, "items": data.n_items, "ratings": len(data),
        "genres": len(labels), "titled_items": int(sum(t is not None
                                                       for t in data.item_features.text["title"])),
        "user_features": sorted(data.user_features.column_names()["categorical"]
                                + data.user_features.column_names()["numeric"]),
    }


def most_popular_sampled(seeds: list[int]) -> dict[str, Any]:
    split = leave_last_out(load_dataset("ml-100k"), ties="item-id")
    model = MostPopular().fit(split.train)
    out: dict[str, Any] = {}
    for ties in ("pessimistic", "optimistic"):
        values = [Evaluator(split.train, split.test, ["hr@10"], protocol="sampled-99", seed=s,
                            ties=ties).evaluate(model).metrics["HR@10"] for s in seeds]
        out[ties] = {"seeds": seeds, "HR@10": values}
    return out


def baseline_only_u1() -> dict[str, Any]:
    train, test = load_ml100k_fold("u1")
    start = time.perf_counter()
    model = BaselineOnly().fit(train)
    fit = time.perf_counter() - start
    result = Evaluator(train, test, ["rmse", "mae"]).evaluate(model)
    return {**result.metrics, "fit_seconds": round(fit, 4)}


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    record = {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "ml100k": dataset_counts(),
        "most_popular_sampled_99": most_popular_sampled(args.seeds),
        "baseline_only_u1": baseline_only_u1(),
    }
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
