"""Throughput of full-ranking evaluation: top-10 NDCG/HR/Recall for every user.

The data are synthetic (popularity-skewed random interactions, one random held-out interaction
per user) and the model is a dot product of *random* factors: this measures the evaluator
(scoring matmul, seen-item masking, top-k, hit lookup, metrics), not a model's quality.

    .venv/bin/python benchmarks/evaluator_throughput.py --users 100000 --items 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, ClassVar

import numba
import numpy as np

from recforge.data.interactions import IdMap, Interactions
from recforge.evaluation import Evaluator
from recforge.models.base import Recommender
from recforge.params import SEED, WIDTH, Rule

METRICS = ("ndcg@10", "hr@10", "recall@10")


class RandomFactors(Recommender):
    """Scores ``U[u] . V[i]`` with random Gaussian factors (a throughput stand-in)."""

    param_rules: ClassVar[dict[str, Rule]] = {"factors": WIDTH, "seed": SEED}

    def __init__(self, factors: int = 64, seed: int = 0):
        self.factors = factors
        self.seed = seed

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        rng = np.random.default_rng(self.seed)
        scale = np.float32(1.0 / np.sqrt(self.factors))
        self.user_factors_ = rng.standard_normal((self.n_users_, self.factors), np.float32) * scale
        self.item_factors_ = rng.standard_normal((self.n_items_, self.factors), np.float32) * scale

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T

    def item_vectors(self) -> np.ndarray:
        return self.item_factors_


def synthetic_split(n_users: int, n_items: int, n_interactions: int,
                    seed: int) -> tuple[Interactions, Interactions]:
    """Zipf-like item popularity, unique (user, item) pairs, one held-out pair per user."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(n_items) + 10.0) ** 0.8
    users = rng.integers(0, n_users, n_interactions)
    items = rng.permutation(n_items)[rng.choice(n_items, n_interactions, p=weights / weights.sum())]
    keys = np.unique(users.astype(np.int64) * n_items + items)
    users, items = keys // n_items, keys % n_items
    shuffled = rng.permutation(len(keys))
    _, first = np.unique(users[shuffled], return_index=True)
    held_out = np.zeros(len(keys), dtype=bool)
    held_out[shuffled[first]] = True
    maps = {"user_map": IdMap(np.arange(n_users)), "item_map": IdMap(np.arange(n_items))}
    train = Interactions(users[~held_out], items[~held_out], **maps)
    test = Interactions(users[held_out], items[held_out], **maps)
    return train, test


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    train, test = synthetic_split(args.users, args.items, args.interactions, args.seed)
    data_seconds = time.perf_counter() - start
    model = RandomFactors(args.factors, args.seed).fit(train)
    evaluator = Evaluator(train, test, METRICS, protocol="full", batch_size=args.batch_size)
    warm = Evaluator(train, test.subset(test.users < 64), METRICS).evaluate(model)  # JIT warm-up
    cpu_start = time.process_time()
    result = evaluator.evaluate(model)
    cpu_seconds = time.process_time() - cpu_start
    n = len(result.users)
    return {
        "users_evaluated": n,
        "items": args.items,
        "train_interactions": len(train),
        "factors": args.factors,
        "batch_size": evaluator.batch_size,
        "eval_seconds": round(result.eval_seconds, 3),
        "users_per_second": round(n / result.eval_seconds, 1),
        "eval_cpu_seconds": round(cpu_seconds, 3),  # all threads; wall time on a busy machine
        "load_average_1min": round(os.getloadavg()[0], 2),  # is the machine shared right now?
        "warmup_seconds": round(warm.eval_seconds, 3),
        "data_seconds": round(data_seconds, 3),
        "metrics": result.metrics,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "numba_threads": numba.get_num_threads(),
            "numpy": np.__version__,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="users per evaluation batch (default: automatic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the record here")
    args = parser.parse_args(argv)
    text = json.dumps(run(args), indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
