"""``recforge quickstart``: run the packaged lineup experiment on the default dataset, write the
report and print the leaderboard."""

from __future__ import annotations

import argparse
from importlib import resources
from typing import Any

from recforge.cli.common import console
from recforge.cli.options import seed_option
from recforge.cli.run_cmd import execute
from recforge.experiments.config import Experiment, experiment_from_dict
from recforge.experiments.steps import default_dataset
from recforge.experiments.tomlw import tomllib


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge quickstart``."""
    parser.add_argument("--dataset", default=None,
                        help="dataset (default: ml-100k when available, else synthetic)")
    parser.add_argument("--seed", type=seed_option, default=0)
    parser.add_argument("--out", default="runs/quickstart", help="run folder")
    parser.add_argument("--reduced", action="store_true",
                        help="small synthetic data, four models, short training (for CI)")
    parser.set_defaults(func=cmd_quickstart)


def cmd_quickstart(args: argparse.Namespace) -> int:
    execute(quickstart_experiment(args.reduced, args.dataset, args.seed), args.out)
    return 0


def quickstart_experiment(reduced: bool = False, dataset: str | None = None,
                          seed: int = 0) -> Experiment:
    """The packaged quickstart experiment, with the dataset and seed set and unregistered
    models left out (with a note)."""
    name = "quickstart_reduced.toml" if reduced else "quickstart.toml"
    text = resources.files("recforge.experiments").joinpath(name).read_text()
    document = tomllib.loads(text)
    document["experiment"]["seeds"] = [seed]
    if dataset or not reduced:
        document["data"] = {"dataset": dataset or default_dataset(notify=console.print)}
    document["models"] = registered_models(document["models"])
    return experiment_from_dict(document, source=name)


def registered_models(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries whose model is registered; a note names the others."""
    from recforge.models.registry import model_names

    known = set(model_names())
    missing = [m["name"] for m in models if m["name"] not in known]
    if missing:
        console.print(f"[yellow]note:[/] {', '.join(missing)} not available in this "
                      "installation; left out of the lineup")
    return [m for m in models if m["name"] in known]
