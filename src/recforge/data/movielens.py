"""MovieLens loaders: 100K (and its canonical folds), 1M, 10M and the CSV releases.

Every loader returns `Interactions` over the full catalogue of the movies file (unrated
movies included) with an item `SideTable` (numeric ``year``, multihot ``genres``, text
``title``) and, for 100K and 1M, a user `SideTable` (numeric ``age``; categorical
``gender``, ``occupation``, ``zip``, ``age_bucket``). Files are parsed with the same core as
`recforge.data.readers`, so a malformed line is reported with its file and line number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from recforge.data.datasets import ML100K_FOLDS, resolve_dataset
from recforge.data.features import SideTable
from recforge.data.interactions import Interactions
from recforge.data.readers import (
    Kind,
    TextSource,
    coerce_columns,
    read_table,
    select_columns,
)

RATING_FIELDS = ("user", "item", "rating", "timestamp")
RATING_KINDS: dict[str, Kind] = {"user": "int", "item": "int", "rating": "float", "timestamp": "int"}
#: MovieLens 1M age codes are the lower bounds of these buckets; 100K ages are binned the same way
AGE_BOUNDS = (18, 25, 35, 45, 50, 56)
AGE_BUCKETS = ("Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
#: MovieLens 1M occupation codes 0..20 (README of ml-1m)
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
NO_GENRES = "(no genres listed)"
_TITLE_YEAR = r"\((\d{4})(?:[-\u2013]\d*)?\)\s*$"
_LATIN1 = "latin-1"


# ---------------------------------------------------------------------- parsing helpers
def _source(path: Path, sep: str, header: bool = False, encoding: str = _LATIN1) -> TextSource:
    """MovieLens text files: CSV releases are quoted UTF-8, older ones unquoted latin-1."""
    return TextSource(path, sep, header=header, encoding=encoding, quoted=header)


def _read(source: TextSource, kinds: Mapping[str, Kind], names: Sequence[str] | None = None,
          text: Sequence[str] = (), rename: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Parse, optionally select header columns (``field -> header name``), then check kinds."""
    frame = read_table(source, names, text)
    if rename is not None:
        frame = select_columns(frame, rename, source.path)
    return coerce_columns(frame, kinds, source.path, source.line_of_row)


def _fail_first(source: TextSource, bad: np.ndarray, problem: Callable[[int], str]) -> None:
    """Raise `DataFormatError` at the first row flagged in ``bad``."""
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise source.error_at_row(row, problem(row))


def _ratings_dat(path: Path) -> pd.DataFrame:
    return _read(_source(path, "::"), RATING_KINDS, RATING_FIELDS)


def _title_year(titles: pd.Series) -> pd.Series:
    """Release year from a title ending in ``(1995)`` (NaN when absent)."""
    return pd.to_numeric(titles.str.extract(_TITLE_YEAR, expand=False), errors="coerce")


def _age_bucket(ages: pd.Series) -> pd.Series:
    """MovieLens 1M age bucket labels for ages (or 1M age codes)."""
    bins = [-np.inf, *AGE_BOUNDS, np.inf]
    return pd.cut(ages, bins, right=False, labels=AGE_BUCKETS).astype(object)


def _user_table(users: pd.DataFrame) -> SideTable:
    users = users.assign(age_bucket=_age_bucket(users["age"]))
    return SideTable.from_pandas(users, "user", numeric=["age"],
                                 categorical=["gender", "occupation", "zip", "age_bucket"])


def _movies_table(movies: pd.DataFrame) -> SideTable:
    """Side table from ``item``, ``title`` and ``|``-separated ``genres`` columns."""
    movies = movies.assign(year=_title_year(movies["title"]),
                           genres=movies["genres"].replace(NO_GENRES, ""))
    return SideTable.from_pandas(movies, "item", numeric=["year"],
                                 multihot={"genres": ("genres", "|")}, text=["title"])


def _interactions(ratings: pd.DataFrame, path: Path, name: str, items: SideTable,
                  users: SideTable | None, rating_range: tuple[float, float]) -> Interactions:
    return Interactions.from_pandas(
        ratings, rating_range=rating_range, item_ids=items.ids,
        user_ids=None if users is None else users.ids, item_features=items,
        user_features=users, name=name, source=str(path),
    )


