"""Readers for the two formats CTR datasets are published in, as `Events` plus the `Field`
declarations that suit their columns (`CTRData`).

**libFM / libSVM** (`read_libfm`): one event per line, ``label idx:val idx:val ...`` or
``label field:idx:val ...`` (one or the other in a file; mixing them is an error). Blank
lines and ``#`` comments (to the end of the line) are skipped. The label is a number; a file
whose labels are all -1 or +1 (libSVM) gets 0/1 labels. Labels are stored as ``label``.
Every field becomes one context column, named ``names[k]`` or ``f{k}`` (``f{id}`` for field
ids), whose kind follows its entries:

* ``categorical``: every row has at most one index of the field, with value 1. The column
  holds the index as an integer (the codec reads it as text); rows without one are missing
  (nullable ``Int64``).
* ``numeric``: the field is a single index carrying real values. The column holds the value;
  a row without the entry holds 0 (sparse formats leave zeros out).
* ``multihot``: several indices per row, all with value 1: a list of the row's indices.
  A field with several indices and values other than 1 (weighted multi-hot, e.g. SVD++-style
  implicit feedback ``1/n``) is refused, naming the line. An index listed twice counts once.

Field boundaries of a file without field ids come from ``fields=[(start, stop), ...]``
(half-open index ranges, ``stop`` None for "no upper bound"; an index in no range is an
error) or are inferred: every row must hold the same number ``m`` of entries and, for each
``k``, the ``k``-th smallest index of every row must fall into an interval that overlaps no
other ``k``'s interval (the files one-hot encoders write: one index per field per row, each
field a contiguous block). Field ``k`` then spans ``[lo_k, lo_{k+1})`` (``lo_k`` the smallest
``k``-th index, the first from 0, the last unbounded), so a test file encoded the same way
reads with ``fields=data.ranges``. Anything else (rows of different lengths, e.g. multi-hot
fields or zeros left out, or overlapping intervals) is refused with a one-line error that
suggests ``fields=``.

Without ``user_field``/``item_field`` every row gets user and item index 0 of a one-id map
(``IdMap(["?"])``), so per-user metrics such as GAUC equal their global counterparts.
Parsing is vectorised over blocks of the file (byte scans with NumPy, numbers by pandas' C
parser); only a block where something looks wrong is scanned line by line to name the
first bad line.

**Criteo TSV** (`read_criteo`; `criteo_chunks` streams `Events` chunks, `criteo_to_parquet`
a Parquet copy): no header, tab-separated ``label`` (0/1),
``I1..I13`` (integers, possibly negative or empty) and ``C1..C26`` (hashed categories as hex
text, possibly empty). The numeric columns are transformed by ``numeric``:

* ``log_squared`` (default; the Criteo competition winners' treatment that FuxiCTR/BARS
  benchmarks use): ``floor(ln(x) ** 2)`` for ``x > 2``, ``x`` otherwise, declared
  ``categorical`` (every value kept: ``min_count`` 1);
* ``log1p``: ``sign(x) * log1p(|x|)``, declared ``numeric`` (the codec standardises it);
* ``bucketised``: the raw value, declared ``bucketised`` (quantile bins).

The categorical columns (pandas ``category`` dtype) are declared ``categorical`` with
``min_count``, or ``hashed`` into ``hashed_buckets`` buckets when that is given (very large
vocabularies). A line with the wrong number of columns, a non-numeric ``I`` value or a label
other than 0/1 raises `DataFormatError` naming the file, the line and the column.

**Parquet**: `write_events_parquet` writes chunks of events as row groups (memory: one
chunk) with the `Field` declarations in the schema metadata; `ParquetEvents` streams `Events`
chunks back (row groups in a seeded random order), so files far larger than memory can be
trained on; its ``fields`` are the stored declarations (empty for other files).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.codec import Field
from recforge.data.events import Events, concat_events
from recforge.data.interactions import IdMap, IdSpace, external_ids
from recforge.data.readers import (
    DataFormatError,
    TextSource,
    coerce_columns,
    open_parquet,
    row_error,
)
from recforge.errors import InputError, ParameterError, UnknownNameError
from recforge.params import MAX_COUNT, Choice, Integer, Optional, Text

LABEL = "label"
#: the Parquet schema metadata key holding the `Field` declarations as JSON
FIELDS_KEY = b"recforge.fields"
NUMERIC_TREATMENTS = ("log_squared", "log1p", "bucketised")
COUNT = Integer(1, MAX_COUNT)
#: bytes of a libFM file parsed at once (cut at a line end)
_BLOCK_BYTES = 1 << 24
#: indices and field ids must be exact in float64
_MAX_INDEX = 2**53
#: ASCII whitespace, as ``bytes.split()`` sees it
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 11, 12, 13, 32]] = True
_NUMBER = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass
class CTRData:
    """Events read from a CTR file and the codec declarations that suit their columns.
    ``ranges``: the libFM index range of each field (None for other sources)."""

    events: Events
    fields: list[Field]
    ranges: list[tuple[int, int | None]] | None = field(default=None)


def single_id_map() -> IdMap:
    """The map of data without users or items: one id ``"?"`` (index 0)."""
    return IdMap(np.array(["?"]))


def anonymous_events(labels: dict[str, Any], context: pd.DataFrame, name: str) -> Events:
    """Events whose rows all have user and item index 0 of `single_id_map`."""
    zeros = np.zeros(len(context), dtype=np.int32)
    return Events(zeros, zeros, user_map=single_id_map(), item_map=single_id_map(),
                  labels=labels, context=context, name=name)


# ====================================================================== libFM / libSVM
@dataclass
class _Entries:
    """A parsed libFM file: per row its line and label; per entry its row, field id (None
    without field ids), index and value."""

    lines: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    field_ids: np.ndarray | None
    index: np.ndarray
    values: np.ndarray

    def line(self, entry: int) -> int:
        return int(self.lines[self.rows[entry]])


def read_libfm(path: str | Path, *, fields: Sequence[tuple[int, int | None]] | None = None,
               names: Sequence[str] | None = None, user_field: str | None = None,
               item_field: str | None = None) -> CTRData:
    """Read a libFM/libSVM file (module docstring) into `CTRData`; a malformed line raises
    `DataFormatError` naming the file, the line and the problem."""
    path = _existing(path)
    entries = _parse_libfm(path)
    if entries.field_ids is not None:
        if fields is not None:
            raise InputError(f"{path}: the file gives field ids (field:idx:val); fields= is for "
                             "files without them")
        ids = np.unique(entries.field_ids)
        position = np.searchsorted(ids, entries.field_ids)
        default_names = [f"f{i}" for i in ids.tolist()]
        ranges = None
    else:
        ranges = _check_ranges(fields) if fields is not None else _infer_ranges(entries, path)
        position = _range_position(entries, ranges, path)
        default_names = [f"f{k}" for k in range(len(ranges))]
    column_names = _column_names(names, default_names)
    context, declared = _field_columns(entries, position, column_names, path)
    labels = entries.labels
    if np.isin(labels, (-1.0, 1.0)).all():
        labels = (labels > 0).astype(np.float64)
    events = _events_with_ids(context, {LABEL: labels}, user_field, item_field, entries,
                              declared, path)
    return CTRData(events, declared, ranges)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {'a folder' if path.is_dir() else 'no such file'}")
    return path


def line_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream in pieces of about `_BLOCK_BYTES`, each ending with a newline."""
    rest = b""
    while True:
        data = stream.read(_BLOCK_BYTES)
        if not data:
            if rest:
                yield rest + b"\n"
            return
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]


