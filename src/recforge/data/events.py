"""`Events`: one row per logged event (an impression, a rating, a play) with its context
columns, one or several labels and an optional logging propensity: the common input of CTR
models, bandits and the service's event log.

* ``users``/``items``: dense indices over `IdMap` s built by the id rule of `Interactions`
  (ids are int64 when every value is a canonical integer, else strings).
* ``labels``: float32 columns by name (``click``, ``rating``, ``watch_time``, ...), several
  at once for multi-task models; every value present and finite.
* ``timestamps`` (int64 epoch seconds) and ``propensity`` (the logging policy's probability
  of the logged action, in ``(0, 1]``): optional.
* ``context``: any other columns (a data frame; missing values allowed, the `FeatureCodec`
  encodes them as unknown), plus optional user and item `SideTable` s aligned to the maps.
* ``history``: optional ``(n, L)`` item indices of each event's user's previous items, oldest
  first, ``-1`` padded (`with_history` computes it over the whole log, so that after a split
  a test event's history still holds the user's training and validation events).

`Events.read` reads CSV/TSV/Parquet; a bad value raises `DataFormatError` with the file, the
line (the row for Parquet) and the field. `Events.from_movielens` turns MovieLens ratings
into a CTR problem.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.codec import Field
from recforge.data.features import SideTable
from recforge.data.interactions import IdMap, Interactions, PairData
from recforge.data.readers import (
    PARQUET_SUFFIXES,
    DataFormatError,
    Kind,
    TextSource,
    _read_parquet,
    coerce_columns,
    data_suffix,
    read_table,
    row_error,
    sniff_separator,
)
from recforge.errors import InputError, UnknownNameError
from recforge.params import FRACTION, MAX_COUNT, Integer, Real

HOUR, DAY = 3600, 86_400
#: 1970-01-01 was a Thursday (Monday is weekday 0)
_EPOCH_WEEKDAY = 3


class Events(PairData):
    """Logged events (module docstring). Rows keep the order they were given in."""

    def __init__(self, users: Any, items: Any, *, user_map: IdMap, item_map: IdMap,
                 labels: Mapping[str, Any], timestamps: Any | None = None,
                 context: pd.DataFrame | None = None, propensity: Any | None = None,
                 user_features: SideTable | None = None,
                 item_features: SideTable | None = None, history: Any | None = None,
                 name: str = ""):
        self.users = np.ascontiguousarray(users, dtype=np.int32)
        self.items = np.ascontiguousarray(items, dtype=np.int32)
        n = len(self.users)
        self.labels = {k: _column(v, np.float32, n, f"label {k!r}") for k, v in labels.items()}
        self.timestamps = None if timestamps is None else _column(timestamps, np.int64, n,
                                                                  "timestamps")
        self.propensity = None if propensity is None else _column(propensity, np.float32, n,
                                                                  "propensity")
        self.context = pd.DataFrame(index=pd.RangeIndex(n)) if context is None else \
            context.reset_index(drop=True)
        if len(self.context) != n:
            raise InputError(f"context has {len(self.context)} rows, expected {n}")
        self.user_map, self.item_map = user_map, item_map
        self.user_features, self.item_features = user_features, item_features
        self.name = name
        _check_range(self.users, len(user_map), "user")
        _check_range(self.items, len(item_map), "item")
        self.history = None if history is None else np.asarray(history, dtype=np.int64)
        if self.history is not None and (self.history.ndim != 2 or len(self.history) != n):
            raise InputError(f"history has shape {self.history.shape}, expected ({n}, L)")

    def __repr__(self) -> str:
        return (f"Events({self.name + ', ' if self.name else ''}{len(self)} events, "
                f"labels={list(self.labels)}, context={list(self.context.columns)})")

    def label(self, name: str) -> np.ndarray:
        """The label column ``name``."""
        if name not in self.labels:
            raise UnknownNameError(f"no label {name!r} (have {list(self.labels)})")
        return self.labels[name]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pandas(cls, frame: pd.DataFrame, labels: Sequence[str], user: str = "user",
                    item: str = "item", timestamp: str | None = None,
                    propensity: str | None = None, context: Sequence[str] | None = None,
                    *, source: str = "data frame", **kwargs: Any) -> Events:
        """Events from a frame: ``labels`` columns, ``timestamp`` (default: a ``timestamp``
        column if there is one), ``propensity`` and ``context`` columns (default: every
        other column). Bad values raise `DataFormatError` naming ``source``, the row and the
        column; ``kwargs`` go to the constructor (side tables, ``name``)."""
        return _build(frame, _Spec(user, item, tuple(labels), timestamp, propensity, context),
                      source, None, kwargs)

    @classmethod
    def read(cls, path: str | Path, labels: Sequence[str], user: str = "user",
             item: str = "item", timestamp: str | None = None, propensity: str | None = None,
             context: Sequence[str] | None = None, sep: str | None = None,
             encoding: str = "utf-8", **kwargs: Any) -> Events:
        """Read a CSV/TSV (with a header; ``sep`` from the extension unless given) or
        Parquet file; columns as in `from_pandas`. User, item and context columns of text
        files are read as text (zip codes keep leading zeros)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {'a folder' if path.is_dir() else 'no such file'}")
        spec = _Spec(user, item, tuple(labels), timestamp, propensity, context)
        if data_suffix(path) in PARQUET_SUFFIXES:
            frame, line_of_row = _read_parquet(path), None
        else:
            source = TextSource(path, sep or sniff_separator(path), header=True,
                                encoding=encoding)
            names = source.header_names()
            frame = read_table(source, text=[c for c in names if c not in spec.numeric()])
            line_of_row = source.line_of_row
        kwargs.setdefault("name", path.name)
        return _build(frame, spec, str(path), line_of_row, kwargs)

    @classmethod
    def from_movielens(cls, data: Interactions | str = "ml-100k", threshold: float = 4.0,
                       data_dir: str | Path | None = None) -> Events:
        """MovieLens ratings as a CTR problem: one event per rating, labels ``like``
        (``rating >= threshold``) and ``rating``, context ``hour`` (0-23) and ``weekday``
        (Monday 0) of the UTC timestamp, and the data's side tables (ML-100K: user
        ``age``, ``age_bucket``, ``gender``, ``occupation``, ``zip``; item ``genres``,
        ``year``, ``title``). ``data`` is a release name or loaded `Interactions`."""
        if isinstance(data, str):
            from recforge.data.movielens import load_movielens

            data = load_movielens(data, data_dir)
        if data.ratings is None or data.timestamps is None:
            raise InputError(f"{data.name or 'the data'}: MovieLens events need ratings and "
                             "timestamps")
        threshold = Real().check("threshold", threshold)
        return cls(data.users, data.items, user_map=data.user_map, item_map=data.item_map,
                   labels={"like": data.ratings >= threshold, "rating": data.ratings},
                   timestamps=data.timestamps, context=time_context(data.timestamps),
                   user_features=data.user_features, item_features=data.item_features,
                   name=data.name)

    # ------------------------------------------------------------------ views
    def subset(self, index: Any) -> Events:
        """The events at ``index`` (positions or a boolean mask), same maps and tables."""
        index = np.asarray(index)
        pick = None if self.propensity is None else self.propensity[index]
        return Events(self.users[index], self.items[index], user_map=self.user_map,
                      item_map=self.item_map, labels={k: v[index] for k, v in self.labels.items()},
                      timestamps=None if self.timestamps is None else self.timestamps[index],
                      context=self.context.iloc[index], propensity=pick,
                      user_features=self.user_features, item_features=self.item_features,
                      history=None if self.history is None else self.history[index],
                      name=self.name)

    def with_history(self, length: int = 20) -> Events:
        """These events with ``history``: each event's user's last ``length`` items before it
        in time order (equal timestamps in row order; row order without timestamps)."""
        from recforge.data.sequences import previous_items

        length = Integer(1, MAX_COUNT).check("length", length)
        out = self.subset(np.arange(len(self)))
        out.history = previous_items(self, length, ties="file-order")
        return out

    def split_by_time(self, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[Events, ...]:
        """Consecutive parts in time order (equal timestamps in row order): part ``k`` holds
        the events ranked ``[round(c_{k-1} n), round(c_k n))``, ``c_k`` the cumulative sum of
        ``fractions`` (which must sum to 1; rounding half up)."""
        if self.timestamps is None:
            raise InputError("split_by_time needs timestamps; these events have none")
        shares = np.array([FRACTION.check(f"fractions[{k}]", f) for k, f in enumerate(fractions)])
        if abs(shares.sum() - 1) > 1e-9:
            raise InputError(f"fractions must sum to 1, got {shares.sum():g}")
        order = np.argsort(self.timestamps, kind="stable")
        cuts = np.floor(np.concatenate([[0], np.cumsum(shares)]) * len(self) + 0.5).astype(int)
        return tuple(self.subset(np.sort(order[lo:hi])) for lo, hi in itertools.pairwise(cuts))

    def columns(self) -> dict[str, Any]:
        """Feature columns per event for `FeatureCodec`: the context columns, then the user
        and item side tables' columns taken at each event's user and item (multihot columns
        as ``(labels, CSR)``). A name in two of them raises `InputError`."""
        out = {str(c): _values(self.context[c]) for c in self.context.columns}
        for table, rows in ((self.user_features, self.users), (self.item_features, self.items)):
            for name, values in _side_columns(table, rows).items():
                if name in out:
                    raise InputError(f"feature column {name!r} is both in the context and a "
                                     "side table (or in both side tables)")
                out[name] = values
        return out


def concat_events(parts: Sequence[Events]) -> Events:
    """``parts`` one after another (rows in order); they must share their id maps and have
    the same labels and optional columns."""
    if not parts:
        raise InputError("no events to concatenate")
    first = parts[0]
    for part in parts[1:]:
        if part.user_map != first.user_map or part.item_map != first.item_map:
            raise InputError("events to concatenate must share their user and item maps")
        if list(part.labels) != list(first.labels):
            raise InputError(f"events to concatenate have labels {list(part.labels)} and "
                             f"{list(first.labels)}")

    def joined(name: str) -> np.ndarray | None:
        values = [getattr(p, name) for p in parts]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise InputError(f"some events to concatenate have {name}, others not")
        return np.concatenate(values)

    return Events(np.concatenate([p.users for p in parts]),
                  np.concatenate([p.items for p in parts]), user_map=first.user_map,
                  item_map=first.item_map,
                  labels={k: np.concatenate([p.labels[k] for p in parts]) for k in first.labels},
                  timestamps=joined("timestamps"), propensity=joined("propensity"),
                  context=pd.concat([p.context for p in parts], ignore_index=True),
                  history=joined("history"), user_features=first.user_features,
                  item_features=first.item_features, name=first.name)


# ---------------------------------------------------------------------- MovieLens
def time_context(timestamps: np.ndarray) -> pd.DataFrame:
    """``hour`` (0-23) and ``weekday`` (Monday 0) of UTC epoch seconds."""
    ts = np.asarray(timestamps, dtype=np.int64)
    return pd.DataFrame({"hour": (ts // HOUR) % 24, "weekday": (ts // DAY + _EPOCH_WEEKDAY) % 7})


def movielens_fields(year_bins: int = 10, ids: bool = False,
                     zip_prefix: int | None = None) -> list[Field]:
    """The CTR features of `Events.from_movielens` on ML-100K/1M: with ``ids`` the ``user``
    and ``item`` ids first; user ``gender``, ``occupation``, ``age_bucket`` and, with
    ``zip_prefix``, the first ``zip_prefix`` characters of ``zip`` (the region); item
    ``genres`` (multihot) and ``year`` (bucketised into ``year_bins`` quantile bins); context
    ``hour`` and ``weekday`` (categorical)."""
    fields = [Field("user", "categorical"), Field("item", "categorical")] if ids else []
    fields += [Field("gender", "categorical"), Field("occupation", "categorical"),
               Field("age_bucket", "categorical")]
    if zip_prefix is not None:
        fields.append(Field("zip", "categorical", prefix=zip_prefix))
    return fields + [Field("genres", "multihot"), Field("year", "bucketised", bins=year_bins),
                     Field("hour", "categorical"), Field("weekday", "categorical")]


# ---------------------------------------------------------------------- helpers
class _Spec:
    """Which frame columns are ids, labels, timestamp, propensity and context."""

    def __init__(self, user: str, item: str, labels: tuple[str, ...], timestamp: str | None,
                 propensity: str | None, context: Sequence[str] | None):
        if not labels:
            raise InputError("events need at least one label column")
        self.user, self.item, self.labels = user, item, labels
        self.timestamp, self.propensity = timestamp, propensity
        self.context = None if context is None else tuple(context)

    def numeric(self) -> set[str]:
        """Columns parsed as numbers."""
        return {*self.labels, self.timestamp or "timestamp", *filter(None, [self.propensity])}

    def resolve(self, columns: list[str], source: str, header_line: int | None) -> None:
        """Fill the defaults from the frame's ``columns`` and check every name is there
        (else `DataFormatError` at ``header_line``)."""
        if self.timestamp is None and "timestamp" in columns:
            self.timestamp = "timestamp"
        named = [self.user, self.item, *self.labels, self.timestamp, self.propensity]
        named = [c for c in named if c is not None]
        if self.context is None:
            self.context = tuple(c for c in columns if c not in named)
        for col in [*named, *self.context]:
            if col not in columns:
                raise DataFormatError(source, header_line, f"no column {col!r} (have {columns})")

    def kinds(self) -> dict[str, Kind]:
        kinds: dict[str, Kind] = {self.user: "id", self.item: "id"}
        kinds |= {label: "finite" for label in self.labels}
        if self.timestamp is not None:
            kinds[self.timestamp] = "int"
        if self.propensity is not None:
            kinds[self.propensity] = "finite"
        return kinds


def _build(frame: pd.DataFrame, spec: _Spec, source: str, line_of_row: Any,
           kwargs: dict[str, Any]) -> Events:
    """`Events` from a raw frame: columns resolved, values checked, ids mapped."""
    if len(frame) == 0:
        raise DataFormatError(source, None, "no events (the data is empty)")
    spec.resolve([str(c) for c in frame.columns], source, None if line_of_row is None else 1)
    checked = coerce_columns(frame, spec.kinds(), source, line_of_row)
    propensity = None
    if spec.propensity is not None:
        propensity = checked[spec.propensity].to_numpy()
        outside = (propensity <= 0) | (propensity > 1)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise row_error(source, row, f"{spec.propensity} {propensity[row]:g} is outside "
                                         "(0, 1]", line_of_row)
    user_map, users = IdMap.from_values(checked[spec.user].to_numpy())
    item_map, items = IdMap.from_values(checked[spec.item].to_numpy())
    for key, table, id_map in (("user_features", kwargs.get("user_features"), user_map),
                               ("item_features", kwargs.get("item_features"), item_map)):
        if table is not None:
            kwargs[key] = table.align(id_map)
    stamps = None if spec.timestamp is None else checked[spec.timestamp].to_numpy()
    return Events(users, items, user_map=user_map, item_map=item_map,
                  labels={label: checked[label].to_numpy() for label in spec.labels},
                  timestamps=stamps, context=frame[list(spec.context)],
                  propensity=propensity, **kwargs)


def _side_columns(table: SideTable | None, rows: np.ndarray) -> dict[str, Any]:
    """``table``'s columns taken at ``rows`` (multihot as ``(labels, CSR)``)."""
    if table is None:
        return {}
    out: dict[str, Any] = {k: v[rows] for kind in (table.categorical, table.numeric,
                                                   table.text) for k, v in kind.items()}
    out |= {k: (labels, matrix[rows]) for k, (labels, matrix) in table.multihot.items()}
    return out


def _values(column: pd.Series) -> Any:
    """A context column's values: a pandas Categorical stays one (the codec encodes each
    category once), anything else a numpy array."""
    return column.array if isinstance(column.dtype, pd.CategoricalDtype) else column.to_numpy()


def _column(values: Any, dtype: Any, n: int, what: str) -> np.ndarray:
    out = np.ascontiguousarray(values, dtype=dtype)
    if out.shape != (n,):
        raise InputError(f"{what} has shape {out.shape}, expected ({n},)")
    return out


def _check_range(index: np.ndarray, size: int, what: str) -> None:
    if len(index) and (index.min() < 0 or index.max() >= size):
        raise InputError(f"{what} index out of range of the {what} map ({size} ids)")
