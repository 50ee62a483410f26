"""read_interactions: formats, column mapping, malformed-line errors, duplicates policy."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data import readers
from recforge.data.readers import (
    DataFormatError,
    TextSource,
    parse_column_spec,
    read_interactions,
    read_table,
)

ML_COLUMNS = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
HEADER = "userId,movieId,rating,timestamp\n"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_with_column_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", HEADER + "10,100,4.5,5\n10,200,3,6\n20,100,1,7\n")
    data = read_interactions(path, ML_COLUMNS)
    assert (data.n_users, data.n_items, len(data)) == (2, 2, 3)
    assert data.user_map.ids.tolist() == [10, 20]
    np.testing.assert_array_equal(data.ratings, [4.5, 3.0, 1.0])
    np.testing.assert_array_equal(data.timestamps, [5, 6, 7])
    assert data.name == "ratings.csv"


def test_header_less_tsv_defaults_to_user_item_rating_timestamp(tmp_path: Path) -> None:
    path = write(tmp_path / "log.tsv", "a\tx\t2\t11\nb\ty\t5\t12\n")
    frame = read_interactions(path, header=False).to_pandas()
    assert frame.to_dict("list") == {"user": ["a", "b"], "item": ["x", "y"],
                                     "rating": [2.0, 5.0], "timestamp": [11, 12]}


def test_header_less_positions_as_cli_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "log.tsv", "7\tx\t1\n8\ty\t2\n")
    data = read_interactions(path, {"user": "2", "item": "1"}, header=False)
    assert data.user_map.ids.tolist() == [1, 2]
    assert data.ratings is None and data.timestamps is None


def test_dat_double_colon_is_sniffed(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    data = read_interactions(path, header=False)
    assert data.item_map.ids.tolist() == [661, 1193]
    np.testing.assert_array_equal(data.timestamps, [978300760, 978302109])


def test_quoted_csv_field_may_hold_the_separator(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", 'user,item\nu1,"Heat, The"\nu2,Up\n')
    assert read_interactions(path).item_map.ids.tolist() == ["Heat, The", "Up"]


def test_gzip_and_explicit_separator(tmp_path: Path) -> None:
    path = tmp_path / "log.txt.gz"
    path.write_bytes(gzip.compress(b"user;item;weight\n1;2;0.5\n3;2;1.5\n"))
    data = read_interactions(path, sep=";")
    np.testing.assert_array_equal(data.weights, [0.5, 1.5])


def test_parquet_with_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"u": [1, 2], "i": ["a", "b"], "r": [1.0, 2.0]}).to_parquet(path)
    data = read_interactions(path, {"user": "u", "item": "i", "rating": "r"})
    np.testing.assert_array_equal(data.ratings, [1.0, 2.0])


def test_parquet_bad_value_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1, 2], "item": [3, 4], "rating": ["4", "good"]}).to_parquet(path)
    with pytest.raises(DataFormatError, match=r"row 1: non-numeric rating 'good'"):
        read_interactions(path)


@pytest.mark.parametrize(("body", "line", "problem"), [
    ("1,2,3,4\n1,3,3\n", 3, "expected 4 fields, found 3"),
    ("1,2,3,4\n1,3,3,4,9\n", 3, "expected 4 fields, found 5"),
    ("1,2,3,4,9\n1,3,3,4\n", 2, "expected 4 fields, found 5"),
    ("1,2,3,4\n\n1,3,abc,4\n", 4, "non-numeric rating 'abc'"),
    ("1,2,3,4\n1,3,3,4.5\n", 3, "non-integer timestamp 4.5"),
    ("1,2,3,4\n1,3,3,noon\n", 3, "non-integer timestamp 'noon'"),
    ("1,2,3,4\n1,3,3,\n", 3, "missing timestamp"),
    ("1,2,3,4\n,3,3,4\n", 3, "missing user"),
])
def test_malformed_lines_name_file_line_and_problem(
        tmp_path: Path, body: str, line: int, problem: str) -> None:
    path = write(tmp_path / "bad.csv", HEADER + body)
    with pytest.raises(DataFormatError) as info:
        read_interactions(path, ML_COLUMNS)
    assert (info.value.path, info.value.line, info.value.problem) == (str(path), line, problem)
    assert str(info.value) == f"{path}, line {line}: {problem}"


def test_malformed_dat_line(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.dat", "1::2::3::4\n1::3::3\n")
    with pytest.raises(DataFormatError, match=r"ratings.dat, line 2: expected 4 fields, found 3"):
        read_interactions(path, header=False)


def test_undecodable_line_is_located(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"user,item\n1,ok\n2,caf\xe9\n")
    with pytest.raises(DataFormatError, match=r"log.csv, line 3: not valid utf-8"):
        read_interactions(path)
    assert read_interactions(path, encoding="latin-1").item_map.ids.tolist() == ["café", "ok"]


def test_missing_header_column_and_unknown_field(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "uid,iid\n1,2\n")
    with pytest.raises(DataFormatError, match=r"line 1: no column 'userId' in the header"):
        read_interactions(path, {"user": "userId", "item": "iid"})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['score'\]"):
        read_interactions(path, {"user": "uid", "item": "iid", "score": "x"})
    with pytest.raises(ValueError, match="no user column"):
        read_interactions(path)


def test_empty_file_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="the file is empty"):
        read_interactions(write(tmp_path / "empty.tsv", ""), header=False)
    with pytest.raises(DataFormatError, match="line 1: no header"):
        read_interactions(write(tmp_path / "empty.csv", "\n1,2\n"))
    with pytest.raises(ValueError, match="cannot tell the separator from the extension '.log'"):
        read_interactions(write(tmp_path / "x.log", "1,2\n"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_interactions(tmp_path / "absent.csv")


def test_duplicates_keep_the_latest_by_default(tmp_path: Path) -> None:
    path = write(tmp_path / "dups.csv", HEADER + "1,2,5,300\n1,2,1,100\n1,3,2,200\n")
    latest = read_interactions(path, ML_COLUMNS).to_pandas()
    assert latest.sort_values("item")["rating"].tolist() == [5.0, 2.0]
    first = read_interactions(path, ML_COLUMNS, duplicates="first").to_pandas()
    assert first.sort_values("item")["rating"].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"dups.csv: duplicate \(user, item\) pair"):
        read_interactions(path, ML_COLUMNS, duplicates="error")


def test_rating_range_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", HEADER + "1,2,5,1\n1,3,7,2\n")
    with pytest.raises(DataFormatError,
                       match=r"r.csv, line 3: rating 7 is outside the rating range \[1, 5\]"):
        read_interactions(path, ML_COLUMNS, rating_range=(1, 5))


def test_clean_file_is_parsed_without_the_diagnostic_scan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "ok.csv", HEADER + "1,2,3,4\n5,6,7,8\n")

    def no_scan(*args: object) -> None:
        raise AssertionError("the slow path ran on a clean file")

    for method in ("check_field_counts", "line_of_row", "encoding_error"):
        monkeypatch.setattr(readers.TextSource, method, no_scan)
    assert len(read_interactions(path, ML_COLUMNS)) == 2


def test_read_table_keeps_text_columns_as_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "users.txt", "1|01002|NA\n2|T8H1N|x\n")
    source = TextSource(path, "|", quoted=False)
    frame = read_table(source, ["user", "zip", "note"], text=["zip", "note"])
    assert frame["zip"].tolist() == ["01002", "T8H1N"]
    assert frame["note"].tolist() == ["NA", "x"]


def test_parse_column_spec() -> None:
    assert parse_column_spec("user=userId, item=movieId,rating=stars") == {
        "user": "userId", "item": "movieId", "rating": "stars"}
    with pytest.raises(ValueError, match="expected FIELD=COLUMN"):
        parse_column_spec("user=userId,item")
    with pytest.raises(ValueError, match="unknown field 'score'"):
        parse_column_spec("user=u,score=s")
