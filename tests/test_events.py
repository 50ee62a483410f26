"""Events: construction from frames and files (with one-line errors naming file, line and
field), the id rule, MovieLens as a CTR problem, time splits and feature columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.codec import FeatureCodec
from recforge.data.events import Events, movielens_fields, time_context
from recforge.data.movielens import read_ml100k
from recforge.data.readers import DataFormatError
from recforge.errors import InputError, UnknownNameError

CSV = """user,item,click,watch,propensity,timestamp,device,zip
u1,10,1,30.5,0.5,100,phone,01234
u2,11,0,0,0.25,50,,99999
u1,12,1,12,1,75,tv,
"""


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_csv_with_several_labels_propensity_and_context(tmp_path: Path) -> None:
    events = Events.read(write(tmp_path, CSV), labels=["click", "watch"],
                         propensity="propensity")
    assert len(events) == 3 and events.name == "events.csv"
    assert events.label("click").tolist() == [1, 0, 1]
    assert events.label("watch").dtype == np.float32
    assert events.propensity.tolist() == [0.5, 0.25, 1.0]
    assert events.timestamps.tolist() == [100, 50, 75]  # found by name
    assert list(events.context.columns) == ["device", "zip"]
    assert events.context["zip"].tolist()[:2] == ["01234", "99999"]  # text: zeros kept
    assert events.user_map.ids.tolist() == ["u1", "u2"]
    assert events.item_map.ids.dtype.kind == "i"  # every item id is a canonical integer
    with pytest.raises(UnknownNameError, match="rating"):
        events.label("rating")


def test_id_rule_matches_interactions(tmp_path: Path) -> None:
    text = "user,item,click\n7,007,1\n8,7,0\n"
    events = Events.read(write(tmp_path, text), labels=["click"])
    assert events.user_map.ids.dtype.kind == "i"
    assert events.item_map.ids.tolist() == ["007", "7"]  # '007' makes the column text


@pytest.mark.parametrize(("line", "message"), [
    ("u3,13,yes,1,0.5,10,tv,1", "line 5: non-numeric click 'yes'"),
    ("u3,13,1,1,0,10,tv,1", "line 5: propensity 0 is outside (0, 1]"),
    ("u3,13,1,,0.5,10,tv,1", "line 5: missing watch"),
    (",13,1,1,0.5,10,tv,1", "line 5: missing user"),
    ("u3,13,1,1,0.5,1.5,tv,1", "line 5: non-integer timestamp 1.5"),
])
def test_bad_values_name_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, CSV + line + "\n")
    with pytest.raises(DataFormatError) as info:
        Events.read(path, labels=["click", "watch"], propensity="propensity")
    assert str(info.value) == f"{path}, {message}"
    assert "\n" not in str(info.value)


def test_missing_columns_and_files(tmp_path: Path) -> None:
    path = write(tmp_path, CSV)
    with pytest.raises(DataFormatError, match=r"line 1: no column 'clicked'"):
        Events.read(path, labels=["clicked"])
    with pytest.raises(FileNotFoundError):
        Events.read(tmp_path / "absent.csv", labels=["click"])
    with pytest.raises(InputError, match="at least one label"):
        Events.read(path, labels=[])


def test_parquet_and_frames_read_the_same(tmp_path: Path) -> None:
    frame = pd.read_csv(write(tmp_path, CSV), dtype={"zip": str, "user": str})
    frame.to_parquet(tmp_path / "events.parquet", index=False)
    parquet = Events.read(tmp_path / "events.parquet", labels=["click"], context=["device"])
    direct = Events.from_pandas(frame, labels=["click"], context=["device"])
    for events in (parquet, direct):
        assert events.label("click").tolist() == [1, 0, 1]
        assert events.users.tolist() == [0, 1, 0] and list(events.context.columns) == ["device"]
    bad = frame.assign(click=[1, None, 1])
    with pytest.raises(DataFormatError, match="data frame: row 1: missing click"):
        Events.from_pandas(bad, labels=["click"])


def test_time_context_is_utc_hour_and_monday_based_weekday() -> None:
    # 1970-01-01 00:00 UTC was a Thursday; 1998-04-22 23:10 UTC a Wednesday
    context = time_context(np.array([0, 893286600]))
    assert context["hour"].tolist() == [0, 23] and context["weekday"].tolist() == [3, 2]


def test_movielens_events_as_ctr(fake_ml100k: Path) -> None:
    data = read_ml100k(fake_ml100k)
    events = Events.from_movielens(data)
    assert len(events) == len(data) == 8
    assert events.label("like").tolist() == (data.ratings >= 4).astype(float).tolist()
    assert np.array_equal(events.label("rating"), data.ratings)
    columns = events.columns()
    assert {"hour", "weekday", "gender", "occupation", "age_bucket", "genres", "year"} <= set(
        columns)
    labels, genres = columns["genres"]
    assert genres.shape == (8, len(labels))
    assert np.array_equal(columns["gender"],
                          data.user_features.categorical["gender"][data.users])
    codec = FeatureCodec(movielens_fields(year_bins=2)).fit(columns)
    matrix = codec.design_matrix(columns)
    assert matrix.shape == (8, len(codec.feature_names())) and matrix.nnz > 8 * 6


def test_split_by_time_partitions_in_time_order() -> None:
    frame = pd.DataFrame({"user": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                          "item": [1] * 10, "y": [0, 1] * 5,
                          "timestamp": [9, 3, 3, 7, 1, 5, 2, 8, 6, 4]})
    train, valid, test = Events.from_pandas(frame, labels=["y"]).split_by_time((0.6, 0.2, 0.2))
    assert [len(p) for p in (train, valid, test)] == [6, 2, 2]
    assert train.timestamps.max() <= valid.timestamps.min() <= test.timestamps.min()
    assert sorted(np.concatenate([p.user_map.ids[p.users] for p in (train, valid, test)])
                  .tolist()) == list(range(1, 11))
    with pytest.raises(InputError, match="sum to 1"):
        Events.from_pandas(frame, labels=["y"]).split_by_time((0.5, 0.2))


def test_clashing_feature_names_are_refused(fake_ml100k: Path) -> None:
    data = read_ml100k(fake_ml100k)
    events = Events.from_movielens(data)
    clash = Events(events.users, events.items, user_map=events.user_map,
                   item_map=events.item_map, labels=events.labels,
                   context=pd.DataFrame({"gender": ["M"] * len(events)}),
                   user_features=data.user_features)
    with pytest.raises(InputError, match="gender"):
        clash.columns()
