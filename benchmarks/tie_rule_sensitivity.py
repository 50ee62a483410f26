"""How much the leave-last-out tie rule moves the leaderboard on ML-100K.

415 of ML-100K's 943 users rated several films in their last second, so which of them is
"the latest" is a choice (`recforge.data.splits.TIE_RULES`): ``item-id`` (the larger movie
id is later; this project's rule before issue 11 and the rule of the issues' bars),
``file-order`` (a stable sort by timestamp over the rows of ``u.data``; RecBole's rule and
the default since issue 11) and ``random`` (seeded). This script splits ML-100K by each rule
given, refits each model with its defaults (model seed 0) and evaluates it with sampled-99
(negatives seed 0, the held-out item loses score ties) and full ranking, HR@10 and NDCG@10.

Usage::

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/tie_rule_sensitivity.py \\
        --ties item-id file-order random
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_ncf import RESULTS, machine

from recforge.data import Interactions
from recforge.data.loading import load_dataset
from recforge.data.splits import TIE_RULES, leave_last_out
from recforge.evaluation import Evaluator
from recforge.models import create_model

MODELS = ("most-popular", "item-knn-implicit", "ease", "ials", "bpr", "gmf", "neumf",
          "two-tower")
PROTOCOLS = ("sampled-99", "full")


def evaluate(data: Interactions, ties: str, seed: int,
             names: list[str]) -> dict[str, dict[str, float]]:
    """Sampled-99 and full-ranking HR@10 / NDCG@10 of each model on the ``ties`` split."""
    split = leave_last_out(data, ties=ties, seed=seed)
    out = {}
    for name in names:
        start = time.perf_counter()
        model = create_model(name).fit(split.train)
        fit_seconds = time.perf_counter() - start
        out[name] = {f"{protocol} {k}": round(v, 4) for protocol in PROTOCOLS
                     for k, v in Evaluator(split.train, split.test, ["hr@10", "ndcg@10"],
                                           protocol, seed=0).evaluate(model).metrics.items()}
        out[name]["fit_seconds"] = round(fit_seconds, 1)
        print(ties, name, out[name], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--ties", nargs="+", choices=TIE_RULES, default=list(TIE_RULES))
    parser.add_argument("--seed", type=int, default=0, help="seed of the random tie order")
    parser.add_argument("--json", type=Path, default=RESULTS / "tie_rule_sensitivity.json")
    args = parser.parse_args()
    data = load_dataset("ml-100k")
    result = {"machine": machine(),
              "protocol": "leave-last-out by tie rule; model seed 0; sampled-99 (negatives "
                          "seed 0, pessimistic) and full ranking; HR@10 and NDCG@10",
              "random tie seed": args.seed}
    result |= {ties: evaluate(data, ties, args.seed, args.models) for ties in args.ties}
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
