"""The ``recforge`` command-line program."""

from __future__ import annotations

import argparse
import os
import sys

from rich.markup import escape

from recforge import __version__
from recforge.cli import datasets_cmd, evaluate_cmd, quickstart_cmd, retrieval_cmd, run_cmd
from recforge.cli.common import err_console


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recforge", description="Build, evaluate and serve recommender systems.")
    parser.add_argument("--version", action="version", version=f"recforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (datasets_cmd, evaluate_cmd, run_cmd, quickstart_cmd, retrieval_cmd):
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad input, with a one-line error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, TypeError, OSError) as exc:
        if os.environ.get("RECFORGE_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err_console.print(f"[bold red]error:[/] {escape(str(message))}", soft_wrap=True)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