# ---------------------------------------------------------------------- MovieLens 100K
def read_ml100k(folder: str | Path) -> Interactions:
    """Parse an ``ml-100k`` folder: u.data with u.item/u.genre (items) and u.user (users)."""
    folder = Path(folder)
    ratings = _read(_source(folder / "u.data", "\t"), RATING_KINDS, RATING_FIELDS)
    return _interactions(ratings, folder / "u.data", "ml-100k", _ml100k_items(folder),
                         _ml100k_users(folder), (1, 5))


def _ml100k_genres(folder: Path) -> list[str]:
    genres = _read(_source(folder / "u.genre", "|"), {"index": "int"}, ["genre", "index"],
                   text=["genre"])
    return genres.sort_values("index")["genre"].tolist()


def _ml100k_items(folder: Path) -> SideTable:
    genres = _ml100k_genres(folder)
    source = _source(folder / "u.item", "|")
    text = ["title", "release_date", "video_release_date", "imdb_url"]
    items = _read(source, {"item": "int", **{g: "int" for g in genres}},
                  ["item", *text, *genres], text=text)
    flags = items[genres].to_numpy()
    _fail_first(source, ~np.isin(flags, (0, 1)).all(axis=1),
                lambda row: f"genre flags must be 0 or 1, got {flags[row].tolist()}")
    released = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce")
    _fail_first(source, (released.isna() & items["release_date"].notna()).to_numpy(),
                lambda row: f"release date {items['release_date'].iloc[row]!r} is not DD-Mon-YYYY")
    items["year"] = released.dt.year
    return SideTable.from_pandas(items, "item", numeric=["year"], multihot={"genres": genres},
                                 text=["title", "imdb_url"])


def _ml100k_users(folder: Path) -> SideTable:
    users = _read(_source(folder / "u.user", "|"), {"user": "int", "age": "int"},
                  ["user", "age", "gender", "occupation", "zip"],
                  text=["gender", "occupation", "zip"])
    return _user_table(users)


def load_ml100k(data_dir: str | Path | None = None, download: bool = True) -> Interactions:
    """MovieLens 100K: 943 users, 1,682 items, 100,000 ratings with side tables."""
    return read_ml100k(resolve_dataset("ml-100k", data_dir, download))


def load_ml100k_fold(fold: str, data_dir: str | Path | None = None,
                     download: bool = True) -> tuple[Interactions, Interactions]:
    """``(train, test)`` of a canonical fold (``u1``..``u5``, ``ua``, ``ub``).

    Both are subsets of the full ML-100K `Interactions`, so their id maps (and side tables)
    are those of the full data set and indices agree between train, test and full.
    """
    if fold not in ML100K_FOLDS:
        raise ValueError(f"unknown ML-100K fold {fold!r}; valid folds: {', '.join(ML100K_FOLDS)}")
    folder = resolve_dataset("ml-100k", data_dir, download)
    full = read_ml100k(folder)
    train = _fold_part(full, folder / f"{fold}.base", f"ml-100k/{fold}-train")
    test = _fold_part(full, folder / f"{fold}.test", f"ml-100k/{fold}-test")
    return train, test


def _fold_part(full: Interactions, path: Path, name: str) -> Interactions:
    """The interactions of ``full`` listed in a fold file, in the file's order."""
    source = _source(path, "\t")
    part = _read(source, RATING_KINDS, RATING_FIELDS)
    positions = _positions(full, part["user"].to_numpy(), part["item"].to_numpy())
    _fail_first(source, positions < 0, lambda row: (
        f"rating of user {part['user'].iloc[row]} for item {part['item'].iloc[row]} "
        "is not in u.data"))
    expected = full.values("rating")[positions]
    _fail_first(source, expected != part["rating"].to_numpy(),
                lambda row: f"rating {part['rating'].iloc[row]} differs from u.data ({expected[row]})")
    return full.subset(positions, name=name)


