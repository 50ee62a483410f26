"""Timing of bulk negative sampling on synthetic data (best of ``--repeat`` runs).

Prints wall time and CPU time (summed over threads; steadier on a busy machine).

Draws about a million negatives per case: one per row for ``--negatives`` users (uniform and
popularity-weighted), 99 distinct per row (the NCF evaluation protocol), and one per training
interaction (a BPR-style epoch of triples).

    .venv/bin/python benchmarks/negative_sampling.py
    .venv/bin/python benchmarks/negative_sampling.py --users 100000 --items 50000 \
        --interactions 10000000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from recforge.data.sampling import NegativeSampler
from recforge.data.synthetic import generate


def best_time(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of the fastest of ``repeat`` runs of ``func``."""
    times = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        func()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--negatives", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data = generate(n_users=args.users, n_items=args.items, n_interactions=args.interactions,
                    feedback="implicit")
    print(f"data: {data}")
    rng = np.random.default_rng(0)
    users = rng.integers(0, data.n_users, args.negatives)
    ncf_users = users[: args.negatives // 99]
    uniform = NegativeSampler(data.binary_csr)
    popular = NegativeSampler(data.binary_csr, method="popularity")
    cases = {
        "build sampler (uniform)": lambda: NegativeSampler(data.binary_csr),
        f"uniform, {len(users):,} x 1": lambda: uniform.sample(users, 1, rng),
        f"popularity, {len(users):,} x 1": lambda: popular.sample(users, 1, rng),
        f"uniform distinct, {len(ncf_users):,} x 99": lambda: uniform.sample(
            ncf_users, 99, rng, distinct=True),
        f"popularity distinct, {len(ncf_users):,} x 99": lambda: popular.sample(
            ncf_users, 99, rng, distinct=True),
        f"triples, {len(data):,} positives": lambda: uniform.sample_triples(rng),
    }
    print(f"{'case':<40} {'wall ms':>9} {'cpu ms':>9}")
    for name, func in cases.items():
        wall, cpu = best_time(func, args.repeat)
        print(f"{name:<40} {wall * 1000:9.1f} {cpu * 1000:9.1f}")


if __name__ == "__main__":
    main()
