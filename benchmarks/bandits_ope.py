"""Off-policy evaluation accuracy in the ML-100K bandit simulator (recforge.bandits).

Logs from a uniform and from an epsilon-greedy logging policy (n = 10,000 and 100,000
rounds), three target policies, every estimator of recforge.bandits.ope against the exact
ground truth (`Simulator.value`), each over ``--reps`` independent logs: mean relative error,
bias, the coverage of the 95% bootstrap interval, its mean width and the mean effective
sample size.

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bandits_ope.py \
        --json benchmarks/results/bandits_ope.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from recforge.bandits import ope
from recforge.bandits.simulator import Simulator
from recforge.data.loading import load_dataset


def policies(sim: Simulator, seed: int) -> tuple[dict, dict]:
    """The logging policies and the target policies, as (n_users, n_arms) probabilities."""
    rng = np.random.default_rng(seed)
    popularity = -np.arange(sim.n_arms, dtype=float)  # arm 0 is the most rated item
    logging = {"uniform": sim.uniform(),
               "epsilon-greedy": sim.epsilon_greedy(np.tile(popularity, (sim.n_users, 1)),
                                                    0.2)}
    noisy = sim.truth + rng.normal(0, 0.05, sim.truth.shape)
    logit = np.log(sim.truth / (1 - sim.truth))
    targets = {
        "personal-greedy": sim.epsilon_greedy(noisy, 0.0),
        "personal-softmax": sim.softmax(logit, 0.5),
        "best-arm-epsilon": sim.epsilon_greedy(np.tile(sim.truth.mean(0), (sim.n_users, 1)),
                                               0.1),
    }
    return logging, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--tau", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    sim = Simulator.from_interactions(load_dataset("ml-100k"), seed=args.seed)
    logging, targets = policies(sim, args.seed)
    truth = {name: sim.value(dist) for name, dist in targets.items()}
    print("ground truth:", {k: round(v, 4) for k, v in truth.items()}, flush=True)
    rows = []
    start = time.perf_counter()
    for log_name, log_dist in logging.items():
        estimators = ope.ESTIMATORS if log_name == "uniform" else tuple(
            e for e in ope.ESTIMATORS if e != "replay")
        for n in (int(s) for s in args.sizes.split(",")):
            found: dict = {}
            for rep in range(args.reps):
                rng = np.random.default_rng([args.seed, n, rep, len(log_name)])
                logged = sim.log(log_dist, n, rng)
                q = ope.cross_fit_rewards(logged, seed=rep)
                for t_name, t_dist in targets.items():
                    got = ope.evaluate(logged, t_dist[logged.users], estimators, q, tau=args.tau,
                                       n_bootstrap=args.bootstrap, seed=rep)
                    for e_name, est in got.items():
                        found.setdefault((t_name, e_name), []).append(est)
            for (t_name, e_name), ests in found.items():
                values = np.array([e.value for e in ests])
                row = {"logging": log_name, "n": n, "target": t_name, "estimator": e_name,
                       "truth": truth[t_name],
                       "mean_relative_error": float(np.mean(np.abs(values - truth[t_name]))
                                                    / truth[t_name]),
                       "bias": float(values.mean() - truth[t_name]),
                       "coverage": float(np.mean([e.covers(truth[t_name]) for e in ests])),
                       "mean_ci_width": float(np.mean([e.high - e.low for e in ests])),
                       "mean_ess": float(np.mean([e.ess for e in ests])), "reps": len(ests)}
                rows.append(row)
                print(f"{log_name:14s} n={n:6d} {t_name:17s} {e_name:9s} "
                      f"rel.err {row['mean_relative_error']:.4f} cover {row['coverage']:.2f} "
                      f"ess {row['mean_ess']:9.0f}", flush=True)
    if args.json:
        record = {"reps": args.reps, "bootstrap": args.bootstrap, "tau": args.tau,
                  "n_arms": sim.n_arms, "truth": truth, "seconds": time.perf_counter() - start,
                  "load_average": os.getloadavg(), "rows": rows}
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)


if __name__ == "__main__":
    main()
