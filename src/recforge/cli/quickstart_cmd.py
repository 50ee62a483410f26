"""``recforge quickstart``: evaluate the model lineup on the default dataset and print it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recforge.cli.common import console, metrics_table, phase
from recforge.experiment import build_model, default_dataset, prepare_split, run_evaluation
from recforge.io import atomic_path

RANKING_LINEUP = ("random", "most-popular", "item-knn-implicit", "bpr", "ials", "ease")
RATING_LINEUP = ("global-mean", "baseline-only", "item-knn", "biased-mf", "svdpp")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("quickstart", help="evaluate the model lineup on the default dataset")
    parser.add_argument("--dataset", default=None,
                        help="dataset (default: ml-100k when available, else synthetic)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/quickstart", help="folder for results.json")
    parser.set_defaults(func=cmd_quickstart)


def cmd_quickstart(args: argparse.Namespace) -> int:
    dataset = args.dataset or default_dataset(notify=console.print)
    records = []
    with phase(f"loading {dataset} (leave-last-out)"):
        loo = prepare_split(dataset, "leave-last-out", seed=args.seed)
    for name in RANKING_LINEUP:
        with phase(f"{name}: fit + sampled-99 ranking"):
            records.append(run_evaluation(build_model(name, seed=args.seed), loo,
                                          ["hr@10", "ndcg@10", "mrr"], protocol="sampled-99"))
    console.print(metrics_table(records, title=f"{dataset}: leave-last-out, held-out item vs "
                                                "99 sampled negatives"))
    with phase(f"loading {dataset} (random 80/20)"):
        rnd = prepare_split(dataset, "random", seed=args.seed)
    rating_records = []
    if rnd.train.has_ratings:
        for name in RATING_LINEUP:
            with phase(f"{name}: fit + rating prediction"):
                rating_records.append(run_evaluation(build_model(name, seed=args.seed), rnd,
                                                     ["rmse", "mae"]))
        console.print(metrics_table(rating_records, title=f"{dataset}: random 80/20, ratings"))
    out = Path(args.out) / "results.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"ranking": records, "rating": rating_records}, indent=2))
    console.print(f"results written to {out}")
    return 0
