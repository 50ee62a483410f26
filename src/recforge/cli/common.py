"""Helpers shared by the command-line commands: argument parsing, console output."""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recforge.errors import InputError

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
        key = name.strip().replace("-", "_")
        if key in params:
            raise InputError(f"--param {key} is given twice")
        params[key] = parse_value(value)
    return params


def parse_metrics(text: str) -> list[str]:
    """``--metrics``: comma-separated metric names, each checked (at least one)."""
    from recforge.evaluation.metrics import parse_metric

    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise InputError(f"--metrics names no metric (got {text!r}); e.g. ndcg@10,hr@10")
    for name in names:
        parse_metric(name)
    return names


#: texts that JSON or Python would read as a boolean, null or a non-finite number, never an id
_NOT_IDS = frozenset({"true", "false", "null", "none", "nan", "inf", "-inf", "+inf",
                      "infinity", "-infinity", "+infinity"})


def parse_id(text: str, option: str) -> int | str:
    """An external id given as ``option``: one canonical integer (an int) or string.

    Lists, objects, booleans, null, NaN/infinity and empty text are refused; other text is
    kept exactly, so ``007`` stays the string id ``"007"``."""
    value = text.strip()
    if not value:
        raise InputError(f"{option} needs an id, got an empty value")
    if value[0] in "[{":
        raise InputError(f"{option} takes a single id, not a list or object: {text!r}")
    if value.lower() in _NOT_IDS:
        raise InputError(f"{option} takes an id (an integer or a string), not {text!r}")
    from recforge.data.interactions import canonical_int

    return canonical_int(text)


def parse_rating_range(text: str | None) -> tuple[float, float] | None:
    """``--rating-range LOW,HIGH`` as two floats (None when not given)."""
    from recforge.data.readers import check_rating_range

    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"--rating-range expects LOW,HIGH (e.g. 1,5), got {text!r}") from None
    return check_rating_range((low, high))


def check_output_file(path: str, option: str) -> None:
    """Refuse an output file path that cannot be written (checked before the work)."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise InputError(f"{option} {path}: is a folder, not a file")
    if not folder.is_dir():
        raise InputError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: the folder {folder} is not writable")


@contextlib.contextmanager
def data_warnings() -> Iterator[None]:
    """Show each `RatingScaleWarning` raised in the block as one line on stderr once the block
    succeeds (an error in the block is reported alone); other warnings pass through."""
    from recforge.data.readers import RatingScaleWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RatingScaleWarning)
        yield
    for w in caught:
        if issubclass(w.category, RatingScaleWarning):
            message = " ".join(str(w.message).split())
            err_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


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
