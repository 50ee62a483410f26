"""``recforge train``, ``recforge recommend`` and ``recforge similar``: serve a saved model.

``train`` fits a registered model on a whole dataset and saves it with its catalogue
(external ids and titles, `recforge.retrieval.write_catalogue`) as one unit (the output
folder is checked and locked before the data is loaded), so that ``recommend`` and
``similar`` answer by external ids with titles from the model folder alone. For a model saved
from Python without a catalogue, ``--dataset`` supplies the ids and titles instead.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from recforge.cli.common import (
    console,
    data_warnings,
    parse_id,
    parse_params,
    parse_rating_range,
    phase,
)
from recforge.cli.options import cutoff_option, seed_option
from recforge.data.readers import parse_column_spec
from recforge.retrieval import INDEX_KINDS, FaissUnavailableError, Recommendations
from recforge.retrieval.retriever import Retriever, load_retriever, write_catalogue


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge train``, ``recforge recommend`` and ``recforge similar``."""
    if name != "train":
        _configure_query(name, parser)
        return
    train = parser
    _add_dataset_arguments(train, default="ml-100k")
    train.add_argument("--model", required=True, help="registered model name, e.g. ials")
    train.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="a hyperparameter (repeatable)")
    train.add_argument("--seed", type=seed_option, default=0)
    train.add_argument("--out", required=True, help="folder to save the model in")
    train.set_defaults(func=cmd_train)


def _configure_query(name: str, cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--model", required=True, help="a saved model folder")
    cmd.add_argument("--user" if name == "recommend" else "--item", required=True,
                     help="an external id")
    cmd.add_argument("-k", type=cutoff_option, default=10)
    cmd.add_argument("--index", default="auto", choices=("auto", *INDEX_KINDS),
                     help="vector index kind (auto: exact below 50k items, else IVF-Flat)")
    _add_dataset_arguments(cmd, default=None)
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd.set_defaults(func=cmd_recommend if name == "recommend" else cmd_similar)


def _add_dataset_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("--dataset", default=default,
                        help="a registered dataset name or a file" +
                             ("" if default else " (ids and titles for a model saved without them)"))
    parser.add_argument("--columns", default=None,
                        help="for a file: field=column pairs, e.g. user=userId,item=movieId")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    parser.add_argument("--no-download", action="store_true")
    parser.add_argument("--rating-range", default=None, metavar="LOW,HIGH",
                        help="the rating scale, e.g. 1,5: a rating outside it is an error")


def _load_data(args: argparse.Namespace) -> Any:
    from recforge.experiments.steps import load_data

    columns = parse_column_spec(args.columns) if args.columns else None
    rating_range = parse_rating_range(args.rating_range)
    with data_warnings():
        return load_data(args.dataset, columns=columns, data_dir=args.data_dir,
                         download=not args.no_download, rating_range=rating_range)


def cmd_train(args: argparse.Namespace) -> int:
    from recforge.models.base import model_output
    from recforge.models.registry import create_model, get_model_class

    params = parse_params(args.param)
    if "seed" in get_model_class(args.model).param_names():
        params.setdefault("seed", args.seed)
    model = create_model(args.model, **params)
    with model_output(args.out) as folder:  # checks and locks --out before the work
        with phase(f"loading {args.dataset}"):
            data = _load_data(args)
        with phase(f"fitting {args.model} on {len(data):,} interactions"):
            model.fit(data)
        model.write_files(folder)
        write_catalogue(folder, data)
    console.print(f"wrote {args.out}")
    return 0


def _retriever(args: argparse.Namespace) -> Retriever:
    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    data = _load_data(args) if args.dataset else None
    try:
        return load_retriever(args.model, data, index_kind=args.index)
    except FaissUnavailableError as exc:
        raise ValueError(str(exc)) from exc


def cmd_recommend(args: argparse.Namespace) -> int:
    user = parse_id(args.user, "--user")
    answer = _retriever(args).recommend(user, k=args.k)
    _show(answer, {"user": user}, f"recommendations for user {args.user}", args.json)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    item = parse_id(args.item, "--item")
    answer = _retriever(args).similar(item, k=args.k)
    _show(answer, {"item": item}, f"items similar to {args.item}", args.json)
    return 0


def _show(answer: Recommendations, query: dict[str, Any], title: str, as_json: bool) -> None:
    records = answer.to_records()
    if as_json:
        print(json.dumps(query | {"source": answer.source, "items": records}, indent=2))
    else:
        console.print(_table(records, f"{title} ({answer.source})"))


def _table(records: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column, justify in (("rank", "right"), ("id", "right"), ("score", "right"),
                            ("title", "left")):
        table.add_column(column, justify=justify)
    for record in records:
        table.add_row(str(record["rank"]), str(record["id"]), f"{record['score']:.4f}",
                      record["title"] or "")
    return table
