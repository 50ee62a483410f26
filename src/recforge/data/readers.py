"""Read interaction logs (CSV, TSV, ``::``-separated, Parquet) with precise error locations.

The happy path is a single pandas C-engine parse. Only when something looks wrong (a parser
error, a column count that does not match, missing values in the last column, a value of the
wrong type) is the file scanned again in Python to find the 1-based line of the first problem,
which `DataFormatError` reports together with the file name.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions, external_ids
from recforge.errors import InputError, ParameterError

#: ``id``: external ids (`external_ids`); ``int``: integral int64; ``float``: numeric or empty;
#: ``finite``: a present, finite number
Kind = Literal["id", "int", "float", "finite"]

#: recforge interaction fields, in the order assumed for header-less files
FIELDS = ("user", "item", "rating", "timestamp", "weight")
FIELD_KINDS: dict[str, Kind] = {
    "user": "id", "item": "id", "rating": "finite", "timestamp": "int", "weight": "finite",
}
#: ratings outside this span draw a `RatingScaleWarning` unless a rating range is declared
PLAUSIBLE_RATINGS = (0.0, 10.0)
SEPARATORS = {".csv": ",", ".tsv": "\t", ".dat": "::"}
PARQUET_SUFFIXES = (".parquet", ".pq")
_OPENERS: dict[str, Callable[..., IO[bytes]]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
#: multi-character separators are rewritten to this byte so the C parser can split on it
_UNIT_SEP = "\x1f"


class RatingScaleWarning(UserWarning):
    """Ratings outside every usual scale, read without a declared rating range."""


class DataFormatError(InputError):
    """A data file is malformed: ``path``, 1-based ``line`` (None when not line-bound), ``problem``."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = " ".join(problem.split())  # one line, whatever a parser said
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {self.problem}")


@dataclass(frozen=True)
class TextSource:
    """A delimited text file: where it is and how to split it into records.

    ``sep`` may be several characters (MovieLens ``::``). ``quoted`` enables CSV quoting;
    MovieLens ``.dat`` and ``u.*`` files have none (titles may contain a bare ``"``).
    """

    path: Path
    sep: str
    header: bool = False
    encoding: str = "utf-8"
    quoted: bool = True

    @property
    def delimiter(self) -> str:
        return self.sep if len(self.sep) == 1 else _UNIT_SEP

    @property
    def quoting(self) -> int:
        return csv.QUOTE_MINIMAL if self.quoted else csv.QUOTE_NONE

    def open_binary(self) -> IO[bytes]:
        """The file's bytes, decompressed by suffix (``.gz``, ``.bz2``, ``.xz``)."""
        opener = _OPENERS.get(self.path.suffix.lower(), open)
        return opener(self.path, "rb")

    def pandas_input(self) -> IO[bytes]:
        """A byte stream the C parser can split on `delimiter`."""
        stream = self.open_binary()
        if len(self.sep) == 1:
            return stream
        with stream:
            data = stream.read()
        return io.BytesIO(data.replace(self.sep.encode(self.encoding), _UNIT_SEP.encode()))

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """``(line number, fields)`` for every non-blank record, header included (slow path)."""
        with io.TextIOWrapper(self.open_binary(), encoding=self.encoding, newline="") as text:
            lines = text if len(self.sep) == 1 else (ln.replace(self.sep, _UNIT_SEP) for ln in text)
            reader = csv.reader(lines, delimiter=self.delimiter, quoting=self.quoting)
            try:
                for fields in reader:
                    if fields:
                        yield reader.line_num, fields
            except csv.Error as exc:
                raise DataFormatError(self.path, reader.line_num + 1, str(exc)) from None
            except UnicodeDecodeError:
                raise self.encoding_error() from None

    def header_names(self) -> list[str]:
        """The column names on the first line."""
        with self.open_binary() as stream:
            first = stream.readline()
        if not first:
            raise DataFormatError(self.path, None, "the file is empty")
        try:
            text = first.decode(self.encoding).rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise DataFormatError(self.path, 1, f"not valid {self.encoding}: {exc.reason}") from None
        if not text.strip():
            raise DataFormatError(self.path, 1, "no header (the first line is empty)")
        text = text.removeprefix("\ufeff")
        text = text.replace(self.sep, _UNIT_SEP) if len(self.sep) > 1 else text
        try:
            names = next(csv.reader([text], delimiter=self.delimiter, quoting=self.quoting))
        except csv.Error as exc:
            raise DataFormatError(self.path, 1, f"cannot parse the header: {exc}") from None
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise DataFormatError(self.path, 1,
                                  f"duplicate column name {repeated[0]!r} in the header")
        return names

    def line_of_row(self, row: int) -> int | None:
        """The line number of data row ``row`` (0-based, header and blank lines excluded), or
        None when the slow path does not split the file into as many records."""
        skip = 1 if self.header else 0
        for i, (line, _) in enumerate(self.records()):
            if i == row + skip:
                return line
        return None

    def error_at_row(self, row: int, problem: str) -> DataFormatError:
        return row_error(self.path, row, problem, self.line_of_row)

    def check_field_counts(self, expected: int | None) -> None:
        """Raise on the first record whose field count differs from ``expected``.

        ``expected=None`` takes the count of the first record.
        """
        for line, fields in self.records():
            expected = len(fields) if expected is None else expected
            if len(fields) != expected:
                raise DataFormatError(
                    self.path, line, f"expected {expected} fields, found {len(fields)}")

    def encoding_error(self) -> DataFormatError:
        """Locate the first line that does not decode with `encoding`."""
        with self.open_binary() as stream:
            for number, raw in enumerate(stream, start=1):
                try:
                    raw.decode(self.encoding)
                except UnicodeDecodeError as exc:
                    return DataFormatError(self.path, number, f"not valid {self.encoding}: {exc.reason}")
        return DataFormatError(self.path, None, f"not valid {self.encoding}")


