"""``recforge split`` and ``recforge evaluate``.

``evaluate --format`` names how ``--dataset`` is read: a CTR format goes to
`recforge.cli.ctr_cmd`; ``sequence``, ``sessions`` and ``adjacency``
(`recforge.data.seq_formats`) are interaction files evaluated here, split by ``--split`` or,
with ``--test FILE``, by the published test file as it is. Without ``--format`` a file whose
format is unambiguous (`recforge.data.seq_formats.detect_format`) is read in it.
``--protocol`` also takes a paper's protocol (`PRESETS`), which sets the split, the ranking
protocol and the metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

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
from recforge.data.seq_formats import detect_format, read_split
from recforge.data.splits import DEFAULT_TIES, SPLITTERS, TIE_RULES, TIES
from recforge.errors import InputError
from recforge.evaluation.evaluator import check_rating_metrics
from recforge.evaluation.protocols import make_protocol
from recforge.experiments.steps import (
    PreparedSplit,
    build_model,
    prepare_split,
    run_evaluation,
)
from recforge.io import atomic_dir, atomic_path, json_written_by
from recforge.params import Real

#: the ``written_by`` of ``evaluate --json`` files (an existing one is replaced only if it has it)
EVALUATE = "recforge evaluate"
#: ``--ties``: how leave-last-out orders equal timestamps (`recforge.data.splits.TIE_RULES`)
ties_option = option_type(TIES, str)
#: ``--test-fraction``: the test share of a random or temporal split
fraction_option = option_type(Real(0, 1, low_open=True, high_open=True), float)
#: ``--metrics`` of the interaction-data path
DEFAULT_METRICS = "ndcg@10,hr@10,recall@10,precision@10"
SPLIT_HELP = f"one of {', '.join((*ML100K_FOLDS, *SPLITTERS))}"
#: the splits that take ``--test-fraction``
FRACTION_SPLITS = ("random", "random-per-user", "temporal")


@dataclass(frozen=True)
class Preset:
    """A paper's evaluation protocol: its split, ranking protocol and metrics."""

    split: str
    protocol: str
    metrics: str
    paper: str


#: ``--protocol NAME``: the protocols of the papers, by name
PRESETS = {
    "lightgcn": Preset("random-per-user", "full", "recall@20,ndcg@20",
                       "LightGCN, He et al. 2020"),
    "sasrec": Preset("leave-last-out", "next-item-sampled-100", "hr@10,ndcg@10",
                     "SASRec, Kang & McAuley 2018"),
}
#: the split and ranking protocol of each ``--format`` when not given (None: no format)
FORMAT_DEFAULTS = {None: ("random", "full"), "sequence": ("leave-last-out", "next-item"),
                   "sessions": ("leave-last-out", "next-item"),
                   "adjacency": ("random-per-user", "full")}
#: the split of a ``--test`` file
TEST_FILE = "test file"
PROTOCOL_HELP = (
    "full, sampled-N, next-item or next-item-sampled-N (N negatives sampled uniformly among "
    "the items the user never interacted with); or a paper's protocol, which also sets "
    "--split and --metrics (--metrics still overrides them): " + "; ".join(
        f"{name} ({p.paper}: --split {p.split}, {p.protocol}, {p.metrics})"
        for name, p in PRESETS.items())
    + ". Default: next-item for --format sequence and sessions, else full")
FORMATS_EPILOG = """\
interaction formats (--format; integer ids, fields separated by whitespace or commas):
  sequence   'user item' per line in time order, no header (SASRec's files); each event's
             timestamp is its line number, so no tie rule reorders them
  sessions   'session item time' per line, header optional (GRU4Rec's files); a session
             is a user (one sequence), times are epoch seconds, ordered exactly
  adjacency  'user item item ...' per line (LightGCN's train.txt); --test test.txt; no
             timestamps; a user alone on a line has no items there
  adjacency (lines of different lengths) and sessions (a header naming a session column)
  are detected without --format. Defaults: sequence and sessions --split leave-last-out
  --protocol next-item; adjacency --split random-per-user --protocol full.
examples:
  recforge evaluate --dataset ml-1m.txt --format sequence --protocol sasrec --model sasrec
  recforge evaluate --dataset train.txt --test test.txt --format adjacency \\
      --protocol lightgcn --model bpr
"""


