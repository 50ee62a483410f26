"""``recforge datasets list|info|download``."""

from __future__ import annotations

import argparse
import json

from rich.markup import escape
from rich.table import Table

from recforge.cli.common import console, phase


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge datasets``."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="registered datasets and where they are found").set_defaults(
        func=cmd_list)
    info = actions.add_parser("info", help="load a dataset and describe it")
    info.add_argument("name")
    info.add_argument("--data-dir", default=None)
    info.add_argument("--no-download", action="store_true")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=cmd_info)
    download = actions.add_parser(
        "download", help="download a dataset; says whether a published checksum verified it")
    download.add_argument("name")
    download.set_defaults(func=cmd_download)


def cmd_list(args: argparse.Namespace) -> int:
    from recforge.data.datasets import dataset_info, dataset_names

    table = Table(title="Datasets")
    for column in ("name", "description", "ratings", "checksum", "found at"):
        table.add_column(column)
    for name in dataset_names():
        info = dataset_info(name)
        ratings = f"{info['ratings']:,}" if info.get("ratings") else "-"
        where = escape(info["local"]) if info.get("local") else (
            "[dim]generated[/]" if name == "synthetic" else "[dim]not downloaded[/]")
        published = "-" if info["url"] is None else (
            "published" if info["archive_sha256"] else "none")
        table.add_row(name, info["description"], ratings, published, where)
    console.print(table)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from recforge.data.datasets import get_spec, resolve_and_verify
    from recforge.data.loading import load_dataset

    with phase(f"loading {args.name}"):
        where: dict[str, str] = {"integrity": "generated in memory: nothing to verify"}
        data_dir = args.data_dir
        if get_spec(args.name).archive is not None:
            data_dir, integrity = resolve_and_verify(args.name, data_dir,
                                                     download=not args.no_download)
            where = {"folder": str(data_dir), "integrity": str(integrity)}
        data = load_dataset(args.name, data_dir=data_dir, download=False)
    info = {**data.describe(), **where}
    if args.json:
        console.print_json(json.dumps(info, default=str))
        return 0
    table = Table(title=f"Dataset {args.name}", show_header=False)
    for key, value in info.items():
        table.add_row(key, escape(str(value)))
    console.print(table)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from recforge.data.datasets import resolve_and_verify

    folder, integrity = resolve_and_verify(args.name, download=True)
    console.print(f"[green]{escape(args.name)}[/] is at {escape(str(folder))}: "
                  f"{escape(str(integrity))}", soft_wrap=True)
    return 0