def read_table(
    source: TextSource, names: Sequence[str] | None = None, text: Sequence[str | int] = ()
) -> pd.DataFrame:
    """Parse ``source`` into a frame whose every record has the same number of fields.

    Header-less files get ``names`` (or positions ``0..n-1``); ``text`` columns (names, or
    positions in a header-less file) are kept as strings (no number parsing, so zip codes
    keep leading zeros). Only empty fields are missing values. Rows keep their file order;
    use `TextSource.line_of_row` to locate one.
    """
    columns = source.header_names() if source.header else list(names or [])
    dtype = {key: str for key in _column_keys(text, columns, source.header)}
    try:
        with source.pandas_input() as stream:
            frame = pd.read_csv(
                stream, sep=source.delimiter, header=0 if source.header else None,
                dtype=dtype or None, encoding=source.encoding, quoting=source.quoting,
                keep_default_na=False, na_values=[""], engine="c",
            )
    except pd.errors.EmptyDataError:
        raise DataFormatError(source.path, None, "the file is empty") from None
    except (pd.errors.ParserError, csv.Error) as exc:
        source.check_field_counts(len(columns) or None)
        raise DataFormatError(source.path, None, f"cannot parse: {exc}") from exc
    except UnicodeDecodeError:
        raise source.encoding_error() from None
    expected = len(columns) or frame.shape[1]
    ragged = frame.shape[1] != expected or not isinstance(frame.index, pd.RangeIndex)
    if ragged or frame.iloc[:, -1].isna().any():
        source.check_field_counts(expected)
    if not source.header and columns:
        frame.columns = columns
    return frame


def _column_keys(text: Sequence[str | int], columns: list[str], header: bool) -> list[str | int]:
    """The ``read_csv`` keys of the ``text`` columns: header names, else positions."""
    if header:
        return [c for c in text if c in columns]
    return [c if isinstance(c, int) else columns.index(c) for c in text
            if isinstance(c, int) or c in columns]


def coerce_columns(
    frame: pd.DataFrame, kinds: Mapping[str, Kind], path: str | Path,
    line_of_row: Callable[[int], int] | None = None,
) -> pd.DataFrame:
    """Check and convert columns to their kinds; the first bad value raises `DataFormatError`.

    ``id``: present; ``float``: numeric (empty allowed, NaN); ``int``: present, integral.
    Messages name the column (``non-numeric rating 'abc'``); the line comes from
    ``line_of_row`` (without it, e.g. for Parquet, the problem names the 0-based row).
    """
    out = frame.copy(deep=False)
    for col, kind in kinds.items():
        numeric = _numeric(frame[col]) if kind != "id" else frame[col]
        problems = [(int(np.flatnonzero(mask)[0]), message)
                    for mask, message in _checks(frame[col], numeric, kind, col) if mask.any()]
        if problems:
            row, message = min(problems, key=lambda p: p[0])
            value = frame[col].iloc[row]
            raise row_error(path, row, message(value.item() if isinstance(value, np.generic)
                                               else value), line_of_row)
        out[col] = external_ids(numeric) if kind == "id" else numeric.astype(_DTYPES[kind])
    return out


def row_error(path: str | Path, row: int, problem: str,
              line_of_row: Callable[[int], int | None] | None) -> DataFormatError:
    """`DataFormatError` at data row ``row`` (0-based): its line when ``line_of_row`` finds
    it, else the row (e.g. for Parquet)."""
    line = None if line_of_row is None else line_of_row(row)
    return DataFormatError(path, line, problem if line is not None else f"row {row}: {problem}")


