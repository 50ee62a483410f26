"""Scale benchmark (issue 16 b): data-parallel training under torchrun, 1 against N gloo
processes on the CPU (NCCL on GPUs), same data, same seed: throughput of each and the
held-out quality.

Data: the ``zipf`` pairs of `benchmarks/scale_ials.py` (``--interactions`` target, 100k
users x 200k items by default), cached in ``--cache`` so every rank (and every run) reads the
same arrays; each user's last pair is held out. The epoch is subsampled to ``--sample``
training pairs (seeded), so a run takes minutes on a shared 2-core machine. Quality: NDCG@10
and HR@10 over the full catalogue for ``--eval-users`` held-out users (seeded sample).

    python -m torch.distributed.run --nproc-per-node 2 --nnodes 1 --rdzv-backend c10d \\
        --rdzv-endpoint localhost:0 benchmarks/scale_ddp.py --json out.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from scale_ials import split_last, zipf_pairs


def cached_pairs(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The zipf pairs, from ``--cache`` when written before (rank 0 writes it)."""
    from recforge.nn import distributed

    path = args.cache
    if distributed.is_main() and not path.exists():
        users, items = zipf_pairs(int(args.users), int(args.items), int(args.interactions), 0)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, users=users, items=items)
        tmp.rename(path)
    distributed.barrier()
    with np.load(path, allow_pickle=False) as arrays:
        return arrays["users"], arrays["items"]


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from recforge.evaluation import Evaluator
    from recforge.models import create_model
    from recforge.nn import distributed

    shard = distributed.init_from_env("cpu")
    users, items = cached_pairs(args)
    train, test = split_last(users, items, int(args.users), int(args.items))
    rng = np.random.default_rng(1)
    sample = train.subset(np.sort(rng.choice(len(train), int(args.sample), replace=False)))
    params = {"epochs": args.epochs, "threads": args.threads, "seed": 0,
              **json.loads(args.params)}
    model = create_model(args.model, **params)
    start = time.perf_counter()
    model.fit(sample)
    seconds = time.perf_counter() - start
    eval_users = rng.choice(np.unique(test.users), int(args.eval_users), replace=False)
    held = test.subset(np.flatnonzero(np.isin(test.users, eval_users)))
    metrics = Evaluator(sample, held, ["ndcg@10", "hr@10"]).evaluate(model).metrics
    world = 1 if shard is None else shard.world
    record = {"model": args.model, "processes": world, "interactions": len(users),
              "train_sample": len(sample), "epochs": args.epochs, "params": params,
              "fit_seconds": round(seconds, 1),
              "samples_per_second": [h["samples_per_second"] for h in model.history_],
              "loss": [round(h["loss"], 5) for h in model.history_],
              **{k: round(v, 4) for k, v in metrics.items()}}
    distributed.shutdown()
    return record if shard is None or shard.is_main else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="two-tower")
    parser.add_argument("--params", default="{}", help="JSON model parameters")
    parser.add_argument("--interactions", type=float, default=1e7)
    parser.add_argument("--users", type=float, default=1e5)
    parser.add_argument("--items", type=float, default=2e5)
    parser.add_argument("--sample", type=float, default=5e5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-users", type=float, default=5000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/recforge_scale_ddp.npz"))
    parser.add_argument("--json", type=Path, default=None, help="append the record here")
    args = parser.parse_args()
    record = run(args)
    if record is not None:
        print(json.dumps(record), flush=True)
        if args.json is not None:
            with args.json.open("a") as out:
                out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
