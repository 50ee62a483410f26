"""Readers for the formats sequential and graph recommenders are published in (`FORMATS`),
each read as `Interactions`; `read_split` reads a published train/test pair over one id space.

**sequence** (`read_sequence`; the SASRec authors' preprocessed files): one event per line,
``user item``, no header and no timestamp; the line order is the time order of each user's
events. Every event gets its 1-based line number as its timestamp, so no two events share a
timestamp and no tie rule (`recforge.data.splits.TIE_RULES`) can reorder them. These
timestamps order a user's events and nothing more: the files are grouped by user, so a
global time split of them is meaningless.

**sessions** (`read_sessions`; GRU4Rec's ``SessionId ItemId Time`` files): ``session item
time`` per line. The first line is a header when none of its fields is a number. Each
session becomes one sequence: the session id is the *user* of `Interactions` (``user_map``
maps session ids; ``n_users`` counts sessions), so the sequential models and the next-item
protocols work on sessions unchanged. Times are epoch seconds, integers or decimals: the
rows are put in the order of the exact times (a stable sort), then a decimal time is
floored to its second, so the default ``file-order`` tie rule orders the events of one
second by their exact times.

**adjacency** (`read_adjacency`; the LightGCN authors' ``train.txt`` and ``test.txt``): ``user
item item ...`` per line, no timestamps. A line holding a user alone is a user without items
in that file (kept in the user map); a user has one line at most. The published test file is
read with `read_split`.

Common rules: fields are separated by whitespace or by single commas; blank lines are
skipped; files may be compressed (``.gz``, ``.bz2``, ``.xz``). Ids are integers written
canonically (``0``, ``17``; not ``017``, ``+17``, ``-3`` or ``1.0``) and below 10**18. A
repeated (user, item) pair keeps its latest event, as with every reader
(`Interactions.from_pandas`; ``duplicates="keep"`` keeps them all). Parsing is vectorised
over blocks of the file (byte scans with NumPy; session times by pandas' C parser); a
malformed file raises `DataFormatError` naming the file, its first bad line and the problem.

`detect_format` names a file's format where that is unambiguous: an integer file whose lines
hold different numbers of fields is ``adjacency``; a three-column file whose header names a
session column is ``sessions``. A ``sequence`` file looks like any ``user item`` log, so it is
never guessed.
"""

from __future__ import annotations

import csv
import io
import lzma
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.ctr_formats import line_blocks
from recforge.data.interactions import IdMap, Interactions
from recforge.data.readers import PARQUET_SUFFIXES, DataFormatError, TextSource, data_suffix
from recforge.data.sampling import ranges
from recforge.data.splits import Split
from recforge.errors import UnknownNameError, did_you_mean

FORMATS = ("sequence", "sessions", "adjacency")
#: ids have at most this many digits (they must fit in int64)
MAX_ID_DIGITS = 18
#: bytes of the head of a file that `detect_format` reads
SNIFF_BYTES = 1 << 16
#: field separators: ASCII whitespace and the comma
_SEPARATOR = np.zeros(256, dtype=bool)
_SEPARATOR[[9, 10, 11, 12, 13, 32, 44]] = True
_COMMA, _NEWLINE, _PLUS, _ZERO, _NINE = 44, 10, 43, 48, 57
_BOM = b"\xef\xbb\xbf"


# ---------------------------------------------------------------------- tokens
@dataclass
class _Tokens:
    """A block of whole lines split into fields: the bytes, every token's ``[start, end)``,
    and per non-blank line its 1-based number, first token and token count."""

    raw: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    lines: np.ndarray
    first: np.ndarray
    counts: np.ndarray

    def text(self, token: int) -> str:
        return self.raw[self.starts[token]:self.ends[token]].tobytes().decode("latin-1")

    def line_index(self, token: int) -> int:
        return int(np.searchsorted(self.first, token, side="right") - 1)

    def columns(self, *ks: int) -> np.ndarray:
        """The indices of every line's ``ks``-th tokens, in file order."""
        return (self.first[:, None] + np.array(ks)).ravel()


