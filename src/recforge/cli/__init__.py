"""The ``recforge`` command-line program."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from rich.markup import escape

from recforge import __version__
from recforge.cli.common import err_console


class OneLineParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line (exit status 2), like every other
    recforge input error, instead of the usage block followed by the message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} "
                     f"(see {self.prog} --help)\n")


#: command -> (the module of `recforge.cli` that defines its arguments and runs it, its help).
#: Only the module of the command being run is imported (``recforge --help`` imports none).
COMMANDS: dict[str, tuple[str, str]] = {
    "datasets": ("datasets_cmd", "list, describe and download datasets"),
    "split": ("evaluate_cmd", "split a dataset and write train/test Parquet files"),
    "evaluate": ("evaluate_cmd", "fit a model and evaluate it"),
    "run": ("run_cmd", "run an experiment file and write a run folder"),
    "tune": ("run_cmd", "search a model's hyperparameters on a validation split"),
    "quickstart": ("quickstart_cmd", ("evaluate the model lineup on the default dataset and "
                                      "write the report")),
    "train": ("retrieval_cmd", "fit a model on a whole dataset and save it"),
    "recommend": ("retrieval_cmd", "top-k items for a user"),
    "similar": ("retrieval_cmd", "items similar to an item"),
    "simulate": ("simulate_cmd", "run bandit policies in a simulator built from a dataset"),
    "serve": ("serve_cmd", "run the HTTP recommendation service"),
    "experiment": ("experiment_cmd", "analyse an A/B test; sample sizes"),
    "features": ("features_cmd", "rebuild, show or consume the online feature store"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the arguments of ``command`` (a name in `COMMANDS`) are defined, the other
    commands only listed."""
    parser = OneLineParser(
        prog="recforge", description="Build, evaluate and serve recommender systems.")
    parser.add_argument("--version", action="version", version=f"recforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, helptext) in COMMANDS.items():
        cmd = sub.add_parser(name, help=helptext)
        if name == command:
            importlib.import_module(f"recforge.cli.{module}").configure(name, cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad input, with a one-line error)."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    try:
        args = build_parser(command).parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, status 2), --help or --version
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:  # InputError and the standard bad-value/path errors
        if os.environ.get("RECFORGE_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {escape(one_line(exc))}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted", soft_wrap=True)
        return 130
    except Exception as exc:  # anything else is a bug in recforge, not bad input
        if os.environ.get("RECFORGE_DEBUG"):
            raise
        err_console.print(f"[bold red]internal error (this is a bug in recforge; rerun with "
                          f"RECFORGE_DEBUG=1 for the traceback):[/] "
                          f"{escape(type(exc).__name__)}: {escape(one_line(exc))}",
                          soft_wrap=True)
        return 1


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (an ``OSError`` with its path)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