def _add_data_arguments(parser: argparse.ArgumentParser, default_split: str | None) -> None:
    parser.add_argument("--dataset", default="ml-100k",
                        help="a registered dataset name (see `recforge datasets list`) or a file")
    parser.add_argument("--columns", default=None,
                        help="for a file: field=column pairs, e.g. user=userId,item=movieId")
    parser.add_argument("--split", default=default_split,
                        help=SPLIT_HELP + (f" (default {default_split})" if default_split else
                                           " (default random; leave-last-out for --format "
                                           "sequence and sessions, random-per-user for "
                                           "adjacency)"))
    parser.add_argument("--test-fraction", type=fraction_option, default=None, metavar="F",
                        help=f"the test share of --split {', '.join(FRACTION_SPLITS)} "
                             "(default 0.2)")
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
    _add_data_arguments(parser, "random" if name == "split" else None)
    if name == "split":
        parser.add_argument("--out", default=None,
                            help="folder for train.parquet and test.parquet")
        parser.set_defaults(func=cmd_split)
        return
    evaluate = parser
    evaluate.add_argument("--model", required=True, help="registered model name, e.g. ease")
    evaluate.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                          help="a hyperparameter (repeatable)")
    evaluate.add_argument("--protocol", default=None, help=PROTOCOL_HELP)
    evaluate.add_argument("--metrics", default=None,
                          help=f"comma-separated (default {DEFAULT_METRICS}; CTR files: "
                               "auc,logloss,gauc)")
    evaluate.add_argument("--json", default=None, help="write the result record here")
    ctr_cmd.add_arguments(evaluate)
    evaluate.epilog = FORMATS_EPILOG
    evaluate.formatter_class = argparse.RawDescriptionHelpFormatter
    evaluate.set_defaults(func=cmd_evaluate)


def _split_options(args: argparse.Namespace, split: str) -> dict[str, object]:
    """The splitter options given on the command line: ``--ties`` (leave-last-out only) and
    ``--test-fraction`` (`FRACTION_SPLITS`)."""
    options: dict[str, object] = {}
    if args.ties is not None:
        if split != "leave-last-out":
            raise InputError(f"--ties applies to --split leave-last-out, not {split!r}")
        options["ties"] = args.ties
    if args.test_fraction is not None:
        if split not in FRACTION_SPLITS:
            raise InputError(f"--test-fraction applies to --split {', '.join(FRACTION_SPLITS)}, "
                             f"not {split!r}")
        options["test_fraction"] = args.test_fraction
    return options


def _prepare(args: argparse.Namespace, split: str, fmt: str | None = None) -> PreparedSplit:
    """The train and test parts: ``--dataset`` (read in ``fmt`` when given) split by ``split``,
    or with ``--test`` the two files as they are."""
    columns = parse_column_spec(args.columns) if args.columns else None
    rating_range = parse_rating_range(args.rating_range)
    options = _split_options(args, split)
    if split == TEST_FILE:
        with phase(f"reading {args.dataset} and {args.test} ({fmt})"):
            parts = read_split(args.dataset, args.test, fmt)
        return PreparedSplit(parts.train, parts.test, args.dataset, split, args.seed)
    with data_warnings(), phase(f"loading {args.dataset} and splitting ({split})"):
        return prepare_split(args.dataset, split, seed=args.seed, columns=columns,
                             data_dir=args.data_dir, download=not args.no_download,
                             rating_range=rating_range, split_options=options,
                             dataset_kwargs={"format": fmt} if fmt else None)


