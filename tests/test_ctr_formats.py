"""CTR file readers: libFM/libSVM text (field inference, explicit ranges, field ids, errors
naming file and line), Criteo TSV (round trip with the synthetic generator, chunks, numeric
treatments, errors) and Parquet event chunks (every row exactly once)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data import ctr_formats
from recforge.data.codec import FeatureCodec, Field
from recforge.data.ctr_formats import (
    ParquetEvents,
    criteo_chunks,
    criteo_fields,
    criteo_to_parquet,
    read_criteo,
    read_libfm,
)
from recforge.data.readers import DataFormatError
from recforge.data.synthetic_ctr import (
    make_criteo_like,
    write_criteo_like_parquet,
    write_criteo_tsv,
)
from recforge.errors import InputError, ParameterError, UnknownNameError

SMALL = {"n_numeric": 3, "n_categorical": 4, "vocab_max": 50, "n_pairs": 2, "seed": 3}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _movielens_like(n: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """One-hot user (0..299), item (300..799), hour (800..823) and a numeric age (824)."""
    rng = np.random.default_rng(seed)
    return {"label": rng.choice([-1, 1], n), "user": rng.integers(0, 300, n),
            "item": 300 + rng.integers(0, 500, n), "hour": 800 + rng.integers(0, 24, n),
            "age": rng.integers(1, 80, n) / 10}


def _libfm_text(data: dict[str, np.ndarray], shuffle_entries: bool = False) -> str:
    rows = zip(data["label"], data["user"], data["item"], data["hour"], data["age"])
    lines = ["# a MovieLens-like libFM file", ""]
    for k, (label, user, item, hour, age) in enumerate(rows):
        entries = [f"{user}:1", f"{item}:1", f"{hour}:1", f"824:{age:g}"]
        if shuffle_entries:
            entries = entries[k % 4:] + entries[:k % 4]
        lines.append(f"{label:+d} " + " ".join(entries) + ("  # comment" if k % 7 == 0 else ""))
        if k % 50 == 0:
            lines.append("   ")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- libFM: reading
@pytest.mark.parametrize("shuffle_entries", [False, True])
def test_libfm_round_trip_infers_the_fields(tmp_path: Path, shuffle_entries: bool) -> None:
    data = _movielens_like()
    path = _write(tmp_path / "ml.libfm", _libfm_text(data, shuffle_entries))
    read = read_libfm(path, names=["user", "item", "hour", "age"], user_field="user",
                      item_field="item")
    assert [(f.name, f.kind) for f in read.fields] == [
        ("user", "categorical"), ("item", "categorical"), ("hour", "categorical"),
        ("age", "numeric")]
    lows = [int(data[k].min()) for k in ("item", "hour")]
    assert read.ranges == [(0, lows[0]), (lows[0], lows[1]), (lows[1], 824), (824, None)]
    events = read.events
    assert np.array_equal(events.label("label"), (data["label"] > 0).astype(np.float32))
    for name in ("user", "item", "hour"):
        assert np.array_equal(events.context[name].to_numpy(dtype=np.int64), data[name])
    assert np.allclose(events.context["age"].to_numpy(), data["age"])
    assert np.array_equal(events.user_map.to_external(events.users), data["user"])
    assert np.array_equal(events.item_map.to_external(events.items), data["item"])
    codec = FeatureCodec(read.fields).fit(events.columns())
    assert codec.design_matrix(events.columns()).shape == (
        len(data["label"]), 1 + len(np.unique(data["user"])) + 1 + len(np.unique(data["item"]))
        + 1 + len(np.unique(data["hour"])) + 1)


def test_without_user_and_item_fields_every_row_has_one_user_and_item(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.libfm", "0.5 0:1 3:2.5\n2 1:1 3:-1\n")
    read = read_libfm(path)
    events = read.events
    assert events.user_map.ids.tolist() == ["?"] and events.item_map.ids.tolist() == ["?"]
    assert events.users.tolist() == [0, 0] and events.items.tolist() == [0, 0]
    assert events.label("label").tolist() == [0.5, 2.0]  # not the libSVM {-1, +1} labels
    assert events.context["f0"].tolist() == [0, 1]
    assert events.context["f1"].tolist() == [2.5, -1.0]
    with gzip.open(tmp_path / "a.libfm.gz", "wb") as out:
        out.write(b"0.5 0:1 3:2.5\r\n\r\n2 1:1\t3:-1")  # CRLF, a tab, no final newline
    again = read_libfm(tmp_path / "a.libfm.gz")
    pd.testing.assert_frame_equal(again.events.context, events.context)


def test_a_test_file_reads_with_the_training_ranges(tmp_path: Path) -> None:
    train = read_libfm(_write(tmp_path / "train", "1 2:1 10:1\n0 3:1 12:1\n"))
    assert train.ranges == [(0, 10), (10, None)]
    test = read_libfm(_write(tmp_path / "test", "1 0:1 11:1\n0 7:1 40:1\n"), fields=train.ranges)
    assert test.events.context["f0"].tolist() == [0, 7]
    assert test.events.context["f1"].tolist() == [11, 40]


def test_explicit_fields_with_a_multihot_field(tmp_path: Path) -> None:
    text = "1 0:1 5:1 6:1 9:3\n0 1:1 9:0.5\n1 2:1 7:1 5:1 6:1\n"
    path = _write(tmp_path / "g.libfm", text)
    with pytest.raises(DataFormatError, match=r"different numbers of entries .*fields=\["):
        read_libfm(path)
    read = read_libfm(path, fields=[(0, 5), (5, 9), (9, 10)], names=["user", "genres", "score"])
    assert [f.kind for f in read.fields] == ["categorical", "multihot", "numeric"]
    context = read.events.context
    assert [list(v) for v in context["genres"]] == [[5, 6], [], [5, 6, 7]]
    assert context["score"].tolist() == [3.0, 0.5, 0.0]  # an absent numeric entry is 0
    encoded = FeatureCodec(read.fields).fit(read.events.columns()).transform(
        read.events.columns())
    assert encoded["genres"].toarray().tolist() == [[1, 1, 0], [0, 0, 0], [1, 1, 1]]
    unused = read_libfm(path, fields=[(9, 10), (0, 5), (5, 9), (100, 200)])
    assert unused.events.context["f3"].isna().all()
    assert [f.kind for f in unused.fields] == ["numeric", "categorical", "multihot",
                                               "categorical"]


def test_field_ids_give_the_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "ffm", "1 0:3:1 2:7:1 1:5:0.5\n-1 0:4:1 1:5:2\n")
    read = read_libfm(path)
    assert [(f.name, f.kind) for f in read.fields] == [
        ("f0", "categorical"), ("f1", "numeric"), ("f2", "categorical")]
    assert read.events.context["f2"].isna().tolist() == [False, True]
    assert read.events.context["f1"].tolist() == [0.5, 2.0]
    assert read.events.label("label").tolist() == [1.0, 0.0]
    with pytest.raises(InputError, match="gives field ids"):
        read_libfm(path, fields=[(0, 4), (4, None)])


def test_blocks_do_not_change_the_result_or_the_error_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _movielens_like(300, seed=1)
    path = _write(tmp_path / "ml.libfm", _libfm_text(data))
    whole = read_libfm(path)
    monkeypatch.setattr(ctr_formats, "_BLOCK_BYTES", 37)
    pieces = read_libfm(path)
    pd.testing.assert_frame_equal(whole.events.context, pieces.events.context)
    assert np.array_equal(whole.events.label("label"), pieces.events.label("label"))
    lines = _libfm_text(data).splitlines()
    lines[250] = "1 3:1 x:1"
    path.write_text("\n".join(lines))  # and no newline at the end
    with pytest.raises(DataFormatError, match=r"line 251: index 'x' is not an integer"):
        read_libfm(path)


# ---------------------------------------------------------------------- libFM: refusals
BAD_LINES = [
    ("1 3:x", "non-numeric value 'x' in '3:x'"),
    ("1 -3:1", "negative index '-3'"),
    ("3:1 4:1", "missing label"),
    ("abc 3:1", "non-numeric label 'abc'"),
    ("1 3.5:1", "index '3.5' is not an integer"),
    ("1 3", "bad token '3'"),
    ("1 3:", "bad token '3:'"),
    ("1 :1", "bad token ':1'"),
    ("1 3::1", "bad token '3::1'"),
    ("1 2:3:4:5", "bad token '2:3:4:5'"),
    ("1 0:3:1", "mixes field:idx:val with the file's earlier idx:val"),
    ("1 3:nan", "non-numeric value 'nan'"),
    ("1 3:1e999", "non-numeric value '1e999'"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
def test_a_bad_line_is_named(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path / "bad.libfm", f"# header\n1 1:1 4:1\n\n{line}\n0 2:1 5:1\n")
    with pytest.raises(DataFormatError) as caught:
        read_libfm(path)
    assert caught.value.path == str(path) and caught.value.line == 4
    assert problem in caught.value.problem


@pytest.mark.parametrize(("line", "problem"), [
    ("1 a:3:1", "field id 'a' is not an integer"),
    ("1 -1:3:1", "negative field id '-1'"),
    ("1 3:1", "mixes idx:val with the file's earlier field:idx:val"),
])
def test_a_bad_field_id_is_named(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path / "bad.ffm", f"1 0:1:1 1:4:1\n{line}\n")
    with pytest.raises(DataFormatError, match=rf"bad.ffm, line 2: .*{problem}"):
        read_libfm(path)


def test_empty_files_and_ambiguous_or_unsupported_fields(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"empty\.libfm: the file is empty"):
        read_libfm(_write(tmp_path / "empty.libfm", "# only a comment\n\n"))
    overlapping = _write(tmp_path / "o.libfm", "1 0:1 5:1\n0 6:1 9:1\n")
    with pytest.raises(DataFormatError, match=r"1st smallest indices span 0\.\.6 and their "
                                              r"2nd smallest 5\.\.9, which overlap; pass"):
        read_libfm(overlapping)
    weighted = _write(tmp_path / "w.libfm", "1 0:1 1:0.5\n0 1:1\n")
    with pytest.raises(DataFormatError, match=r"w.libfm, line 1: field 'f0' has several "
                                              r"indices and the value 1:0.5"):
        read_libfm(weighted, fields=[(0, 2)])
    with pytest.raises(DataFormatError, match=r"line 2: index 6 is in none of the fields"):
        read_libfm(overlapping, fields=[(0, 6), (8, 10)])
    with pytest.raises(ParameterError, match="overlap"):
        read_libfm(overlapping, fields=[(0, 6), (5, 10)])
    with pytest.raises(ParameterError, match="names"):
        read_libfm(overlapping, fields=[(0, 6), (6, None)], names=["a"])
    with pytest.raises(UnknownNameError, match="no field 'who'"):
        read_libfm(overlapping, fields=[(0, 6), (6, None)], user_field="who")
    with pytest.raises(FileNotFoundError):
        read_libfm(tmp_path / "absent.libfm")


# ---------------------------------------------------------------------- Criteo TSV
def test_criteo_tsv_round_trip_with_the_generator(tmp_path: Path) -> None:
    path = write_criteo_tsv(tmp_path / "c.tsv", 700, chunk_rows=300, **SMALL)
    for numeric in ("log_squared", "log1p", "bucketised"):
        made, _ = make_criteo_like(700, numeric=numeric, **SMALL)
        read = read_criteo(path, numeric=numeric, n_numeric=3, n_categorical=4,
                           chunk_rows=256)
        assert read.fields == made.fields == criteo_fields(3, 4, numeric=numeric)
        assert np.array_equal(read.events.label("label"), made.events.label("label"))
        for column in made.events.context.columns:
            assert pd.Series(read.events.context[column], dtype=object).equals(
                pd.Series(made.events.context[column], dtype=object)), column
    chunks = list(criteo_chunks(path, 250, n_numeric=3, n_categorical=4, nrows=600))
    assert [len(c) for c in chunks] == [250, 250, 100]
    first = read_criteo(path, nrows=600, n_numeric=3, n_categorical=4)
    assert np.array_equal(np.concatenate([c.label("label") for c in chunks]),
                          first.events.label("label"))


def test_criteo_numeric_treatments(tmp_path: Path) -> None:
    row = "1\t10\t2\t-3\t\t100\t0a1b\t\n"
    path = _write(tmp_path / "n.tsv", row + "\n" + row.replace("1\t10", "0\t3"))
    squared = read_criteo(path, n_numeric=5, n_categorical=2)
    context = squared.events.context
    assert context.loc[0, ["I1", "I2", "I3", "I5"]].tolist() == [
        np.floor(np.log(10) ** 2), 2, -3, np.floor(np.log(100) ** 2)]
    assert context["I4"].isna().all() and context["I1"].tolist()[1] == np.floor(np.log(3) ** 2)
    assert context["C1"].tolist() == ["0a1b", "0a1b"] and context["C2"].isna().all()
    assert squared.events.label("label").tolist() == [1.0, 0.0]
    logged = read_criteo(path, numeric="log1p", n_numeric=5, n_categorical=2).events.context
    assert np.allclose(logged.loc[0, ["I1", "I2", "I3"]].to_numpy(dtype=float),
                       [np.log(11), np.log(3), -np.log(4)])
    hashed = read_criteo(path, hashed_buckets=64, n_numeric=5, n_categorical=2)
    assert [f.kind for f in hashed.fields[5:]] == ["hashed", "hashed"]
    assert hashed.fields[5].buckets == 64


@pytest.mark.parametrize(("line", "problem"), [
    ("1\t2\t3", "expected 6 tab-separated columns (label, I1.., C1..), found 3"),
    ("1\t2\tx\t4\tab\tcd", "non-numeric I2 'x'"),
    ("2\t2\t3\t4\tab\tcd", "label 2 is not 0 or 1"),
    ("\t2\t3\t4\tab\tcd", "missing label"),
    ("yes\t2\t3\t4\tab\tcd", "non-numeric label 'yes'"),
])
def test_a_bad_criteo_line_is_named(tmp_path: Path, line: str, problem: str) -> None:
    good = "0\t1\t2\t3\tab\tcd\n"
    path = _write(tmp_path / "bad.tsv", good + "\n" + line + "\n" + good)
    with pytest.raises(DataFormatError) as caught:
        read_criteo(path, n_numeric=3, n_categorical=2, chunk_rows=2)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert problem in caught.value.problem


def test_an_empty_criteo_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="the file is empty"):
        read_criteo(_write(tmp_path / "e.tsv", "\n"))
    with pytest.raises(ParameterError, match="numeric"):
        read_criteo(_write(tmp_path / "x.tsv", "1\n"), numeric="log")


# ---------------------------------------------------------------------- Parquet
def test_parquet_events_cover_every_row_once(tmp_path: Path) -> None:
    path = write_criteo_like_parquet(tmp_path / "c.parquet", 5000, chunk_rows=700,
                                     numeric="log1p", **SMALL)
    made, _ = make_criteo_like(5000, numeric="log1p", **SMALL)
    source = ParquetEvents(path, ["label"], chunk_rows=300)
    assert len(source) == 5000 and source.fields == made.fields
    chunks = list(source.chunks())
    assert max(len(c) for c in chunks) == 300
    context = pd.concat([c.context for c in chunks], ignore_index=True)
    for column in made.events.context.columns:
        assert pd.Series(context[column], dtype=object).equals(
            pd.Series(made.events.context[column], dtype=object)), column
    labels = np.concatenate([c.label("label") for c in chunks])
    assert np.array_equal(labels, made.events.label("label"))
    shuffled = list(source.chunks(np.random.default_rng(0)))
    order = pd.concat([c.context for c in shuffled], ignore_index=True)
    key = made.events.context["I1"].to_numpy()
    assert not np.array_equal(order["I1"].to_numpy(), key, equal_nan=True)
    assert sorted(len(c) for c in shuffled) == sorted(len(c) for c in chunks)
    merged = order.merge(context.reset_index(), on=list(context.columns), how="left")
    assert sorted(merged["index"].tolist()) == list(range(5000))


def test_a_criteo_tsv_streams_into_parquet(tmp_path: Path) -> None:
    tsv = write_criteo_tsv(tmp_path / "c.tsv", 900, **SMALL)
    path = criteo_to_parquet(tsv, tmp_path / "c.parquet", chunk_rows=200, n_numeric=3,
                             n_categorical=4, hashed_buckets=99)
    read = read_criteo(tsv, n_numeric=3, n_categorical=4, hashed_buckets=99)
    source = ParquetEvents(path, ["label"], chunk_rows=128)
    assert source.fields == read.fields
    chunks = list(source.chunks())
    assert [len(c) for c in chunks] == [128, 72] * 4 + [100]
    context = pd.concat([c.context for c in chunks], ignore_index=True)
    assert isinstance(chunks[0].context["C1"].dtype, pd.CategoricalDtype)
    for column in read.events.context.columns:
        assert pd.Series(context[column], dtype=object).equals(
            pd.Series(read.events.context[column], dtype=object)), column
    assert np.array_equal(np.concatenate([c.label("label") for c in chunks]),
                          read.events.label("label"))


def test_parquet_events_with_ids_and_bad_labels(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    frame = pd.DataFrame({"user": ["b", "a", "b"], "item": [3, 1, 2], "click": [1.0, 0.0, 1.0],
                          "hour": [1, 2, 3]})
    frame.to_parquet(path, row_group_size=2)
    source = ParquetEvents(path, ["click"], user="user", item="item", chunk_rows=1)
    chunks = list(source.chunks())
    assert [len(c) for c in chunks] == [1, 1, 1] and source.fields == []
    assert source.user_map.ids.tolist() == ["a", "b"] and source.item_map.ids.tolist() == [1, 2, 3]
    assert [c.users[0] for c in chunks] == [1, 0, 1] and [c.items[0] for c in chunks] == [2, 0, 1]
    assert list(chunks[0].context.columns) == ["hour"]
    with pytest.raises(UnknownNameError, match="no column 'like'"):
        ParquetEvents(path, ["like"])
    frame.assign(click=[1.0, None, 1.0]).to_parquet(path, row_group_size=2)
    with pytest.raises(DataFormatError, match="row 1: missing or non-finite label 'click'"):
        list(ParquetEvents(path, ["click"]).chunks())
    (tmp_path / "junk.parquet").write_bytes(b"nope")
    with pytest.raises(DataFormatError, match="junk.parquet"):
        ParquetEvents(tmp_path / "junk.parquet", ["click"])


def test_fields_declared_by_the_reader_are_valid_codec_fields() -> None:
    assert all(isinstance(f, Field) for f in criteo_fields())
    assert [f.kind for f in criteo_fields(numeric="bucketised")][:13] == ["bucketised"] * 13
