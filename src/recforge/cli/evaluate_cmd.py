"""``recforge split`` and ``recforge evaluate``."""

from __future__ import annotations

import argparse
import contextlib
import json

from rich.table import Table

from recforge.cli import ctr_cmd
from recforge.cli.common import (
    check_output_file,
    console,
    data_warnings,
    metrics_table,
    parse_metrics,
    parse_params,
    parse_rating_range,
    phase,
)
from recforge.cli.options import option_type, seed_option
from recforge.data.datasets import ML100K_FOLDS
from recforge.data.readers import parse_column_spec
from recforge.data.splits import DEFAULT_TIES, SPLITTERS, TIE_RULES, TIES
from recforge.errors import InputError
from recforge.evaluation.evaluator import check_rating_metrics
from recforge.evaluation.protocols import make_protocol
from recforge.experiments.steps import (
    build_model,
    prepare_split,
    run_evaluation,
)
from recforge.io import atomic_dir, atomic_path, json_written_by

#: the ``written_by`` of ``evaluate --json`` files (an existing one is replaced only if it has it)
EVALUATE = "recforge evaluate"
#: ``--ties``: how leave-last-out orders equal timestamps (`recforge.data.splits.TIE_RULES`)
ties_option = option_type(TIES, str)
#: ``--metrics`` of the interaction-data path
DEFAULT_METRICS = "ndcg@10,hr@10,recall@10,precision@10"
SPLIT_HELP = f"one of {', '.join((*ML100K_FOLDS, *SPLITTERS))}"


def _add_data_arguments(parser: argparse.ArgumentParser, default_split: str) -> None:
    parser.add_argument("--dataset", default="ml-100k",
                        help="a registered dataset name (see `recforge datasets list`) or a file")
    parser.add_argument("--columns", default=None,
                        help="for a file: field=column pairs, e.g. user=userId,item=movieId")
    parser.add_argument("--split", default=default_split, help=SPLIT_HELP)
    parser.add_argument("--seed", type=seed_option, default=0)
    parser.add_argument("--ties", type=ties_option, default=None,
                        help="leave-last-out only: how equal timestamps are ordered, one of "
                             f"{', '.join(TIE_RULES)} (default {DEFAULT_TIES}; random uses "
                             "--seed)")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    parser.add_argument("--no-download", action="store_true")
    parser.add_argument("--rating-range", default=None, metavar="LOW,HIGH",
                        help="the rating scale, e.g. 1,5: a rating outside it is an error")


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge split`` and ``recforge evaluate``."""
    _add_data_arguments(parser, "random")
    if name == "split":
        parser.add_argument("--out", default=None,
                            help="folder for train.parquet and test.parquet")
        parser.set_defaults(func=cmd_split)
        return
    evaluate = parser
    evaluate.add_argument("--model", required=True, help="registered model name, e.g. ease")
    evaluate.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="a hyperparameter (repeatable)")
    evaluate.add_argument("--protocol", default="full", help="full (default), sampled-N, next-item or next-item-sampled-N")
    evaluate.add_argument("--metrics", default=None,
                          help=f"comma-separated (default {DEFAULT_METRICS}; CTR files: "
                               "auc,logloss,gauc)")
    evaluate.add_argument("--json", default=None, help="write the result record here")
    ctr_cmd.add_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)


def _split_options(args: argparse.Namespace) -> dict[str, str]:
    """The splitter options given on the command line (``--ties``, leave-last-out only)."""
    if args.ties is None:
        return {}
    if args.split != "leave-last-out":
        raise InputError(f"--ties applies to --split leave-last-out, not {args.split!r}")
    return {"ties": args.ties}


def _prepare(args: argparse.Namespace):
    columns = parse_column_spec(args.columns) if args.columns else None
    rating_range = parse_rating_range(args.rating_range)
    options = _split_options(args)
    with data_warnings(), phase(f"loading {args.dataset} and splitting ({args.split})"):
        return prepare_split(args.dataset, args.split, seed=args.seed, columns=columns,
                             data_dir=args.data_dir, download=not args.no_download,
                             rating_range=rating_range, split_options=options)


def cmd_split(args: argparse.Namespace) -> int:
    # --out is checked and locked before the data is loaded, and written as one unit
    with atomic_dir(args.out, "split") if args.out else contextlib.nullcontext() as out:
        prepared = _prepare(args)
        summary = prepared.summary()
        table = Table(title="Split", show_header=False)
        for key, value in summary.items():
            table.add_row(key, str(value))
        console.print(table)
        if out is not None:
            prepared.train.to_parquet(out / "train.parquet")
            prepared.test.to_parquet(out / "test.parquet")
            (out / "split.json").write_text(json.dumps(summary, indent=2))
    if args.out:
        console.print(f"wrote {args.out}/train.parquet, test.parquet, split.json")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    ctr_cmd.check_ctr_options(args)
    if args.format is not None:
        return ctr_cmd.cmd_evaluate_ctr(args, EVALUATE)
    # validate everything cheap before loading data or training
    model = build_model(args.model, parse_params(args.param), args.seed)
    metrics = parse_metrics(DEFAULT_METRICS if args.metrics is None else args.metrics)
    check_rating_metrics(model, metrics)
    make_protocol(args.protocol)
    if args.json:
        check_output_file(args.json, "--json")
    prepared = _prepare(args)
    with phase(f"fitting and evaluating {args.model}"):
        record = run_evaluation(model, prepared, metrics, protocol=args.protocol)
    console.print(metrics_table([record], title=f"{args.dataset} / {args.split} / "
                                                f"{args.protocol}"))
    if args.json:
        with atomic_path(args.json, owned=lambda path: json_written_by(path, EVALUATE)) as tmp:
            tmp.write_text(json.dumps({"written_by": EVALUATE, **record}, indent=2))
        console.print(f"wrote {args.json}")
    return 0