Check = tuple[np.ndarray, Callable[[Any], str]]
_DTYPES = {"int": np.int64, "float": np.float64, "finite": np.float64}
#: int64 holds the integers in [-2**63, 2**63)
_INT64_SPAN = 2.0**63
#: ratings are stored as float32
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _numeric(col: pd.Series) -> pd.Series:
    """Numbers as they are, datetimes (Parquet) as epoch seconds, text parsed (NaN if not)."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return (pd.to_datetime(col, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(
            seconds=1)
    return col if pd.api.types.is_numeric_dtype(col) else pd.to_numeric(col, errors="coerce")


def _checks(col: pd.Series, numeric: pd.Series, kind: Kind, name: str) -> list[Check]:
    """(bad-row mask, message for the bad value) pairs that ``col`` must pass for ``kind``."""
    missing = col.isna().to_numpy()
    if kind == "id":
        return [(missing, lambda v: f"missing {name}")]
    non_numeric = numeric.isna().to_numpy() & ~missing
    if kind == "float":
        return [(non_numeric, lambda v: f"non-numeric {name} {v!r}")]
    values = numeric.to_numpy(dtype=np.float64)
    if kind == "finite":
        return [(non_numeric, lambda v: f"non-numeric {name} {v!r}"),
                (missing, lambda v: f"missing {name}"),
                (np.isinf(values), lambda v: f"non-finite {name} {v!r}"),
                (np.abs(values) > _FLOAT32_MAX, lambda v: f"{name} {v!r} is too large")]
    fractional = np.isfinite(values) & (values != np.floor(values))
    huge = ~np.isnan(values) & ((values < -_INT64_SPAN) | (values >= _INT64_SPAN))
    return [(non_numeric | fractional, lambda v: f"non-integer {name} {v!r}"),
            (huge, lambda v: f"{name} {v!r} is outside the 64-bit integer range"),
            (missing, lambda v: f"missing {name}")]


def sniff_separator(path: str | Path) -> str:
    """The separator implied by the file extension (``.csv``, ``.tsv``, ``.dat``)."""
    suffix = data_suffix(Path(path))
    if suffix not in SEPARATORS:
        known = ", ".join(sorted(SEPARATORS))
        raise ValueError(f"{path}: cannot tell the separator from the extension {suffix!r} "
                         f"(known: {known}, .parquet); pass sep=")
    return SEPARATORS[suffix]


def data_suffix(path: Path) -> str:
    """The extension that names the format, ignoring a compression suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _OPENERS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _column_mapping(columns: Mapping[str, Any] | None, available: Sequence[Any],
                    header: bool) -> dict[str, Any]:
    """recforge field -> file column (a name, or a 0-based position for header-less files)."""
    if columns is None:
        if header:
            return {f: f for f in FIELDS if f in available}
        return dict(zip(FIELDS[:4], available))
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} in columns; valid: {list(FIELDS)}")
    mapping = {field: col if header else _position(col) for field, col in columns.items()}
    shared = [col for col in mapping.values() if list(mapping.values()).count(col) > 1]
    if shared:
        fields = [field for field, col in mapping.items() if col == shared[0]]
        raise InputError(f"columns maps {' and '.join(fields)} to the same column {shared[0]!r}")
    return mapping


def parse_column_spec(spec: str) -> dict[str, str]:
    """Parse the CLI form ``user=userId,item=movieId,rating=rating`` into a field mapping."""
    mapping = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        field, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not field or not column:
            raise ValueError(f"bad column mapping {part!r}: expected FIELD=COLUMN")
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r} in {spec!r}; valid: {', '.join(FIELDS)}")
        if field in mapping:
            raise InputError(f"field {field!r} is given twice in {spec!r}")
        mapping[field] = column
    return mapping


def _position(col: Any) -> int:
    try:
        return int(col)
    except ValueError:
        raise ValueError(f"header-less files take 0-based column positions, got {col!r}") from None


def select_columns(frame: pd.DataFrame, mapping: Mapping[str, Any], path: str | Path,
                   header: bool = True) -> pd.DataFrame:
    """A frame of ``mapping``'s keys taken from the file columns it names.

    A file column that does not exist raises `DataFormatError` (line 1, the header).
    """
    absent = [col for col in mapping.values() if col not in frame.columns]
    if absent:
        what = "in the header" if header else "among the column positions"
        raise DataFormatError(path, 1 if header else None,
                              f"no column {absent[0]!r} {what} (have {list(frame.columns)})")
    return pd.DataFrame({field: frame[col] for field, col in mapping.items()})


