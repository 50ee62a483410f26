"""Helpers shared by the command-line commands: argument parsing, console output."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False)
err_console = Console(stderr=True)


def parse_value(text: str) -> Any:
    """A ``--param`` value: JSON (numbers, true/false/null, lists) or else the plain string."""
    lowered = text.strip()
    if lowered in ("True", "False", "None"):
        lowered = lowered.lower().replace("none", "null")
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return text


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["factors=64", "reg=0.01"]`` -> ``{"factors": 64, "reg": 0.01}``."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param expects name=value, got {pair!r}")
        params[name.strip().replace("-", "_")] = parse_value(value)
    return params


def parse_metrics(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


@contextlib.contextmanager
def phase(description: str) -> Iterator[None]:
    """A spinner with elapsed time while a step runs, then a one-line completion notice."""
    start = time.perf_counter()
    with console.status(f"{description}..."):
        yield
    console.print(f"[green]done[/] {description} [dim]({time.perf_counter() - start:.1f}s)[/]")


def metrics_table(records: list[dict[str, Any]], title: str = "Results") -> Table:
    """One row per evaluation record; metric cells show the mean and the half-width of its
    95% bootstrap interval."""
    names: list[str] = []
    for record in records:
        names += [m for m in record["metrics"] if m not in names]
    table = Table(title=title)
    table.add_column("model", style="bold")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("eval s", justify="right")
    for record in records:
        cells = []
        for name in names:
            value = record["metrics"].get(name)
            interval = record.get("intervals", {}).get(name)
            if value is None:
                cells.append("-")
            elif interval:
                cells.append(f"{value:.4f} [dim]±{(interval[1] - interval[0]) / 2:.4f}[/]")
            else:
                cells.append(f"{value:.4f}")
        table.add_row(record["model"], *cells, f"{record['fit_seconds']:.2f}",
                      f"{record['eval_seconds']:.2f}")
    return table