def _parse_libfm(path: Path) -> _Entries:
    parts: list[_Entries] = []
    line, n_rows, colons = 1, 0, 0
    with TextSource(path, " ").open_binary() as stream:
        for data in line_blocks(stream):
            block, colons = _parse_block(data, line, path, colons)
            block.rows += n_rows
            n_rows += len(block.labels)
            parts.append(block)
            line += data.count(b"\n")
    if n_rows == 0:
        raise DataFormatError(path, None, "the file is empty (no data lines)")
    joined = {k: np.concatenate([getattr(p, k) for p in parts])
              for k in ("lines", "labels", "rows", "index", "values")}
    fids = np.concatenate([p.field_ids for p in parts]) if colons == 2 else None
    return _Entries(field_ids=fids, **joined)


def _parse_block(data: bytes, first_line: int, path: Path,
                 colons_seen: int) -> tuple[_Entries, int]:
    """Parse one block (vectorised); on any sign of trouble find the first bad line. Returns
    the entries (rows numbered from 0) and the entries' colon count (0 while none seen)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    raw = _blank_comments(raw, newlines)
    space = _SPACE[raw]
    before = np.concatenate([[True], space[:-1]])
    after = np.concatenate([space[1:], [True]])
    starts = np.flatnonzero(~space & before)
    ends = np.flatnonzero(~space & after) + 1
    token_line = np.searchsorted(newlines, starts)
    is_label = np.ones(len(starts), dtype=bool)
    is_label[1:] = token_line[1:] != token_line[:-1]
    colon = raw == 58
    counted = np.concatenate([[0], np.cumsum(colon, dtype=np.int64)])
    colons = counted[ends] - counted[starts]
    entry_colons = colons[~is_label]
    fmt = colons_seen or (int(entry_colons[0]) if len(entry_colons) else 0)
    empty_piece = colon & (np.concatenate([[True], space[:-1] | colon[:-1]])
                           | np.concatenate([space[1:] | colon[1:], [True]]))
    trouble = (colons[is_label].any() or (len(entry_colons) and (
        fmt not in (1, 2) or (entry_colons != fmt).any())) or empty_piece.any())
    values = None if trouble else _piece_values(raw, space, colon, int(colons.sum()) + len(starts))
    if values is None or not _plausible(values, colons, is_label, fmt):
        raise _first_bad_line(data, first_line, path, colons_seen)
    piece = np.concatenate([[0], np.cumsum(colons + 1)])[:-1]
    entry_piece = piece[~is_label]
    rows = np.cumsum(is_label)[~is_label] - 1
    index = values[entry_piece + fmt - 1].astype(np.int64) if fmt else np.zeros(0, np.int64)
    return _Entries(
        lines=first_line + token_line[is_label], labels=values[piece[is_label]], rows=rows,
        field_ids=values[entry_piece].astype(np.int64) if fmt == 2 else np.zeros(len(rows), np.int64),
        index=index,
        values=values[entry_piece + fmt] if fmt else np.zeros(0)), fmt


def _blank_comments(raw: np.ndarray, newlines: np.ndarray) -> np.ndarray:
    """``raw`` with every ``#`` comment (to the end of its line) turned into spaces."""
    hashes = np.flatnonzero(raw == 35)
    if not len(hashes):
        return raw
    line = np.searchsorted(newlines, hashes)
    first = np.concatenate([[True], line[1:] != line[:-1]])
    edges = np.zeros(len(raw) + 1, dtype=np.int8)
    edges[hashes[first]] = 1
    edges[newlines[line[first]]] = -1
    out = raw.copy()
    out[np.cumsum(edges[:-1], dtype=np.int8) > 0] = 32
    return out