def _tokenize(data: bytes, first_line: int, path: Path) -> _Tokens:
    """Split ``data`` (whole lines) into tokens; a line whose commas do not separate
    non-empty fields (``1,,2``, ``1 2,3``, ``,``) raises `DataFormatError`."""
    raw = np.frombuffer(data, dtype=np.uint8)
    newline = raw == _NEWLINE
    line_of_byte = np.cumsum(newline, dtype=np.int32) - newline  # 0-based
    sep = _SEPARATOR[raw]
    starts = np.flatnonzero(~sep & np.concatenate([[True], sep[:-1]]))
    ends = np.flatnonzero(~sep & np.concatenate([sep[1:], [True]])) + 1
    token_line = line_of_byte[starts]
    first = np.flatnonzero(np.concatenate([[True], token_line[1:] != token_line[:-1]]))
    first = first[:len(starts)]
    counts = np.diff(np.concatenate([first, [len(starts)]]))
    line_index = token_line[first]
    commas = np.bincount(line_of_byte[raw == _COMMA], minlength=int(newline.sum()) + 1)
    with_commas = commas[line_index] > 0
    has_tokens = np.zeros(len(commas), dtype=bool)
    has_tokens[line_index] = True
    bad = np.concatenate([line_index[with_commas & (commas[line_index] != counts - 1)],
                          np.flatnonzero((commas > 0) & ~has_tokens)])
    if len(bad):
        raise DataFormatError(path, first_line + int(bad.min()),
                              "an empty field or mixed separators (fields are separated by "
                              "whitespace or by single commas)")
    return _Tokens(raw, starts, ends, first_line + line_index, first, counts)


def _token_blocks(path: Path, header: Callable[[bytes], bool] | None = None
                  ) -> Iterator[_Tokens]:
    """The file in blocks of whole lines as `_Tokens`, line numbers counted across blocks.
    A byte-order mark is dropped, and the first line is skipped when ``header`` (given it)
    says it is a header."""
    line = 1
    with TextSource(path, " ").open_binary() as stream:
        for k, data in enumerate(line_blocks(stream)):
            if k == 0:
                data = b" " * len(_BOM) + data[len(_BOM):] if data.startswith(_BOM) else data
                end = data.find(b"\n")
                if header is not None and header(data[:end]):
                    data = b" " * end + data[end:]
            yield _tokenize(data, line, path)
            line += data.count(b"\n")


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _canonical(tokens: _Tokens, which: np.ndarray) -> np.ndarray:
    """Whether each token of ``which`` is an id: digits only, no leading zero, at most
    `MAX_ID_DIGITS` long."""
    raw = tokens.raw
    starts, lengths = tokens.starts[which], tokens.ends[which] - tokens.starts[which]
    ok = (lengths <= MAX_ID_DIGITS) & ((raw[starts] != _ZERO) | (lengths == 1))
    other = np.flatnonzero(~_SEPARATOR[raw] & ((raw < _ZERO) | (raw > _NINE)))
    if len(other):  # the tokens holding a byte that is not a digit
        token = np.searchsorted(tokens.starts, other, side="right") - 1
        ok &= ~np.isin(which, token)
    return ok


def _ids(tokens: _Tokens, which: np.ndarray, names: tuple[str, ...], path: Path) -> np.ndarray:
    """The tokens ``which`` (in file order) as int64 ids, parsed by pandas' C parser; the
    first that is not an id (`_canonical`) raises `DataFormatError` naming its field
    (``names[k]`` for a line's ``k``-th token, the last name for later ones)."""
    if not len(which):
        return np.zeros(0, dtype=np.int64)
    column = _column(tokens, which)
    lead = tokens.raw[tokens.starts[which]]
    spelled = (lead != _PLUS) & ((lead != _ZERO) | (tokens.ends[which] - tokens.starts[which] == 1))
    if column.dtype == np.int64 and spelled.all():
        values = column.to_numpy()
        if values.min() >= 0 and values.max() < 10**MAX_ID_DIGITS:
            return values
    ok = _canonical(tokens, which)
    if not ok.all():
        token = int(which[np.flatnonzero(~ok)[0]])
        line = tokens.line_index(token)
        field = names[min(token - int(tokens.first[line]), len(names) - 1)]
        raise DataFormatError(path, int(tokens.lines[line]),
                              _id_problem(tokens.text(token), field))
    return column.to_numpy(dtype=np.int64)  # every token is an id: pandas read it as one


def _id_problem(text: str, field: str) -> str:
    if text.isascii() and text.isdigit():
        if len(text) > MAX_ID_DIGITS:
            return f"{field} id {_show(text)} is too large (ids are below 10**{MAX_ID_DIGITS})"
        return f"{field} id {_show(text)} has a leading zero (ids are integers written as such)"
    if text[:1] == "-" and text[1:].isascii() and text[1:].isdigit():
        return f"negative {field} id {_show(text)} (ids are non-negative integers)"
    return f"non-integer {field} id {_show(text)}"


def _numbers(tokens: _Tokens, which: np.ndarray, field: str, path: Path) -> np.ndarray:
    """The tokens ``which`` as finite numbers (int64 when all are integers, else float64),
    parsed by pandas' C parser; the first that is not one raises `DataFormatError`."""
    if not len(which):
        return np.zeros(0, dtype=np.int64)
    column = _column(tokens, which)
    if column.dtype == np.int64:
        return column.to_numpy()
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        token = int(which[np.flatnonzero(bad)[0]])
        raise DataFormatError(path, int(tokens.lines[tokens.line_index(token)]),
                              f"non-numeric {field} {_show(tokens.text(token))}")
    return values