def cmd_split(args: argparse.Namespace) -> int:
    # --out is checked and locked before the data is loaded, and written as one unit
    with atomic_dir(args.out, "split") if args.out else contextlib.nullcontext() as out:
        prepared = _prepare(args, args.split)
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


def _format(args: argparse.Namespace) -> str | None:
    """``--format`` among `FORMATS`, or the one detected in a ``--dataset`` file read without
    ``--columns`` or ``--rating-range`` (None: the interaction-log reader)."""
    if args.format is not None or args.columns is not None or args.rating_range is not None:
        return args.format
    fmt = detect_format(args.dataset) if Path(args.dataset).is_file() else None
    if fmt is not None:
        console.print(f"reading {args.dataset} as --format {fmt} (detected; give --format to "
                      "read it otherwise)", soft_wrap=True)
    return fmt


def _check_format_options(args: argparse.Namespace, fmt: str | None) -> None:
    """Refuse the interaction-log options with a format, and a split a format cannot take."""
    if fmt is None:
        return
    for option, value in (("--columns", args.columns), ("--rating-range", args.rating_range)):
        if value is not None:
            raise InputError(f"{option} does not apply to --format {fmt} (fixed columns, no "
                             "ratings)")
    if fmt == "sequence" and args.split == "temporal":
        raise InputError("--split temporal does not apply to --format sequence: its timestamps "
                         "are line numbers, which order each user's events but not time "
                         "across users")


def _plan(args: argparse.Namespace, fmt: str | None) -> tuple[str, str, str]:
    """The split, the ranking protocol and the metrics: from a paper's protocol (`PRESETS`),
    else the options given and the format's defaults (`FORMAT_DEFAULTS`); ``--test`` makes
    the split the test file."""
    if args.test is not None and args.split is not None:
        raise InputError(f"--split does not apply with --test (the published split is used "
                         f"as it is), got --split {args.split}")
    preset = PRESETS.get((args.protocol or "").strip().lower())
    if preset is not None:
        if args.split not in (None, preset.split):
            raise InputError(f"--protocol {args.protocol} splits by {preset.split} "
                             f"({preset.paper}); leave out --split {args.split}")
        split, protocol, metrics = preset.split, preset.protocol, preset.metrics
    else:
        split, protocol = FORMAT_DEFAULTS[fmt]
        split, protocol = args.split or split, args.protocol or protocol
        metrics = DEFAULT_METRICS
    metrics = metrics if args.metrics is None else args.metrics
    return TEST_FILE if args.test is not None else split, protocol, metrics


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.format in ctr_cmd.FORMATS:
        return ctr_cmd.cmd_evaluate_ctr(args, EVALUATE)
    fmt = args.format = _format(args)
    ctr_cmd.check_ctr_options(args)
    _check_format_options(args, fmt)
    split, protocol, metric_text = _plan(args, fmt)
    # validate everything cheap before loading data or training
    model = build_model(args.model, parse_params(args.param), args.seed)
    metrics = parse_metrics(metric_text)
    check_rating_metrics(model, metrics)
    make_protocol(protocol)
    if args.json:
        check_output_file(args.json, "--json")
    prepared = _prepare(args, split, fmt)
    with phase(f"fitting and evaluating {args.model}"):
        record = run_evaluation(model, prepared, metrics, protocol=protocol)
    if fmt is not None:
        record["format"] = fmt
    if protocol != args.protocol and args.protocol is not None:
        record["paper_protocol"] = args.protocol.strip().lower()
    console.print(metrics_table([record], title=f"{args.dataset} / {split} / {protocol}"))
    if args.json:
        with atomic_path(args.json, owned=lambda path: json_written_by(path, EVALUATE)) as tmp:
            tmp.write_text(json.dumps({"written_by": EVALUATE, **record}, indent=2))
        console.print(f"wrote {args.json}")
    return 0
