"""Next-item evaluation on ML-100K: recent popularity (`recent-popular`) beside most-popular.

Split: leave-last-out (each user's last rating by time, `recforge.data.splits.leave_last_out`
with its default tie rule) into train and test; every test event is queried by the user's
history up to it (`recforge.evaluation.protocols.NextItem`), so a model that reads time sees
the request's timestamp and no training event after it. ``window_days`` of recent-popular is
chosen from `WINDOWS` by next-item NDCG@10 on a validation split (the last training event of
each user, fitted on the rest), then the models are fitted on the whole training part and
evaluated once on the test events, with full ranking (``next-item``) and against 99 sampled
negatives (``next-item-sampled-99``, seed 0, pessimistic ties).

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_next_item.py \
        --json benchmarks/results/bench_next_item_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from recforge.data.interactions import Interactions
from recforge.data.movielens import load_ml100k
from recforge.data.splits import leave_last_out
from recforge.evaluation import Evaluator
from recforge.experiments.rundir import write_json
from recforge.models import create_model

WINDOWS = (1, 3, 7, 14, 30, 60, 90, 180)
METRICS = ("ndcg@10", "hr@10", "mrr", "auc")
PROTOCOLS = ("next-item", "next-item-sampled-99")


def evaluate(train: Interactions, test: Interactions, name: str, protocol: str,
             **params: float) -> dict[str, float]:
    """``name`` fitted on ``train`` and evaluated on ``test`` by ``protocol``."""
    model = create_model(name, **params).fit(train)
    result = Evaluator(train, test, METRICS, protocol=protocol).evaluate(model)
    return {key: round(value, 4) for key, value in result.metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    split = leave_last_out(load_ml100k(args.data_dir))
    inner = leave_last_out(split.train)
    grid = {w: evaluate(inner.train, inner.test, "recent-popular", "next-item", window_days=w)
            for w in WINDOWS}
    best = max(WINDOWS, key=lambda w: grid[w]["NDCG@10"])
    models = {"most-popular": {}, "recent-popular": {"window_days": best}}
    record = {
        "benchmark": "bench_next_item", "dataset": "ml-100k",
        "split": {"method": "leave-last-out", **split.params,
                  "train": len(split.train), "test": len(split.test)},
        "validation": {"split": "leave-last-out of the training part",
                       "window_days_ndcg@10": {str(w): grid[w]["NDCG@10"] for w in WINDOWS},
                       "chosen_window_days": best},
        "test": {protocol: {name: evaluate(split.train, split.test, name, protocol, **params)
                            for name, params in models.items()}
                 for protocol in PROTOCOLS},
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(record, indent=2))
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