def _column(tokens: _Tokens, which: np.ndarray) -> pd.Series:
    """The tokens ``which`` (in file order) read by pandas' C parser as one column (int64 when
    all are integers, float64 when all are numbers, else text)."""
    if len(which) == len(tokens.starts):  # every token: separators become line ends
        text = np.where(_SEPARATOR[tokens.raw], np.uint8(_NEWLINE), tokens.raw)
    else:  # each token and the byte after it, a separator made a line end
        starts = tokens.starts[which]
        lengths = tokens.ends[which] - starts
        text = tokens.raw[ranges(starts, lengths + 1)]
        text[np.cumsum(lengths + 1) - 1] = _NEWLINE
    try:
        frame = pd.read_csv(io.BytesIO(text.tobytes()), header=None, sep="\x1f", engine="c",
                            quoting=csv.QUOTE_NONE, keep_default_na=False, na_values=[],
                            skip_blank_lines=True, encoding="latin-1")
    except pd.errors.ParserError:
        frame = None
    if frame is None or frame.shape != (len(which), 1):  # a token holds "\x1f": as text
        return pd.Series([tokens.text(int(t)) for t in which], dtype=object)
    return frame.iloc[:, 0]


def _check_width(tokens: _Tokens, names: tuple[str, ...], path: Path) -> None:
    """Refuse a line that does not hold exactly ``len(names)`` fields."""
    wrong = tokens.counts != len(names)
    if wrong.any():
        k = int(np.flatnonzero(wrong)[0])
        raise DataFormatError(path, int(tokens.lines[k]),
                              f"expected {len(names)} fields ({' '.join(names)}), found "
                              f"{tokens.counts[k]}")


# ---------------------------------------------------------------------- the formats
@dataclass
class _Events:
    """A file's events (``times`` None without timestamps), the users of all its lines
    (adjacency: those without items too) and its last line number."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray | None
    line_users: np.ndarray
    last_line: int


def _joined(parts: list[dict[str, np.ndarray]], path: Path) -> dict[str, np.ndarray]:
    """The blocks' arrays concatenated; a file without data lines raises."""
    if not sum(len(p["lines"]) for p in parts):
        raise DataFormatError(path, None, "the file is empty (no data lines)")
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _scan_sequence(path: Path) -> _Events:
    names = ("user", "item")
    parts = []
    for tokens in _token_blocks(path):
        _check_width(tokens, names, path)
        ids = _ids(tokens, np.arange(len(tokens.starts)), names, path).reshape(-1, 2)
        parts.append({"users": ids[:, 0], "items": ids[:, 1], "lines": tokens.lines})
    cols = _joined(parts, path)
    return _Events(cols["users"], cols["items"], cols["lines"],
                   cols["users"], int(cols["lines"][-1]))


def _is_header(line: bytes) -> bool:
    """Whether a sessions file's first line is a header: none of its fields is a number."""
    fields = line.replace(b",", b" ").split()
    return bool(fields) and not any(_is_number(f) for f in fields)


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _scan_sessions(path: Path) -> _Events:
    names = ("session", "item", "time")
    parts = []
    for tokens in _token_blocks(path, header=_is_header):
        _check_width(tokens, names, path)
        ids = _ids(tokens, tokens.columns(0, 1), names, path).reshape(-1, 2)
        parts.append({"users": ids[:, 0], "items": ids[:, 1], "lines": tokens.lines,
                      "times": _numbers(tokens, tokens.columns(2), "time", path)})
    cols = _joined(parts, path)
    order = np.argsort(cols["times"], kind="stable")
    times = cols["times"][order]
    if times.dtype.kind == "f":
        times = np.floor(times).astype(np.int64)
    return _Events(cols["users"][order], cols["items"][order], times, cols["users"],
                   int(cols["lines"][-1]))


def _scan_adjacency(path: Path) -> _Events:
    parts = []
    for tokens in _token_blocks(path):
        values = _ids(tokens, np.arange(len(tokens.starts)), ("user", "item"), path)
        is_user = np.zeros(len(values), dtype=bool)
        is_user[tokens.first] = True
        parts.append({"line_users": values[is_user], "lines": tokens.lines,
                      "users": np.repeat(values[is_user], tokens.counts - 1),
                      "items": values[~is_user]})
    cols = _joined(parts, path)
    _check_one_line_per_user(cols["line_users"], cols["lines"], path)
    if not len(cols["items"]):
        raise DataFormatError(path, None, "no line lists an item (an adjacency line is "
                                          "'user item item ...')")
    return _Events(cols["users"], cols["items"], None, cols["line_users"],
                   int(cols["lines"][-1]))