def read_interactions(
    path: str | Path,
    columns: Mapping[str, Any] | None = None,
    sep: str | None = None,
    header: bool = True,
    *,
    encoding: str = "utf-8",
    rating_range: tuple[float, float] | None = None,
    **from_pandas_kwargs: Any,
) -> Interactions:
    """Read an interaction log into `Interactions`.

    ``columns`` maps recforge fields (``user``, ``item``, ``rating``, ``timestamp``,
    ``weight``) to file columns: header names, or 0-based positions when ``header=False``.
    By default header files use columns named like the fields and header-less files take
    ``user, item[, rating[, timestamp]]`` in that order. ``sep`` defaults from the extension
    (``.csv`` ``,``; ``.tsv`` tab; ``.dat`` ``::``); ``.parquet`` files are read with pyarrow.
    Remaining keyword arguments go to `Interactions.from_pandas` (duplicates keep the latest
    by default). Malformed lines raise `DataFormatError` naming the file and line.

    User and item ids are strings unless every value is a canonical integer
    (`recforge.data.interactions.external_ids`). Ratings must be finite; a ``rating_range``
    ``(low, high)`` makes a rating outside it an error, and without one ratings outside
    `PLAUSIBLE_RATINGS` draw a `RatingScaleWarning` with the observed range.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"{path}: {what}")
    if data_suffix(path) in PARQUET_SUFFIXES:
        raw, line_of_row, by_name = _read_parquet(path), None, True
    else:
        source = TextSource(path, sep or sniff_separator(path), header=header, encoding=encoding)
        raw = read_table(source, text=_id_columns(columns, header))
        line_of_row, by_name = source.line_of_row, header
    mapping = _column_mapping(columns, list(raw.columns), by_name)
    for field in ("user", "item"):
        if field not in mapping:
            raise ValueError(f"{path}: no {field} column; pass columns={{'{field}': ...}} "
                             f"(file columns: {list(raw.columns)})")
    frame = select_columns(raw, mapping, path, by_name)
    frame = coerce_columns(frame, {f: FIELD_KINDS[f] for f in frame.columns}, path, line_of_row)
    if "rating" in frame.columns:
        check_rating_scale(frame["rating"].to_numpy(), rating_range, path, line_of_row)
    elif rating_range is not None:
        raise DataFormatError(path, None, "a rating range was given but there is no rating column")
    from_pandas_kwargs.setdefault("name", path.name)
    return Interactions.from_pandas(frame, source=str(path), **from_pandas_kwargs)


def _id_columns(columns: Mapping[str, Any] | None, header: bool) -> list[str | int]:
    """The file columns holding user and item ids, read as text (`external_ids` decides)."""
    if columns is None:
        return ["user", "item"] if header else [0, 1]
    return [col if header else _position(col) for field, col in columns.items()
            if field in ("user", "item")]


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file's columns as NumPy arrays (converted here, so that damaged data fails
    here, as a `DataFormatError`)."""
    import pyarrow as pa

    try:
        frame = pd.read_parquet(path)
        arrays = {i: frame.iloc[:, i].to_numpy() for i in range(frame.shape[1])}
        return pd.DataFrame(arrays, index=frame.index).set_axis(frame.columns, axis=1)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataFormatError(path, None, f"not a readable Parquet file ({exc})") from None


def check_rating_range(rating_range: tuple[float, float]) -> tuple[float, float]:
    """``rating_range`` as two finite floats ``low <= high`` (else `ParameterError`)."""
    try:
        low, high = (float(v) for v in rating_range)
    except (TypeError, ValueError):
        raise ParameterError(f"rating range must be two numbers (low, high), got "
                             f"{rating_range!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ParameterError(f"rating range must be finite with low <= high, got "
                             f"({low:g}, {high:g})")
    return low, high


def check_rating_scale(ratings: np.ndarray, rating_range: tuple[float, float] | None,
                       path: str | Path,
                       line_of_row: Callable[[int], int | None] | None = None) -> None:
    """Refuse ratings outside ``rating_range``; without one, warn (`RatingScaleWarning`) when
    they leave `PLAUSIBLE_RATINGS`, with the observed range."""
    if not len(ratings):
        return
    if rating_range is None:
        low, high = float(ratings.min()), float(ratings.max())
        if low < PLAUSIBLE_RATINGS[0] or high > PLAUSIBLE_RATINGS[1]:
            warnings.warn(f"{path}: ratings range from {low:g} to {high:g}, outside the usual "
                          f"scales within [{PLAUSIBLE_RATINGS[0]:g}, {PLAUSIBLE_RATINGS[1]:g}]; "
                          "declare the scale with --rating-range LOW,HIGH (rating_range=) to "
                          "reject values outside it", RatingScaleWarning, stacklevel=3)
        return
    low, high = check_rating_range(rating_range)
    outside = (ratings < low) | (ratings > high)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise row_error(path, row, f"rating {ratings[row]:g} is outside the rating range "
                                   f"[{low:g}, {high:g}] ({int(outside.sum())} ratings outside)",
                        line_of_row)


def open_parquet(path: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` for streamed reading; an unreadable file is a
    `DataFormatError` naming it."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise DataFormatError(path, None, f"not a readable Parquet file ({exc})") from None
