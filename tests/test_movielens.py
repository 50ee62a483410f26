"""MovieLens loaders: the real ML-100K and its folds, and small files in the 1M/10M/CSV formats."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ML100K_GENRES

from recforge.data.interactions import Interactions
from recforge.data.loading import load_dataset
from recforge.data.movielens import (
    AGE_BUCKETS,
    load_ml100k,
    load_ml100k_fold,
    load_movielens,
    read_ml100k,
)
from recforge.data.readers import DataFormatError

FOLD_SIZES = {"u1": (80_000, 20_000), "u2": (80_000, 20_000), "u3": (80_000, 20_000),
              "u4": (80_000, 20_000), "u5": (80_000, 20_000), "ua": (90_570, 9_430),
              "ub": (90_570, 9_430)}


def row_of(table_ids: np.ndarray, external: int) -> int:
    return int(np.flatnonzero(table_ids == external)[0])


def genres_of(data: Interactions, item: int) -> list[str]:
    labels, matrix = data.item_features.multihot["genres"]
    row = matrix[row_of(data.item_features.ids, item)].toarray().ravel()
    return [label for label, flag in zip(labels, row) if flag]


# ---------------------------------------------------------------------- real ML-100K
@pytest.fixture(scope="module")
def ml100k(ml100k_dir: Path) -> Interactions:
    return load_ml100k(ml100k_dir, download=False)


def test_ml100k_counts(ml100k: Interactions) -> None:
    assert (ml100k.n_users, ml100k.n_items, len(ml100k)) == (943, 1682, 100_000)
    assert ml100k.name == "ml-100k"
    assert (ml100k.ratings.min(), ml100k.ratings.max()) == (1.0, 5.0)
    assert ml100k.timestamps.min() > 8e8


def test_ml100k_items(ml100k: Interactions, ml100k_dir: Path) -> None:
    items = ml100k.item_features
    assert items.text["title"][row_of(items.ids, 1)] == "Toy Story (1995)"
    assert items.numeric["year"][row_of(items.ids, 1)] == 1995
    assert np.isnan(items.numeric["year"][row_of(items.ids, 267)])  # "unknown": no date
    genre_file = (ml100k_dir / "u.genre").read_text(encoding="latin-1").split()
    labels = [line.split("|")[0] for line in genre_file]
    assert items.multihot["genres"][0] == labels == list(ML100K_GENRES)
    assert genres_of(ml100k, 1) == ["Animation", "Children's", "Comedy"]
    assert items.multihot["genres"][1].sum() == 2893  # genre flags set in u.item
    assert items.text["title"][row_of(items.ids, 543)] == "Misérables, Les (1995)"  # latin-1
    assert items.text["imdb_url"][row_of(items.ids, 1)].startswith("http://us.imdb.com/")


def test_ml100k_users(ml100k: Interactions) -> None:
    users = ml100k.user_features
    first = row_of(users.ids, 1)
    assert users.numeric["age"][first] == 24
    assert (users.categorical["gender"][first], users.categorical["occupation"][first],
            users.categorical["zip"][first], users.categorical["age_bucket"][first]) == (
        "M", "technician", "85711", "18-24")
    assert set(users.categorical["gender"]) == {"M", "F"}
    assert len(set(users.categorical["occupation"])) == 21
    assert set(users.categorical["age_bucket"]) <= set(AGE_BUCKETS)


@pytest.mark.parametrize("fold", sorted(FOLD_SIZES))
def test_ml100k_folds(fold: str, ml100k_dir: Path, ml100k: Interactions) -> None:
    train, test = load_ml100k_fold(fold, ml100k_dir, download=False)
    assert (len(train), len(test)) == FOLD_SIZES[fold]
    for part, suffix in ((train, "base"), (test, "test")):
        assert part.user_map == ml100k.user_map and part.item_map == ml100k.item_map
        file = pd.read_csv(ml100k_dir / f"{fold}.{suffix}", sep="\t", header=None)
        frame = part.to_pandas()
        np.testing.assert_array_equal(frame["user"], file[0])
        np.testing.assert_array_equal(frame["item"], file[1])
        np.testing.assert_array_equal(frame["rating"], file[2])
        np.testing.assert_array_equal(frame["timestamp"], file[3])
    full_keys = set(zip(ml100k.users.tolist(), ml100k.items.tolist()))
    train_keys = set(zip(train.users.tolist(), train.items.tolist()))
    test_keys = set(zip(test.users.tolist(), test.items.tolist()))
    assert not train_keys & test_keys
    assert train_keys | test_keys == full_keys


def test_u1_to_u5_tests_partition_the_data(ml100k_dir: Path) -> None:
    tests = [load_ml100k_fold(f"u{k}", ml100k_dir, download=False)[1] for k in range(1, 6)]
    pairs = np.concatenate([t.users.astype(np.int64) * t.n_items + t.items for t in tests])
    assert len(np.unique(pairs)) == len(pairs) == 100_000


def test_load_dataset_finds_ml100k_in_its_folder(ml100k_dir: Path) -> None:
    data = load_dataset("ML-100K", data_dir=ml100k_dir.parent, download=False)
    assert (data.n_users, data.n_items, len(data)) == (943, 1682, 100_000)


def test_fold_name_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown ML-100K fold 'u6'; valid folds: u1, .*, ub"):
        load_ml100k_fold("u6", tmp_path)


# ---------------------------------------------------------------------- fake ML-100K
def test_fake_ml100k_keeps_unrated_catalogue_items(fake_ml100k: Path) -> None:
    data = read_ml100k(fake_ml100k)
    assert (data.n_users, data.n_items, len(data)) == (3, 4, 8)
    assert data.item_counts.tolist() == [3, 3, 2, 0]
    assert data.item_features.text["title"][1] == "Misérables, Les (1995)"
    assert genres_of(data, 4) == ["War", "Western"]
    assert data.user_features.categorical["zip"].tolist() == ["85711", "01002", "T8H1N"]
    assert data.user_features.categorical["age_bucket"].tolist() == ["18-24", "50-55", "Under 18"]


def test_corrupt_u_data_names_file_and_line(fake_ml100k: Path) -> None:
    path = fake_ml100k / "u.data"
    lines = path.read_text().splitlines()
    lines[4] = "3\t2\tfive\t889237269"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_ml100k(fake_ml100k)
    assert (info.value.path, info.value.line) == (str(path), 5)
    assert info.value.problem == "non-numeric rating 'five'"


def test_bad_genre_flag_and_release_date(fake_ml100k: Path) -> None:
    path = fake_ml100k / "u.item"
    original = path.read_text(encoding="latin-1")
    path.write_text(original.replace("|0\n2|", "|2\n2|", 1), encoding="latin-1")
    with pytest.raises(DataFormatError, match=r"u.item, line 1: genre flags must be 0 or 1"):
        read_ml100k(fake_ml100k)
    path.write_text(original.replace("15-Dec-1995", "1995/12/15"), encoding="latin-1")
    with pytest.raises(DataFormatError, match=r"u.item, line 2: release date '1995/12/15'"):
        read_ml100k(fake_ml100k)


@pytest.mark.parametrize(("line", "problem"), [
    ("3\t4\t5\t889237269", "rating of user 3 for item 4 is not in u.data"),
    ("1\t3\t2\t878542960", "rating 2.0 differs from u.data (4.0)"),
])
def test_fold_line_not_matching_u_data(fake_ml100k: Path, line: str, problem: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recforge.data.movielens.resolve_dataset", lambda *args: fake_ml100k)
    path = fake_ml100k / "u2.test"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DataFormatError) as info:
        load_ml100k_fold("u2", fake_ml100k)
    assert (info.value.path, info.value.line, info.value.problem) == (str(path), 3, problem)


# ---------------------------------------------------------------------- other releases
def write_lines(path: Path, lines: list[str], encoding: str = "latin-1") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding=encoding)


ML1M_MOVIES = ["1::Toy Story (1995)::Animation|Children's|Comedy",
               "2::Misérables, Les (1995)::Drama",
               '3::"Great Performances" Cats (1998)::Musical',
               "4::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi"]
ML1M_RATINGS = ["1::1::5::978300760", "1::2::3::978302109", "2::1::4::978298413",
                "2::2::4::978299000", "2::1::2::978299999"]


@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-1m"
    write_lines(folder / "movies.dat", ML1M_MOVIES)
    write_lines(folder / "ratings.dat", ML1M_RATINGS)
    write_lines(folder / "users.dat", ["1::F::1::10::48067", "2::M::56::16::70072"])
    return folder


def test_ml1m_format(ml1m_dir: Path) -> None:
    data = load_movielens("ml-1m", data_dir=ml1m_dir, download=False)
    assert (data.n_users, data.n_items, len(data)) == (2, 4, 4)  # (2, 1) kept once: the latest
    frame = data.to_pandas()
    assert frame.loc[(frame.user == 2) & (frame.item == 1), "rating"].tolist() == [2.0]
    items = data.item_features
    assert items.text["title"].tolist()[1:3] == ["Misérables, Les (1995)",
                                                 '"Great Performances" Cats (1998)']
    assert items.numeric["year"].tolist() == [1995, 1995, 1998, 1977]
    assert items.multihot["genres"][0] == ["Action", "Animation", "Children's", "Comedy",
                                           "Drama", "Musical", "Sci-Fi"]
    assert genres_of(data, 4) == ["Action", "Sci-Fi"]
    users = data.user_features
    assert users.categorical["occupation"].tolist() == ["K-12 student", "self-employed"]
    assert users.categorical["age_bucket"].tolist() == ["Under 18", "56+"]
    assert users.numeric["age"].tolist() == [1, 56]


def test_ml1m_bad_occupation_code(ml1m_dir: Path) -> None:
    write_lines(ml1m_dir / "users.dat", ["1::F::1::10::48067", "2::M::56::21::70072"])
    with pytest.raises(DataFormatError, match=r"users.dat, line 2: occupation code 21"):
        load_movielens("ml-1m", data_dir=ml1m_dir)


def test_ml1m_rating_outside_one_to_five(ml1m_dir: Path) -> None:
    write_lines(ml1m_dir / "ratings.dat", ["1::1::5::978300760", "1::2::0.5::978302109"])
    with pytest.raises(ValueError, match=r"ratings.dat: rating 0.5 at row 1 is outside \[1, 5\]"):
        load_movielens("ml-1m", data_dir=ml1m_dir)


def test_ml10m_folder_name_and_half_stars(tmp_path: Path) -> None:
    folder = tmp_path / "ml-10M100K"
    write_lines(folder / "movies.dat", ML1M_MOVIES[:2], encoding="utf-8")
    write_lines(folder / "ratings.dat", ["1::1::4.5::838985046", "7::2::0.5::838983525"])
    write_lines(folder / "tags.dat", ["15::4973::excellent!::1215184630"])
    data = load_dataset("ml-10m", data_dir=tmp_path, download=False)
    assert data.name == "ml-10m" and data.user_features is None
    assert data.item_features.text["title"][1] == "Misérables, Les (1995)"
    np.testing.assert_array_equal(data.ratings, [4.5, 0.5])


def test_latest_small_csv_format(tmp_path: Path) -> None:
    folder = tmp_path / "ml-latest-small"
    write_lines(folder / "movies.csv", [
        "movieId,title,genres",
        '11,"American President, The (1995)",Comedy|Drama|Romance',
        "12,Babylon 5 (1994–1998),(no genres listed)",
        "13,Untitled,Drama",
    ], encoding="utf-8")
    write_lines(folder / "ratings.csv", ["userId,movieId,rating,timestamp",
                                         "1,11,4.0,964982703", "5,13,3.5,847434962"],
                encoding="utf-8")
    shutil.copytree(folder, tmp_path / "ml-25m")
    for name in ("ml-latest-small", "ml-25m"):
        data = load_movielens(name, data_dir=tmp_path)
        assert (data.n_users, data.n_items, len(data), data.name) == (2, 3, 2, name)
        items = data.item_features
        assert items.text["title"][0] == "American President, The (1995)"
        np.testing.assert_array_equal(items.numeric["year"], [1995, 1994, np.nan])
        assert genres_of(data, 12) == [] and genres_of(data, 11) == ["Comedy", "Drama", "Romance"]


def test_csv_release_missing_header_column(tmp_path: Path) -> None:
    folder = tmp_path / "ml-20m"
    write_lines(folder / "movies.csv", ["movieId,title,genres", "1,A (1990),Drama"])
    write_lines(folder / "ratings.csv", ["user,movieId,rating,timestamp", "1,1,4,5"])
    with pytest.raises(DataFormatError, match=r"ratings.csv, line 1: no column 'userId'"):
        load_movielens("ml-20m", data_dir=folder)
