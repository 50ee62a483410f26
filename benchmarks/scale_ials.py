"""Scale benchmark (issue 16 a): iALS (64 factors, 15 iterations) and full-ranking top-10
evaluation of every user, on synthetic implicit data of growing size; time and peak memory
of each phase, against the need `recforge.memory.ials_need` states before fitting.

Data: ``--generator zipf`` (default; seconds even at 100M) draws each user's interactions
from a Zipf-like item popularity (exponent ``0.9``) tilted by a rank-16 latent affinity, with
heavy-tailed user activity; duplicates are dropped, so the realised count is a little under
the target. ``--generator synthetic`` uses `recforge.data.synthetic` (the realistic
generator; about 10 CPU-seconds per million interactions on this machine). The held-out set
is the last interaction of every user with at least two (leave-last-out); evaluation ranks
all items the user has not trained on (``protocol="full"``) in user batches, for every
held-out user or a seeded sample of ``--eval-users``; ``--iterations`` fewer than 15 time a
part of the fit (every allocation happens before the first iteration, so the peak is the
whole fit's).

One size per process, so the peak resident memory (``ru_maxrss``) is that size's::

    python benchmarks/scale_ials.py --interactions 1e6 --users 1e4 --items 2e5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np


def peak_rss() -> int:
    """The process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def zipf_pairs(n_users: int, n_items: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``n`` distinct (user, item) int32 pairs (module docstring), user-major."""
    rng = np.random.default_rng(seed)
    activity = rng.pareto(1.5, n_users) + 1.0
    counts = np.maximum(1, np.round(activity / activity.sum() * n)).astype(np.int64)
    counts = np.minimum(counts, n_items // 2)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    item_order = rng.permutation(n_items)
    taste_u = rng.standard_normal((n_users, 16), dtype=np.float32)
    taste_i = rng.standard_normal((n_items, 16), dtype=np.float32)
    users, items = [], []
    step = 50_000  # users per block: bounds the temporaries
    cdf = np.cumsum(popularity / popularity.sum())
    for lo in range(0, n_users, step):
        block = np.arange(lo, min(n_users, lo + step))
        total = int(counts[block].sum())
        owner = np.repeat(block, counts[block])
        # three proposals per slot, keep the one with the best latent affinity
        cand = item_order[np.searchsorted(cdf, rng.random((3, total)))]
        score = np.einsum("sf,ksf->ks", taste_u[owner], taste_i[cand])
        pick = cand[np.argmax(score, axis=0), np.arange(total)]
        key = np.unique(owner.astype(np.int64) * n_items + pick)
        users.append((key // n_items).astype(np.int32))
        items.append((key % n_items).astype(np.int32))
    return np.concatenate(users), np.concatenate(items)


def synthetic_pairs(n_users: int, n_items: int, n: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of `recforge.data.synthetic` (implicit), user-major in time order."""
    from recforge.data.synthetic import generate_chunks

    users, items = [], []
    for frame in generate_chunks(chunk_users=50_000, n_users=n_users, n_items=n_items,
                                 n_interactions=n, feedback="implicit", seed=seed):
        users.append(frame["user"].to_numpy(np.int32) - 1)
        items.append(frame["item"].to_numpy(np.int32) - 1)
    return np.concatenate(users), np.concatenate(items)


def split_last(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> tuple:
    """(train, test) `Interactions`: each user's last pair (of two or more) held out."""
    from recforge.data.interactions import IdMap, Interactions

    last = np.r_[users[1:] != users[:-1], True]
    first = np.r_[True, users[1:] != users[:-1]]
    test = last & ~first
    maps = {"user_map": IdMap(np.arange(1, n_users + 1)),
            "item_map": IdMap(np.arange(1, n_items + 1))}
    return (Interactions(users[~test], items[~test], **maps),
            Interactions(users[test], items[test], **maps))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recforge.evaluation import Evaluator
    from recforge.memory import ials_need
    from recforge.models import create_model

    n, n_users, n_items = int(args.interactions), int(args.users), int(args.items)
    record: dict[str, Any] = {"target_interactions": n, "users": n_users, "items": n_items,
                              "generator": args.generator, "factors": args.factors,
                              "iterations": args.iterations, "threads": args.threads}
    start = time.perf_counter()
    make = zipf_pairs if args.generator == "zipf" else synthetic_pairs
    users, items = make(n_users, n_items, n, args.seed)
    train, test = split_last(users, items, n_users, n_items)
    del users, items
    _ = train.binary_csr
    record |= {"interactions": len(train) + len(test), "train": len(train),
               "test_users": len(test), "data_seconds": round(time.perf_counter() - start, 1),
               "data_peak_gib": round(peak_rss() / 2**30, 2)}
    record["ials_need_gib"] = round(ials_need(n_users, n_items, train.binary_csr.nnz,
                                              args.factors).bytes / 2**30, 2)
    print(json.dumps(record), flush=True)
    model = create_model("ials", factors=args.factors, epochs=args.iterations,
                         threads=args.threads)
    start = time.perf_counter()
    model.fit(train)
    record |= {"fit_seconds": round(time.perf_counter() - start, 1),
               "fit_peak_gib": round(peak_rss() / 2**30, 2),
               "final_loss": model.history_[-1]["loss"]}
    print(json.dumps(record), flush=True)
    if not args.no_eval:
        if args.eval_users:  # a seeded sample of the held-out users
            chosen = np.random.default_rng(1).choice(len(test), int(args.eval_users),
                                                     replace=False)
            test = test.subset(np.sort(chosen))
        evaluator = Evaluator(train, test, ["ndcg@10", "hr@10"], batch_size=args.eval_batch)
        start = time.perf_counter()
        metrics = evaluator.evaluate(model).metrics
        record |= {"eval_seconds": round(time.perf_counter() - start, 1),
                   "eval_users": len(test), **{k: round(v, 4) for k, v in metrics.items()}}
    record["peak_gib"] = round(peak_rss() / 2**30, 2)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=float, required=True)
    parser.add_argument("--users", type=float, required=True)
    parser.add_argument("--items", type=float, default=200_000)
    parser.add_argument("--generator", choices=("zipf", "synthetic"), default="zipf")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--eval-batch", type=int, default=1024)
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--eval-users", type=float, default=None,
                        help="evaluate a seeded sample of this many held-out users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="append the record here")
    args = parser.parse_args()
    record = run(args)
    print(json.dumps(record), flush=True)
    if args.json is not None:
        with args.json.open("a") as out:
            out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
