"""LinUCB speed: rounds per second of select + update with 20-dimensional contexts and 1,000
arms on one thread, for several batch sizes (a batch of b rounds is selected with one state,
then its feedback applied by batched Sherman-Morrison waves; b = 1 is the fully sequential
bandit). Wall-clock and CPU-time rates are both reported: on a shared machine the wall clock
counts other jobs' time. A "round" is one context, a score for every one of the 1,000 arms, one arm chosen
with its propensity, and one rank-one update of the chosen arm.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bandits_speed.py --json benchmarks/results/bandits_speed.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS

import argparse
import json
import time

import numpy as np


def measure(policy_cls, dim: int, arms: int, rounds: int, batch: int, seed: int = 0) -> dict:
    """Rounds per second of ``rounds`` rounds in batches of ``batch`` (after one warm-up
    batch), with linear Bernoulli rewards."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(arms, dim)) / np.sqrt(dim)
    # LinTS is timed without its Monte Carlo propensity estimate (200 extra draws per
    # selection by default), as in the recorded figures
    extra = {"propensity_samples": 0} if "propensity_samples" in policy_cls.rules() else {}
    policy = policy_cls(n_arms=arms, dim=dim, seed=seed, **extra)
    contexts = rng.normal(size=(rounds + batch, dim))
    noise = rng.random(rounds + batch)

    def step(lo: int) -> None:
        x = contexts[lo:lo + batch]
        chosen = policy.select(x).actions[:, 0]
        p = 1 / (1 + np.exp(-np.einsum("nd,nd->n", x, theta[chosen])))
        policy.update(x, chosen, (noise[lo:lo + batch] < p).astype(float))

    step(rounds)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, rounds, batch):
        step(lo)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"policy": policy_cls.name, "batch": batch, "rounds": rounds, "wall_s": wall,
            "cpu_s": cpu, "rounds_per_s": rounds / wall, "rounds_per_cpu_s": rounds / cpu}


def main() -> None:
    from recforge.bandits.linear import LinTS, LinUCB

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--arms", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--batches", default="1,10,100,1000")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = []
    for cls in (LinUCB, LinTS):
        for batch in (int(b) for b in args.batches.split(",")):
            rounds = min(args.rounds, 2000) if batch == 1 else args.rounds
            row = measure(cls, args.dim, args.arms, rounds, batch)
            results.append(row)
            print(f"{row['policy']:7s} batch {batch:5d}: {row['rounds_per_s']:9,.0f} rounds/s "
                  f"wall, {row['rounds_per_cpu_s']:9,.0f} per CPU second (wall "
                  f"{row['wall_s']:.2f} s, cpu {row['cpu_s']:.2f} s)", flush=True)
    if args.json:
        record = {"dim": args.dim, "arms": args.arms, "threads": 1,
                  "load_average": os.getloadavg(), "results": results}
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)


if __name__ == "__main__":
    main()