def _positions(full: Interactions, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Position in ``full`` of each external (user, item) pair, ``-1`` when absent."""
    user_idx = full.user_map.to_index(users)
    item_idx = full.item_map.to_index(items)
    keys = full.users.astype(np.int64) * full.n_items + full.items
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    wanted = user_idx * full.n_items + item_idx
    at = np.searchsorted(sorted_keys, wanted).clip(max=len(keys) - 1)
    found = (user_idx >= 0) & (item_idx >= 0) & (sorted_keys[at] == wanted)
    return np.where(found, order[at], -1)


# ---------------------------------------------------------------------- MovieLens 1M and 10M
def _text_encoding(path: Path) -> str:
    """UTF-8 when the whole file decodes as such, else latin-1 (1M's movies.dat is latin-1)."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return _LATIN1
    return "utf-8"


def _movies_dat(path: Path) -> SideTable:
    movies = _read(_source(path, "::", encoding=_text_encoding(path)), {"item": "int"},
                   ["item", "title", "genres"], text=["title", "genres"])
    return _movies_table(movies)


def read_ml1m(folder: str | Path) -> Interactions:
    """Parse an ``ml-1m`` folder (ratings.dat, movies.dat, users.dat; ``::``, latin-1)."""
    folder = Path(folder)
    source = _source(folder / "users.dat", "::")
    users = _read(source, {"user": "int", "age": "int", "occupation": "int"},
                  ["user", "gender", "age", "occupation", "zip"], text=["gender", "zip"])
    codes = users["occupation"].to_numpy()
    _fail_first(source, (codes < 0) | (codes >= len(ML1M_OCCUPATIONS)),
                lambda row: f"occupation code {codes[row]} is not in 0..{len(ML1M_OCCUPATIONS) - 1}")
    users["occupation"] = np.asarray(ML1M_OCCUPATIONS, dtype=object)[codes]
    return _interactions(_ratings_dat(folder / "ratings.dat"), folder / "ratings.dat", "ml-1m",
                         _movies_dat(folder / "movies.dat"), _user_table(users), (1, 5))


def read_ml10m(folder: str | Path) -> Interactions:
    """Parse an ``ml-10M100K`` folder (ratings.dat, movies.dat; ``::``)."""
    folder = Path(folder)
    return _interactions(_ratings_dat(folder / "ratings.dat"), folder / "ratings.dat", "ml-10m",
                         _movies_dat(folder / "movies.dat"), None, (0.5, 5.0))


# ---------------------------------------------------------------------- CSV releases
def read_movielens_csv(folder: str | Path, name: str) -> Interactions:
    """Parse a CSV release (ml-20m, ml-25m, ml-latest, ml-latest-small): ratings.csv, movies.csv."""
    folder = Path(folder)
    movies = _read(_source(folder / "movies.csv", ",", header=True, encoding="utf-8"),
                   {"item": "int"}, text=["title", "genres"],
                   rename={"item": "movieId", "title": "title", "genres": "genres"})
    ratings = _read(_source(folder / "ratings.csv", ",", header=True, encoding="utf-8"),
                    RATING_KINDS, rename={"user": "userId", "item": "movieId",
                                          "rating": "rating", "timestamp": "timestamp"})
    return _interactions(ratings, folder / "ratings.csv", name, _movies_table(movies), None,
                         (0.5, 5.0))


_READERS: dict[str, Callable[[Path], Interactions]] = {
    "ml-100k": read_ml100k,
    "ml-1m": read_ml1m,
    "ml-10m": read_ml10m,
    **{name: partial(read_movielens_csv, name=name)
       for name in ("ml-20m", "ml-25m", "ml-latest", "ml-latest-small")},
}


def load_movielens(name: str, data_dir: str | Path | None = None,
                   download: bool = True) -> Interactions:
    """Load MovieLens release ``name`` (see `recforge.data.datasets.dataset_names`)."""
    if name not in _READERS:
        raise ValueError(f"unknown MovieLens release {name!r}; valid: {', '.join(_READERS)}")
    return _READERS[name](resolve_dataset(name, data_dir, download))

