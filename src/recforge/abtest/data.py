"""The per-user table an A/B analysis runs on: one row per exposed user with its arm, the
metric and, for CUPED, a pre-period metric.

Two sources:

* `from_file`: a CSV/TSV or Parquet file with a user id column, an arm column, a metric
  column and optionally a pre-period column, one row per user;
* `from_logs`: the exposure log (`recforge.abtest.exposure.ExposureLog`) joined with the
  event log (`recforge.serving.events.EventLog`, or any iterable of events): a user enters
  at their first exposure; the metric is the sum of the ``value`` of their events of the
  metric's type at or after it (the count of clicks, for clicks of value 1), or with
  ``binary`` 1 if there is any such event (conversion); the pre-period metric is the same
  sum over events of the pre type before the first exposure.

Held-out users (arm ``"holdout"``) are left out of both; so are users logged in more than one
arm of the experiment (a broken assignment; counted in the returned information).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.abtest.assignment import HOLDOUT
from recforge.abtest.exposure import ExposureLog
from recforge.errors import InputError, UnknownNameError, did_you_mean

#: the columns of a per-user table (``pre_metric`` only with a pre-period metric)
COLUMNS = ("user_id", "arm", "metric", "pre_metric")


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (``.csv``), TSV (``.tsv``, ``.tab``) or Parquet (``.parquet``, ``.pq``) file,
    every column read as text except in Parquet."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--data {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".tab"):
            return pd.read_csv(path, sep="," if suffix == ".csv" else "\t", dtype=str,
                               keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(f"--data {path}: cannot be read ({' '.join(str(exc).split())})"
                         ) from None
    raise InputError(f"--data {path}: unknown format {suffix!r}; use .csv, .tsv or .parquet")


def from_file(path: str | Path, metric: str = "metric", pre: str | None = None, *,
              user: str = "user_id", arm: str = "arm") -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-user table from a file with columns ``user``, ``arm``, ``metric`` and
    optionally ``pre``; returns it with information about what was left out."""
    raw = read_table(path)
    names = {"user_id": user, "arm": arm, "metric": metric}
    if pre is not None:
        names["pre_metric"] = pre
    for column in names.values():
        if column not in raw.columns:
            raise UnknownNameError(f"--data {path}: no column {column!r}"
                                   f"{did_you_mean(column, raw.columns)} (columns: "
                                   f"{', '.join(map(str, raw.columns))})")
    table = pd.DataFrame({key: raw[column] for key, column in names.items()})
    table["user_id"] = table["user_id"].astype(str)
    table["arm"] = table["arm"].astype(str).str.strip()
    for key in ("metric", "pre_metric"):
        if key in table:
            table[key] = _numbers(table[key], names[key], path)
    _check_rows(table, path)
    held = table["arm"] == HOLDOUT
    return table[~held].reset_index(drop=True), {"source": str(path), "holdout_users":
                                                 int(held.sum()), "multi_arm_users": 0}


def _numbers(column: pd.Series, name: str, path: str | Path) -> pd.Series:
    """``column`` as finite floats; `InputError` naming the file, the row and the column."""
    values = pd.to_numeric(column, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"--data {path}: row {row + 1}: column {name!r} must be a finite "
                         f"number, got {column.iloc[row]!r}")
    return values.astype(float)


def _check_rows(table: pd.DataFrame, path: str | Path) -> None:
    """Every row names a user once and an arm."""
    empty = table["arm"] == ""
    if empty.any():
        raise InputError(f"--data {path}: row {int(np.flatnonzero(empty)[0]) + 1}: empty arm")
    repeated = table["user_id"].duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise InputError(f"--data {path}: row {row + 1}: user {table['user_id'].iloc[row]!r} "
                         "appears twice (one row per user)")


def from_logs(exposures: ExposureLog, events: Iterable[Any], experiment: str, metric: str,
              *, pre: str | None = None, binary: bool = False
              ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-user table of ``experiment`` from the exposure log and the events (objects
    with ``user_id``, ``event``, ``value`` and ``timestamp``): see the module docstring.
    ``metric`` and ``pre`` are event types."""
    first, arms, info = _first_exposures(exposures, experiment)
    outcome: dict[str, float] = defaultdict(float)
    before: dict[str, float] = defaultdict(float)
    for event in events:
        start = first.get(event.user_id)
        if start is None or event.timestamp is None:
            continue
        if event.event == metric and event.timestamp >= start:
            outcome[event.user_id] = 1.0 if binary else outcome[event.user_id] + event.value
        elif event.event == pre and event.timestamp < start:
            before[event.user_id] += event.value
    users = sorted(first)
    table = pd.DataFrame({"user_id": users, "arm": [arms[u] for u in users],
                          "metric": [outcome.get(u, 0.0) for u in users]})
    if pre is not None:
        table["pre_metric"] = [before.get(u, 0.0) for u in users]
    return table, info


def _first_exposures(log: ExposureLog, experiment: str
                     ) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """Per user of ``experiment`` (held-out and multi-arm users left out): the time of the
    first exposure and the arm; and what was left out."""
    first: dict[str, float] = {}
    arms: dict[str, set[str]] = defaultdict(set)
    for row in log.rows(experiment):
        user = str(row.user_id)
        arms[user].add(row.arm)
        first[user] = min(first.get(user, row.timestamp), row.timestamp)
    if not first:
        logged = log.experiments()
        raise InputError(f"exposure log {log.path}: no exposures of experiment {experiment!r}"
                         f"{did_you_mean(experiment, logged)} (logged: "
                         f"{', '.join(logged) or 'none'})")
    held = {u for u, a in arms.items() if HOLDOUT in a}
    multi = {u for u, a in arms.items() if len(a - {HOLDOUT}) > 1}
    kept = {u: next(iter(a)) for u, a in arms.items() if u not in held | multi}
    info = {"source": str(log.path), "experiment": experiment, "holdout_users": len(held),
            "multi_arm_users": len(multi)}
    return {u: first[u] for u in kept}, kept, info