def _piece_values(raw: np.ndarray, space: np.ndarray, colon: np.ndarray,
                  expected: int) -> np.ndarray | None:
    """The numbers between whitespace and colons, in order (None when they do not parse as
    ``expected`` finite numbers)."""
    if expected == 0:
        return np.zeros(0)
    cut = space | colon
    keep = ~cut | np.concatenate([[False], ~cut[:-1]])
    text = np.where(cut, np.uint8(10), raw)[keep].tobytes()
    try:
        parsed = pd.read_csv(io.BytesIO(text), header=None, sep="\x1f", quoting=csv.QUOTE_NONE,
                             keep_default_na=False, na_values=[], encoding="latin-1",
                             engine="c", skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return None
    if parsed.shape != (expected, 1) or not pd.api.types.is_numeric_dtype(parsed.iloc[:, 0]):
        return None
    values = parsed.iloc[:, 0].to_numpy(dtype=np.float64)
    return values if np.isfinite(values).all() else None


def _plausible(values: np.ndarray, colons: np.ndarray, is_label: np.ndarray, fmt: int) -> bool:
    """Whether the field ids and indices are non-negative integers below `_MAX_INDEX`."""
    piece = np.concatenate([[0], np.cumsum(colons + 1)])[:-1][~is_label]
    ints = values[np.concatenate([piece + k for k in range(fmt)])] if fmt else values[:0]
    return bool(((ints >= 0) & (ints < _MAX_INDEX) & (ints == np.floor(ints))).all())


def _first_bad_line(data: bytes, first_line: int, path: Path,
                    colons_seen: int) -> DataFormatError:
    """Scan a block line by line for its first problem (the slow path)."""
    fmt = colons_seen
    for number, line in enumerate(data.split(b"\n"), start=first_line):
        tokens = line.split(b"#", 1)[0].split()
        if not tokens:
            continue
        problem = _label_problem(tokens[0])
        for token in tokens[1:]:
            if problem:
                break
            fmt = fmt or token.count(b":")
            problem = _entry_problem(token, fmt)
        if problem:
            return DataFormatError(path, number, problem)
    return DataFormatError(path, None, "cannot parse the file as libFM/libSVM")


def _show(token: bytes) -> str:
    return repr(token.decode("latin-1"))


def _label_problem(token: bytes) -> str | None:
    if b":" in token:
        return f"missing label (the line starts with the entry {_show(token)})"
    if not _NUMBER.fullmatch(token) or not np.isfinite(float(token)):
        return f"non-numeric label {_show(token)}"
    return None


def _entry_problem(token: bytes, fmt: int) -> str | None:
    """What is wrong with the entry ``token`` in a file whose entries have ``fmt`` colons."""
    parts = token.split(b":")
    if len(parts) not in (2, 3) or not all(parts):
        return f"bad token {_show(token)} (expected idx:val or field:idx:val)"
    if len(parts) - 1 != fmt:
        kinds = {1: "idx:val", 2: "field:idx:val"}
        return (f"entry {_show(token)} mixes {kinds[len(parts) - 1]} with the file's earlier "
                f"{kinds.get(fmt, '?')} entries")
    *ints, value = parts
    for what, part in zip(("field id", "index")[-len(ints):], ints):
        if not _NUMBER.fullmatch(part) or not float(part).is_integer():
            return f"{what} {_show(part)} is not an integer in {_show(token)}"
        if float(part) < 0:
            return f"negative {what} {_show(part)} in {_show(token)}"
        if float(part) >= _MAX_INDEX:
            return f"{what} {_show(part)} is too large in {_show(token)}"
    if not _NUMBER.fullmatch(value) or not np.isfinite(float(value)):
        return f"non-numeric value {_show(value)} in {_show(token)}"
    return None


# ---------------------------------------------------------------------- fields
def _check_ranges(fields: Sequence[Any]) -> list[tuple[int, int | None]]:
    """Explicit ``(start, stop)`` ranges, checked: ``0 <= start < stop``, not overlapping."""
    if not isinstance(fields, (list, tuple)) or not fields:
        raise ParameterError(f"fields: must be a non-empty list of (start, stop) index ranges, "
                             f"got {fields!r}")
    ranges = []
    for k, pair in enumerate(fields):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ParameterError(f"fields[{k}]: must be a (start, stop) pair, got {pair!r}")
        start = Integer(0).check(f"fields[{k}] start", pair[0])
        stop = Optional(Integer(start + 1)).check(f"fields[{k}] stop", pair[1])
        ranges.append((start, stop))
    ordered = sorted(ranges)
    for (lo, hi), (next_lo, _) in itertools.pairwise(ordered):
        if hi is None or hi > next_lo:
            raise ParameterError(f"fields: the ranges {(lo, hi)} and starting at {next_lo} "
                                 "overlap")
    return ranges


def _infer_ranges(entries: _Entries, path: Path) -> list[tuple[int, int | None]]:
    """Field ranges from the rows' sorted indices (module docstring), or a one-line error."""
    hint = "; pass the fields' index ranges explicitly: fields=[(start, stop), ...]"
    n_rows = len(entries.labels)
    counts = np.bincount(entries.rows, minlength=n_rows)
    if (counts != counts[0]).any():
        other = int(np.flatnonzero(counts != counts[0])[0])
        raise DataFormatError(path, None, f"cannot infer the field boundaries: rows hold "
                              f"different numbers of entries (line {entries.lines[0]}: "
                              f"{counts[0]}, line {entries.lines[other]}: {counts[other]}){hint}")
    m = int(counts[0])
    if m == 0:
        return []
    table = np.sort(entries.index.reshape(n_rows, m), axis=1)  # entries are in row order
    low, high = table.min(axis=0), table.max(axis=0)
    overlap = np.flatnonzero(high[:-1] >= low[1:])
    if len(overlap):
        k = int(overlap[0])
        raise DataFormatError(path, None, f"cannot infer the field boundaries: the rows' "
                              f"{_nth(k + 1)} smallest indices span {low[k]}..{high[k]} and "
                              f"their {_nth(k + 2)} smallest {low[k + 1]}..{high[k + 1]}, "
                              f"which overlap{hint}")
    starts = [0, *low[1:].tolist()]
    return list(zip(starts, [*starts[1:], None]))


def _nth(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _range_position(entries: _Entries, ranges: list[tuple[int, int | None]],
                    path: Path) -> np.ndarray:
    """The position in ``ranges`` of every entry's index (an index in none is an error)."""
    order = np.argsort([lo for lo, _ in ranges], kind="stable")
    starts = np.array([ranges[k][0] for k in order], dtype=np.int64)
    stops = np.array([_MAX_INDEX if ranges[k][1] is None else ranges[k][1] for k in order],
                     dtype=np.int64)
    at = np.searchsorted(starts, entries.index, side="right") - 1
    outside = (at < 0) | (entries.index >= stops[at.clip(0)])
    if outside.any():
        e = int(np.flatnonzero(outside)[0])
        raise DataFormatError(path, entries.line(e), f"index {entries.index[e]} is in none of "
                              f"the fields' ranges {ranges}")
    return order[at]


def _column_names(names: Sequence[str] | None, default: list[str]) -> list[str]:
    if names is None:
        return default
    names = [Text(r"[^/\x00]+", "a non-empty name").check(f"names[{k}]", n)
             for k, n in enumerate(names)]
    if len(names) != len(default):
        raise ParameterError(f"names: the file has {len(default)} fields, got {len(names)} "
                             "names")
    if len(set(names)) != len(names):
        raise ParameterError(f"names: a name is given twice in {names}")
    return names


def _field_columns(entries: _Entries, position: np.ndarray, names: list[str],
                   path: Path) -> tuple[pd.DataFrame, list[Field]]:
    """One context column per field, of the kind its entries suit (module docstring)."""
    n_rows = len(entries.labels)
    small = position.astype(np.int16) if len(names) < 2**15 else position
    by_field = np.argsort(small, kind="stable")  # a radix sort for int16
    bounds = np.searchsorted(position[by_field], np.arange(len(names) + 1))
    columns, declared = {}, []
    for k, name in enumerate(names):
        picked = by_field[bounds[k]:bounds[k + 1]]
        kind, column = _field_column(entries, picked, n_rows, name, path)
        columns[name] = column
        declared.append(Field(name, kind))
    return pd.DataFrame(columns, index=pd.RangeIndex(n_rows)), declared


def _field_column(entries: _Entries, picked: np.ndarray, n_rows: int, name: str,
                  path: Path) -> tuple[str, Any]:
    rows, index, values = entries.rows[picked], entries.index[picked], entries.values[picked]
    single = not (rows[1:] == rows[:-1]).any()
    ones = values == 1
    if single and ones.all():
        present = np.zeros(n_rows, dtype=bool)
        present[rows] = True
        full = np.zeros(n_rows, dtype=np.int64)
        full[rows] = index
        return "categorical", pd.arrays.IntegerArray(full, ~present)
    if single and (index == index[0]).all():
        full = np.zeros(n_rows, dtype=np.float64)
        full[rows] = values
        return "numeric", full
    bad = int(picked[np.flatnonzero(~ones)[0]]) if not ones.all() else None
    if bad is not None:
        token = f"{entries.index[bad]}:{entries.values[bad]:g}"
        raise DataFormatError(path, entries.line(bad), f"field {name!r} has several indices and "
                              f"the value {token}: a field holds one index with value 1 per row "
                              "(categorical), indices with value 1 (multi-hot) or one index "
                              "with real values (numeric); weighted multi-hot fields are not "
                              "supported")
    order = np.lexsort((index, rows))
    cuts = np.searchsorted(rows[order], np.arange(1, n_rows))
    lists = [part.tolist() for part in np.split(index[order], cuts)]
    return "multihot", pd.Series(lists, dtype=object).to_numpy()


def _events_with_ids(context: pd.DataFrame, labels: dict[str, Any], user_field: str | None,
                     item_field: str | None, entries: _Entries, declared: list[Field],
                     path: Path) -> Events:
    """Events whose users and items are the values of the named categorical fields."""
    kinds = {f.name: f.kind for f in declared}
    maps, indices = [], []
    for role, name in (("user", user_field), ("item", item_field)):
        if name is None:
            maps.append(single_id_map())
            indices.append(np.zeros(len(context), dtype=np.int32))
            continue
        if name not in kinds:
            raise UnknownNameError(f"{path}: no field {name!r} for the {role}s (have "
                                   f"{list(kinds)})")
        if kinds[name] != "categorical":
            raise InputError(f"{path}: the {role} field {name!r} is {kinds[name]}; it must hold "
                             "one index per row (categorical)")
        values = context[name].array
        if values.isna().any():
            row = int(np.flatnonzero(values.isna())[0])
            raise DataFormatError(path, int(entries.lines[row]), f"no {role} (field {name!r})")
        id_map, index = IdMap.from_values(values.to_numpy(dtype=np.int64))
        maps.append(id_map)
        indices.append(index)
    return Events(indices[0], indices[1], user_map=maps[0], item_map=maps[1], labels=labels,
                  context=context, name=path.name)


# ====================================================================== Criteo TSV
def criteo_columns(n_numeric: int = 13, n_categorical: int = 26) -> list[str]:
    """``label, I1..I{n_numeric}, C1..C{n_categorical}``."""
    return [LABEL, *numeric_names(n_numeric), *categorical_names(n_categorical)]


def numeric_names(n: int) -> list[str]:
    return [f"I{k}" for k in range(1, n + 1)]


def categorical_names(n: int) -> list[str]:
    return [f"C{k}" for k in range(1, n + 1)]


def criteo_fields(n_numeric: int = 13, n_categorical: int = 26, *,
                  numeric: str = "log_squared", min_count: int = 10,
                  hashed_buckets: int | None = None) -> list[Field]:
    """The declarations of Criteo-style columns (module docstring)."""
    numeric = Choice(*NUMERIC_TREATMENTS).check("numeric", numeric)
    kind = {"log_squared": "categorical", "log1p": "numeric", "bucketised": "bucketised"}[numeric]
    out = [Field(name, kind) for name in numeric_names(n_numeric)]
    if hashed_buckets is not None:
        buckets = COUNT.check("hashed_buckets", hashed_buckets)
        return out + [Field(c, "hashed", buckets=buckets) for c in categorical_names(n_categorical)]
    return out + [Field(c, "categorical", min_count=min_count)
                  for c in categorical_names(n_categorical)]


def transform_numeric(values: np.ndarray, numeric: str) -> np.ndarray:
    """Raw Criteo integer values (NaN for missing) as stored under ``numeric``."""
    values = np.asarray(values, dtype=np.float64)
    if numeric == "log1p":
        return np.sign(values) * np.log1p(np.abs(values))
    if numeric == "log_squared":
        with np.errstate(invalid="ignore", divide="ignore"):
            squared = np.floor(np.log(np.where(values > 2, values, 3.0)) ** 2)
        return np.where(values > 2, squared, values)
    return values


def criteo_data(frame: pd.DataFrame, *, n_numeric: int = 13, n_categorical: int = 26,
                numeric: str = "log_squared", min_count: int = 10,
                hashed_buckets: int | None = None, name: str = "") -> CTRData:
    """`CTRData` of a raw Criteo-style frame (``label``, raw ``I*``, ``C*`` columns)."""
    fields = criteo_fields(n_numeric, n_categorical, numeric=numeric, min_count=min_count,
                           hashed_buckets=hashed_buckets)
    return CTRData(criteo_events(frame, n_numeric, numeric, name), fields)


def criteo_events(frame: pd.DataFrame, n_numeric: int, numeric: str, name: str) -> Events:
    context = frame.drop(columns=[LABEL])
    for column in numeric_names(n_numeric):
        context[column] = transform_numeric(context[column].to_numpy(dtype=np.float64,
                                                                     na_value=np.nan), numeric)
    return anonymous_events({LABEL: frame[LABEL].to_numpy()}, context, name)


def read_criteo(path: str | Path, *, nrows: int | None = None, numeric: str = "log_squared",
                min_count: int = 10, hashed_buckets: int | None = None, n_numeric: int = 13,
                n_categorical: int = 26, chunk_rows: int = 1 << 20) -> CTRData:
    """Read a Criteo-style TSV (module docstring), the first ``nrows`` data rows when given;
    a bad line raises `DataFormatError` naming the file, the line and the column."""
    path = _existing(path)
    options = {"n_numeric": n_numeric, "n_categorical": n_categorical}
    fields = {"numeric": numeric, "min_count": min_count, "hashed_buckets": hashed_buckets}
    criteo_fields(**options, **fields)  # bad options fail before the file is read
    frames = list(criteo_frames(path, chunk_rows, nrows=nrows, **options))
    return criteo_data(concat_frames(frames), **options, **fields, name=path.name)


def criteo_chunks(path: str | Path, chunk_rows: int, *, nrows: int | None = None,
                  numeric: str = "log_squared", n_numeric: int = 13,
                  n_categorical: int = 26) -> Iterator[Events]:
    """The TSV as `Events` of at most ``chunk_rows`` rows each (file order); declare the
    fields with `criteo_fields`."""
    Choice(*NUMERIC_TREATMENTS).check("numeric", numeric)
    path = _existing(path)
    for frame in criteo_frames(path, chunk_rows, nrows=nrows, n_numeric=n_numeric,
                               n_categorical=n_categorical):
        yield criteo_events(frame, n_numeric, numeric, path.name)


def criteo_frames(path: str | Path, chunk_rows: int, *, nrows: int | None = None,
                  n_numeric: int = 13, n_categorical: int = 26) -> Iterator[pd.DataFrame]:
    """Raw frames of at most ``chunk_rows`` data rows: ``label`` (0/1 float), ``I*``
    (float64, NaN when empty) and ``C*`` (category, NaN when empty). Blank lines are
    skipped."""
    chunk_rows = COUNT.check("chunk_rows", chunk_rows)
    nrows = Optional(COUNT).check("nrows", nrows)
    path = Path(path)
    columns = criteo_columns(Integer(0, 10_000).check("n_numeric", n_numeric),
                             Integer(0, 10_000).check("n_categorical", n_categorical))
    source = TextSource(path, "\t")
    done, line, empty = 0, 0, True
    with source.open_binary() as stream:
        while nrows is None or done < nrows:
            take = chunk_rows if nrows is None else min(chunk_rows, nrows - done)
            lines = list(itertools.islice(stream, take))
            if not lines:
                break
            numbers = np.arange(line + 1, line + 1 + len(lines))
            line += len(lines)
            lines, numbers = _full_lines(lines, numbers, len(columns), path)
            if lines:
                empty = False
                frame = _criteo_frame(lines, numbers, columns, n_numeric, source)
                done += len(frame)
                yield frame
    if empty:
        raise DataFormatError(path, None, "the file is empty")


def _full_lines(lines: list[bytes], numbers: np.ndarray, n_columns: int,
                path: Path) -> tuple[list[bytes], np.ndarray]:
    """The non-blank lines (with their numbers); one with a wrong column count raises."""
    tabs = np.fromiter((ln.count(b"\t") for ln in lines), dtype=np.int64, count=len(lines))
    bad = np.flatnonzero(tabs != n_columns - 1)
    if not len(bad):
        return lines, numbers
    for i in bad.tolist():
        if lines[i].strip():
            raise DataFormatError(path, int(numbers[i]), f"expected {n_columns} tab-separated "
                                  f"columns (label, I1.., C1..), found {tabs[i] + 1}")
    keep = np.ones(len(lines), dtype=bool)
    keep[bad] = False
    return [lines[i] for i in np.flatnonzero(keep).tolist()], numbers[keep]


def _criteo_frame(lines: list[bytes], numbers: np.ndarray, columns: list[str], n_numeric: int,
                  source: TextSource) -> pd.DataFrame:
    """Parse complete lines; check the label (0/1) and the numeric columns."""
    dtype = {c: "category" for c in columns[1 + n_numeric:]}
    try:
        frame = pd.read_csv(io.BytesIO(b"".join(lines)), sep="\t", header=None, names=columns,
                            dtype=dtype, keep_default_na=False, na_values=[""],
                            quoting=csv.QUOTE_NONE, engine="c", skip_blank_lines=False)
    except UnicodeDecodeError:
        raise source.encoding_error() from None
    line_of_row = numbers.__getitem__
    kinds = {LABEL: "finite", **{c: "float" for c in columns[1:1 + n_numeric]}}
    frame = coerce_columns(frame, kinds, source.path, lambda r: int(line_of_row(r)))
    label = frame[LABEL].to_numpy()
    outside = (label != 0) & (label != 1)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise row_error(source.path, row, f"label {label[row]:g} is not 0 or 1",
                        lambda r: int(line_of_row(r)))
    return frame


def concat_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frames stacked; category columns keep the union of their categories."""
    if len(frames) == 1:
        return frames[0]
    out = {}
    for column in frames[0].columns:
        parts = [f[column] for f in frames]
        if isinstance(parts[0].dtype, pd.CategoricalDtype):
            out[column] = pd.api.types.union_categoricals(parts, ignore_order=True)
        else:
            out[column] = np.concatenate([p.to_numpy() for p in parts])
    return pd.DataFrame(out)


# ====================================================================== Parquet
class ParquetEvents(IdSpace):
    """`Events` chunks of a Parquet file (module docstring): ``label_columns`` as labels,
    optional ``user``/``item`` id columns (mapped by the id rule over the whole file; without
    them `single_id_map`), the other columns (or ``context``) as context."""

    def __init__(self, path: str | Path, label_columns: Sequence[str], *,
                 chunk_rows: int = 1 << 20, user: str | None = None, item: str | None = None,
                 context: Sequence[str] | None = None):
        self.path = Path(path)
        self.chunk_rows = COUNT.check("chunk_rows", chunk_rows)
        self._file = open_parquet(self.path)
        names = self._file.schema_arrow.names
        self.labels = list(label_columns)
        if not self.labels:
            raise InputError("events need at least one label column")
        ids = [c for c in (user, item) if c is not None]
        self.context = [c for c in names if c not in {*self.labels, *ids}] if context is None \
            else list(context)
        for column in {*self.labels, *ids, *self.context}:
            if column not in names:
                raise UnknownNameError(f"{self.path}: no column {column!r} (have {names})")
        self.user, self.item = user, item
        metadata = self._file.metadata
        self.n_rows = metadata.num_rows
        sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.fields = stored_fields(self._file.schema_arrow.metadata or {})
        self.user_map = self._id_map(user)
        self.item_map = self._id_map(item)

    def __len__(self) -> int:
        return self.n_rows

    #: what a model's `fit` reads of its training data (`PairData`): no explicit ratings
    ratings = None

    @cached_property
    def binary_csr(self) -> sp.csr_matrix:
        """User x item 0/1 matrix of the file's (user, item) pairs (one pass over the ids)."""
        users, items = [], []
        for chunk in self._id_chunks():
            users.append(chunk[0])
            items.append(chunk[1])
        users_all, items_all = np.concatenate(users), np.concatenate(items)
        matrix = sp.csr_matrix((np.ones(len(users_all), np.float32), (users_all, items_all)),
                               shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    @cached_property
    def user_counts(self) -> np.ndarray:
        """Events per user (one pass over the ids)."""
        return self._counts(0, self.n_users)

    @cached_property
    def item_counts(self) -> np.ndarray:
        """Events per item (one pass over the ids)."""
        return self._counts(1, self.n_items)

    def _counts(self, which: int, size: int) -> np.ndarray:
        out = np.zeros(size, dtype=np.int64)
        for chunk in self._id_chunks():
            out += np.bincount(chunk[which], minlength=size)
        return out

    def _id_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(user, item) index arrays chunk by chunk (zeros without id columns)."""
        if self.user is None and self.item is None:
            yield (np.zeros(self.n_rows, np.int32), np.zeros(self.n_rows, np.int32))
            return
        columns = [c for c in (self.user, self.item) if c is not None]
        for _, _, frame in self._frames(range(self._file.num_row_groups), columns):
            yield tuple(np.zeros(len(frame), np.int32) if column is None else
                        id_map.to_index(external_ids(frame[column].to_numpy())).astype(np.int32)
                        for column, id_map in ((self.user, self.user_map),
                                               (self.item, self.item_map)))

    def head(self, rows: int) -> Events:
        """The file's first ``rows`` events (whole chunks; at least one chunk)."""
        parts, taken = [], 0
        for chunk in self.chunks():
            parts.append(chunk)
            taken += len(chunk)
            if taken >= rows:
                break
        return parts[0] if len(parts) == 1 else concat_events(parts)

    def __repr__(self) -> str:
        return f"ParquetEvents({str(self.path)!r}, {self.n_rows} events, labels={self.labels})"

    def chunks(self, rng: np.random.Generator | None = None) -> Iterator[Events]:
        """Events of at most ``chunk_rows`` rows, row group by row group in file order, or in
        a random order of row groups drawn from ``rng``."""
        groups = np.arange(self._file.num_row_groups)
        if rng is not None:
            groups = rng.permutation(groups)
        columns = list(dict.fromkeys([*self.labels, *filter(None, (self.user, self.item)),
                                      *self.context]))
        for _, first, frame in self._frames(groups.tolist(), columns):
            yield self._events(frame, first)

    def _frames(self, groups: Iterable[int],
                columns: list[str]) -> Iterator[tuple[int, int, pd.DataFrame]]:
        import pyarrow as pa

        try:
            for group in groups:
                first = int(self._offsets[group])
                for batch in self._file.iter_batches(self.chunk_rows, row_groups=[group],
                                                     columns=columns):
                    yield group, first, batch.to_pandas()
                    first += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise DataFormatError(self.path, None, f"cannot read ({exc})") from None

    def _events(self, frame: pd.DataFrame, first: int) -> Events:
        labels = {}
        for name in self.labels:
            values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(values)
            if bad.any():
                row = first + int(np.flatnonzero(bad)[0])
                raise row_error(self.path, row, f"missing or non-finite label {name!r}", None)
            labels[name] = values
        ids = [np.zeros(len(frame), dtype=np.int32) if column is None else
               id_map.to_index(external_ids(frame[column].to_numpy())).astype(np.int32)
               for column, id_map in ((self.user, self.user_map), (self.item, self.item_map))]
        return Events(ids[0], ids[1], user_map=self.user_map, item_map=self.item_map,
                      labels=labels, context=frame[self.context], name=self.path.name)

    def _id_map(self, column: str | None) -> IdMap:
        if column is None:
            return single_id_map()
        distinct = []
        for _, first, frame in self._frames(range(self._file.num_row_groups), [column]):
            values = frame[column]
            if values.isna().any():
                row = first + int(np.flatnonzero(values.isna().to_numpy())[0])
                raise row_error(self.path, row, f"missing {column}", None)
            distinct.append(pd.unique(values.to_numpy()))
        if not distinct:
            raise DataFormatError(self.path, None, "no events (the file is empty)")
        return IdMap.from_values(pd.unique(np.concatenate(distinct)))[0]


def write_events_parquet(path: str | Path, frames: Iterable[pd.DataFrame],
                         fields: Sequence[Field]) -> Path:
    """Write frames (labels and context columns, the same in each) to one Parquet file, one
    row group per frame (atomic; memory: one frame). Category and text columns are stored as
    dictionaries (read back as pandas categories), ``fields`` in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recforge.io import atomic_path

    with atomic_path(path) as tmp:
        writer = None
        try:
            for frame in frames:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    schema = pa.schema(
                        [pa.field(f.name, pa.dictionary(pa.int32(), pa.string()))
                         if _is_text(f.type) else f for f in table.schema],
                        metadata={**(table.schema.metadata or {}), **fields_metadata(fields)})
                    writer = pq.ParquetWriter(tmp, schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
    return Path(path)


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def criteo_to_parquet(tsv: str | Path, path: str | Path, *, chunk_rows: int = 1 << 18,
                      numeric: str = "log_squared", min_count: int = 10,
                      hashed_buckets: int | None = None, n_numeric: int = 13,
                      n_categorical: int = 26) -> Path:
    """Stream a Criteo TSV into a Parquet file for `ParquetEvents` (``label``, the
    transformed ``I*``, the ``C*`` categories; `criteo_fields` stored), one row group per
    ``chunk_rows`` rows."""
    fields = criteo_fields(n_numeric, n_categorical, numeric=numeric, min_count=min_count,
                           hashed_buckets=hashed_buckets)
    chunks = criteo_chunks(tsv, chunk_rows, numeric=numeric, n_numeric=n_numeric,
                           n_categorical=n_categorical)
    return write_events_parquet(path, (_with_label(events) for events in chunks), fields)


def _with_label(events: Events) -> pd.DataFrame:
    return events.context.assign(**{LABEL: events.label(LABEL).astype(np.int8)})


def fields_metadata(fields: Sequence[Field]) -> dict[bytes, bytes]:
    """Parquet schema metadata that stores ``fields`` (read back by `stored_fields`)."""
    import dataclasses

    return {FIELDS_KEY: json.dumps([dataclasses.asdict(f) for f in fields]).encode()}


def stored_fields(metadata: dict[bytes, bytes]) -> list[Field]:
    """The `Field` s stored by `fields_metadata` (none when absent)."""
    if FIELDS_KEY not in metadata:
        return []
    try:
        return [Field(**spec) for spec in json.loads(metadata[FIELDS_KEY])]
    except (TypeError, ValueError) as exc:
        raise InputError(f"the stored field declarations are not valid ({exc})") from None
