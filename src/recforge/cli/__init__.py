"""The ``recforge`` command-line program."""

from __future__ import annotations

import argparse
import os
import sys

from rich.markup import escape

from recforge import __version__
from recforge.cli import datasets_cmd, evaluate_cmd, quickstart_cmd, retrieval_cmd, run_cmd
from recforge.cli.common import err_console
from recforge.cli.options import OneLineParser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="recforge", description="Build, evaluate and serve recommender systems.")
    parser.add_argument("--version", action="version", version=f"recforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (datasets_cmd, evaluate_cmd, run_cmd, quickstart_cmd, retrieval_cmd):
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad input, with a one-line error)."""
    try:
        args = build_parser().parse_args(argv)
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
