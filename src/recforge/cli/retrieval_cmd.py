"""``recforge train``, ``recforge recommend`` and ``recforge similar``: serve a saved model.

``train`` fits a registered model on a whole dataset and saves it with its catalogue
(external ids and titles, `recforge.retrieval.write_catalogue`) as one unit (the output
folder is checked and locked before the data is loaded), so that ``recommend`` and
``similar`` answer by external ids with titles from the model folder alone. For a model saved
from Python without a catalogue, ``--dataset`` supplies the ids and titles instead.

``train --nproc N`` trains a PyTorch model data-parallel (`recforge.nn.distributed`): the
command starts itself again as ``N`` processes per machine under torchrun's launcher
(``torch.distributed.run``; ``--nnodes`` and ``--rdzv-endpoint`` are passed through for
several machines), each rank fits on its shard of every mini-batch and rank 0 alone saves.
The model, parameters and ``--out`` are checked before anything starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
from recforge.cli.options import cutoff_option, positive_int, seed_option
from recforge.data.readers import parse_column_spec
from recforge.errors import InputError
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
    train.add_argument("--nproc", type=positive_int, default=None,
                       help="train data-parallel in this many processes per machine (torchrun, "
                            "DDP: gloo on CPU, NCCL on GPUs; PyTorch models only)")
    train.add_argument("--nnodes", default=None,
                       help="machines (or MIN:MAX), passed to torchrun; needs --rdzv-endpoint")
    train.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                       help="torchrun rendezvous endpoint shared by every machine")
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
    from recforge.nn import distributed

    params = parse_params(args.param)
    if "seed" in get_model_class(args.model).param_names():
        params.setdefault("seed", args.seed)
    model = create_model(args.model, **params)
    if args.nproc is not None or args.nnodes is not None or args.rdzv_endpoint is not None:
        return _launch(args, model)
    shard = distributed.init_from_env(str(params.get("device", "auto")))
    if shard is None:
        with model_output(args.out) as folder:  # checks and locks --out before the work
            _fit_and_write(args, model, folder)
        console.print(f"wrote {args.out}")
        return 0
    model.set_params(**distributed.rank_params(model.get_params(), shard))
    console.quiet = not shard.is_main  # rank 0 tells the progress (errors: every rank)
    try:
        if shard.is_main:
            with model_output(args.out) as folder:
                _fit_and_write(args, model, folder)
        else:
            _fit_and_write(args, model, None)
    finally:
        distributed.shutdown()
    return 0


def _fit_and_write(args: argparse.Namespace, model: Any, folder: Any) -> None:
    """Load the data, fit ``model`` and, given a (temporary) ``folder``, save it there with
    its catalogue."""
    with phase(f"loading {args.dataset}"):
        data = _load_data(args)
    with phase(f"fitting {args.model} on {len(data):,} interactions"):
        model.fit(data)
    if folder is not None:
        model.write_files(folder)
        write_catalogue(folder, data)


def _launch(args: argparse.Namespace, model: Any) -> int:
    """Run this ``train`` command as ``--nproc`` processes per machine under torchrun's
    launcher (``torch.distributed.run``); 0 when every rank succeeded, else a one-line error
    (each rank prints its own)."""
    from pathlib import Path

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args

    from recforge.io import check_target
    from recforge.models.base import is_model_folder
    from recforge.models.neural.torch_base import TorchRecommender

    if not isinstance(model, TorchRecommender):
        raise InputError(f"--nproc: {args.model} is not a PyTorch model; distributed training "
                         "is for the neural models (e.g. two-tower, deepfm, gmf)")
    if args.nnodes is not None and args.rdzv_endpoint is None:
        raise ValueError("--nnodes needs --rdzv-endpoint HOST:PORT (the rendezvous every "
                         "machine joins)")
    check_target(Path(args.out), "model", legacy=is_model_folder)
    try:
        _quiet_launch(parse_args(_torchrun_argv(args)))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise ValueError(f"distributed training failed: rank {rank} exited with status "
                         f"{failure.exitcode} (its error is printed above)") from None
    console.print(f"wrote {args.out} ({args.nproc or 1} processes per machine)")
    return 0


#: what each rank runs: the recforge command line (the launcher execs it as a program)
_RANK_CODE = "import sys; from recforge.cli import main; sys.exit(main())"


def _torchrun_argv(args: argparse.Namespace) -> list[str]:
    """torchrun's arguments for running this command once per rank."""
    import uuid

    # one machine: a rendezvous on a free local port, as torchrun --standalone does
    launcher = ["--nproc-per-node", str(args.nproc or 1), "--rdzv-backend", "c10d",
                "--nnodes", args.nnodes or "1",
                "--rdzv-endpoint", args.rdzv_endpoint or "localhost:0"]
    if args.rdzv_endpoint is None:
        launcher += ["--rdzv-id", str(uuid.uuid4())]
    command = ["train", "--model", args.model, "--out", args.out, "--seed", str(args.seed)]
    for flag, value in (("--dataset", args.dataset), ("--columns", args.columns),
                        ("--data-dir", args.data_dir), ("--rating-range", args.rating_range)):
        if value is not None:
            command += [flag, value]
    command += ["--no-download"] * args.no_download
    for param in args.param:
        command += ["--param", param]
    return [*launcher, "--no-python", sys.executable, "-c", _RANK_CODE, *command]


def _quiet_launch(torchrun_args: argparse.Namespace) -> None:
    """torchrun's launch (``config_from_args`` and ``elastic_launch``) with the launcher's own
    log lines (thread-count warnings, rendezvous chatter) held back; the ranks' output
    passes through."""
    import logging

    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args

    log = logging.getLogger("torch.distributed")
    level, threads = log.level, os.environ.get("OMP_NUM_THREADS")
    log.setLevel(logging.ERROR)
    # torchrun's default (one OpenMP thread per rank), set here so it does not warn about it;
    # a model's ``threads`` parameter still sets PyTorch's own thread count
    os.environ["OMP_NUM_THREADS"] = threads or "1"
    try:
        config, entrypoint, entry_args = config_from_args(torchrun_args)
        elastic_launch(config, entrypoint)(*entry_args)
    finally:
        log.setLevel(level)
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]


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