def _check_one_line_per_user(users: np.ndarray, lines: np.ndarray, path: Path) -> None:
    """Refuse a user with a second line (the earliest such line is named)."""
    order = np.argsort(users, kind="stable")
    again = np.flatnonzero(users[order][1:] == users[order][:-1])
    if len(again):
        k = int(again[np.argmin(lines[order][1:][again])])
        raise DataFormatError(path, int(lines[order][k + 1]),
                              f"user {users[order][k]} already has a line (line "
                              f"{lines[order][k]}); an adjacency file gives a user one line")


_SCANNERS: dict[str, Callable[[Path], _Events]] = {
    "sequence": _scan_sequence, "sessions": _scan_sessions, "adjacency": _scan_adjacency,
}


def check_format(fmt: str) -> str:
    """``fmt`` if it names one of `FORMATS`, else `UnknownNameError`."""
    if fmt not in _SCANNERS:
        raise UnknownNameError(f"unknown format {fmt!r}{did_you_mean(str(fmt), FORMATS)}; "
                               f"valid: {', '.join(FORMATS)}")
    return fmt


def _read_events(path: str | Path, fmt: str) -> tuple[Path, _Events]:
    scanner = _SCANNERS[check_format(fmt)]
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"{path}: {what}")
    return path, scanner(path)


def _interactions(events: _Events, path: Path, user_map: IdMap, item_map: IdMap,
                  duplicates: Any, time_offset: int = 0) -> Interactions:
    frame = pd.DataFrame({"user": events.users, "item": events.items})
    if events.times is not None:
        frame["timestamp"] = events.times + time_offset
    return Interactions.from_pandas(frame, user_ids=user_map, item_ids=item_map,
                                    duplicates=duplicates, name=path.name, source=str(path))


# ---------------------------------------------------------------------- public readers
def read_format(path: str | Path, fmt: str, *, duplicates: Any = "latest") -> Interactions:
    """Read a ``sequence``, ``sessions`` or ``adjacency`` file (module docstring) as
    `Interactions`; ``duplicates`` goes to `Interactions.from_pandas`."""
    path, events = _read_events(path, fmt)
    return _interactions(events, path, IdMap(np.unique(events.line_users)),
                         IdMap(np.unique(events.items)), duplicates)


def read_sequence(path: str | Path, *, duplicates: Any = "latest") -> Interactions:
    """A ``user item`` file in time order (module docstring); timestamps are line numbers."""
    return read_format(path, "sequence", duplicates=duplicates)


def read_sessions(path: str | Path, *, duplicates: Any = "latest") -> Interactions:
    """A ``session item time`` file (module docstring); each session is a user."""
    return read_format(path, "sessions", duplicates=duplicates)


def read_adjacency(path: str | Path, *, duplicates: Any = "latest") -> Interactions:
    """A ``user item item ...`` file (module docstring)."""
    return read_format(path, "adjacency", duplicates=duplicates)


def read_split(train: str | Path, test: str | Path, fmt: str, *,
               duplicates: Any = "latest") -> Split:
    """A published train/test pair of ``fmt`` files as a `Split` over one id space (the
    users and items of both files), used as it is. A ``sequence`` test file's events come
    after the training file's: their timestamps continue its line numbers."""
    train_path, train_events = _read_events(train, fmt)
    test_path, test_events = _read_events(test, fmt)
    users = IdMap(np.union1d(train_events.line_users, test_events.line_users))
    items = IdMap(np.union1d(train_events.items, test_events.items))
    offset = train_events.last_line if fmt == "sequence" else 0
    return Split(_interactions(train_events, train_path, users, items, duplicates),
                 _interactions(test_events, test_path, users, items, duplicates, offset),
                 "test file", {"train": str(train_path), "test": str(test_path)})


def detect_format(path: str | Path) -> str | None:
    """The format of ``path`` where its head (`SNIFF_BYTES`) makes it unambiguous, else None:
    ``adjacency`` when every field is an id and the lines hold different numbers of them,
    ``sessions`` when the first line is a three-field header naming a session column."""
    path = Path(path)
    if not path.is_file() or data_suffix(path) in PARQUET_SUFFIXES:
        return None
    try:
        with TextSource(path, " ").open_binary() as stream:
            head = stream.read(SNIFF_BYTES)
    except (OSError, EOFError, lzma.LZMAError):
        return None
    head = head.removeprefix(_BOM)
    head = head[:head.rfind(b"\n") + 1] if len(head) == SNIFF_BYTES else head + b"\n"
    first = head[:head.find(b"\n")].lower()
    if _is_header(first) and len(first.replace(b",", b" ").split()) == 3 and b"session" in first:
        return "sessions"
    try:
        tokens = _tokenize(head, 1, path)
    except DataFormatError:
        return None
    if len(tokens.counts) < 2 or not _canonical(tokens, np.arange(len(tokens.starts))).all():
        return None
    return "adjacency" if tokens.counts.min() != tokens.counts.max() else None
