"""The exposure log (append-only SQLite, several processes) and the per-user tables built
from it and the event log, or from a file."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from recforge.abtest.data import from_file, from_logs
from recforge.abtest.exposure import COLUMNS, Exposure, ExposureLog
from recforge.errors import InputError, UnknownNameError
from recforge.serving.events import Event, EventLog


def test_log_and_read_round_trip(tmp_path: Path) -> None:
    with ExposureLog(tmp_path / "exp.db") as log:
        assert log.log([Exposure("u1", "ranker", "control", 10.0, "r1", ("i1", "i2")),
                        {"user_id": "u2", "experiment": "ranker", "arm": "treatment",
                         "items": ["i3"]}]) == 2
        frame = log.read()
        assert list(frame.columns) == list(COLUMNS) and len(log) == 2
        assert frame.iloc[0].tolist() == ["u1", "ranker", "control", 10.0, "r1", ("i1", "i2")]
        assert frame.timestamp.iloc[1] > 1e9  # stamped at logging
        assert log.read("other").empty and log.experiments() == ["ranker"]


@pytest.mark.parametrize(("row", "message"), [
    ({"user_id": "", "experiment": "x", "arm": "a"}, "user_id"),
    ({"user_id": "u", "experiment": "x"}, "missing field 'arm'"),
    ({"user_id": "u", "experiment": "x", "arm": "a", "colour": 1}, "unknown field 'colour'"),
    ({"user_id": "u", "experiment": "x", "arm": "a", "timestamp": float("nan")}, "timestamp"),
    ({"user_id": "u", "experiment": "x", "arm": "a", "items": "i1"}, "items"),
])
def test_bad_rows_are_refused_and_nothing_is_written(tmp_path: Path, row: dict,
                                                     message: str) -> None:
    with ExposureLog(tmp_path / "exp.db") as log:
        good = {"user_id": "u", "experiment": "x", "arm": "a"}
        with pytest.raises(InputError, match=message):
            log.log([good, row])
        assert len(log) == 0


def test_the_log_is_append_only(tmp_path: Path) -> None:
    with ExposureLog(tmp_path / "exp.db") as log:
        log.log([Exposure("u", "x", "a")])
    db = sqlite3.connect(tmp_path / "exp.db")
    for statement in ("DELETE FROM exposures", "UPDATE exposures SET arm = 'b'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def _append(path: str, worker: int) -> None:
    with ExposureLog(path) as log:
        for i in range(100):
            log.log([Exposure(f"w{worker}-u{i}", "x", "a", request_id=f"{worker}-{i}")])


def test_several_processes_append_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "exp.db")
    ExposureLog(path).close()
    context = multiprocessing.get_context("fork")  # the parent holds no connection
    workers = [context.Process(target=_append, args=(path, w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    with ExposureLog(path, readonly=True) as log:
        frame = log.read()
    assert len(frame) == 400 and frame.request_id.nunique() == 400


def test_readonly_open_never_creates_or_changes_a_database(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ExposureLog(tmp_path / "absent.db", readonly=True)
    assert not (tmp_path / "absent.db").exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    before = other.read_bytes()
    with pytest.raises(InputError, match="holds no exposure log"):
        ExposureLog(other, readonly=True)
    assert other.read_bytes() == before
    (tmp_path / "text.db").write_text("not a database")
    with pytest.raises(InputError, match="not a usable SQLite database"):
        ExposureLog(tmp_path / "text.db")


def write_logs(folder: Path) -> tuple[Path, Path]:
    """Exposures of experiment 'x' and events: u1 (control) clicks twice after its first
    exposure and once before; u2 (treatment) once after; u3 (control) never; u4 was in both
    arms; u5 held out; u6 only in experiment 'y'."""
    exposures, events = folder / "exposures.db", folder / "events.db"
    with ExposureLog(exposures) as log:
        log.log([Exposure("u1", "x", "control", 100.0), Exposure("u1", "x", "control", 300.0),
                 Exposure("u2", "x", "treatment", 200.0), Exposure("u3", "x", "control", 50.0),
                 Exposure("u4", "x", "control", 100.0), Exposure("u4", "x", "treatment", 110.0),
                 Exposure("u5", "x", "holdout", 100.0), Exposure("u6", "y", "a", 100.0)])
    rows = [("u1", "click", 1.0, 90.0), ("u1", "click", 1.0, 100.0), ("u1", "click", 1.0, 400.0),
            ("u1", "purchase", 7.5, 150.0), ("u2", "click", 1.0, 250.0),
            ("u2", "click", 1.0, 150.0), ("u4", "click", 1.0, 500.0),
            ("u5", "click", 1.0, 500.0), ("u6", "click", 1.0, 500.0)]
    with EventLog(events) as log:
        log.append([Event(f"e{i}", u, "item", kind, value, t)
                    for i, (u, kind, value, t) in enumerate(rows)])
    return exposures, events


def test_per_user_table_from_the_logs(tmp_path: Path) -> None:
    exposures, events = write_logs(tmp_path)
    with ExposureLog(exposures, readonly=True) as exp, EventLog(events) as ev:
        table, info = from_logs(exp, ev, "x", "click", pre="click")
        assert table.to_dict("list") == {"user_id": ["u1", "u2", "u3"],
                                         "arm": ["control", "treatment", "control"],
                                         "metric": [2.0, 1.0, 0.0], "pre_metric": [1.0, 1.0, 0.0]}
        assert info["holdout_users"] == 1 and info["multi_arm_users"] == 1
        revenue, _ = from_logs(exp, ev, "x", "purchase")
        assert revenue.metric.tolist() == [7.5, 0.0, 0.0] and "pre_metric" not in revenue
        converted, _ = from_logs(exp, ev, "x", "click", binary=True)
        assert converted.metric.tolist() == [1.0, 1.0, 0.0]
        with pytest.raises(InputError, match="no exposures of experiment 'z'.*logged: x, y"):
            from_logs(exp, ev, "z", "click")


def test_per_user_table_from_a_file(tmp_path: Path) -> None:
    frame = pd.DataFrame({"uid": ["1", "2", "3", "4"], "group": ["a", "b", "holdout", "a"],
                          "clicks": ["1", "0.5", "2", "3"], "before": [0, 1, 2, 3]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        table, info = from_file(tmp_path / name, "clicks", "before", user="uid", arm="group")
        assert table.metric.tolist() == [1.0, 0.5, 3.0] and table.arm.tolist() == ["a", "b", "a"]
        assert table.pre_metric.tolist() == [0.0, 1.0, 3.0] and info["holdout_users"] == 1
    with pytest.raises(UnknownNameError, match="no column 'click' \\(did you mean 'clicks'"):
        from_file(tmp_path / "t.csv", "click", user="uid", arm="group")


@pytest.mark.parametrize(("text", "message"), [
    ("user_id,arm,metric\n1,a,1\n1,b,2\n", "row 2: user '1' appears twice"),
    ("user_id,arm,metric\n1,a,1\n2,b,x\n", "row 2: column 'metric' must be a finite number"),
    ("user_id,arm,metric\n1,a,1\n2,,2\n", "row 2: empty arm"),
    ("user_id,arm,metric\n1,a,1\n2,b,inf\n", "row 2"),
])
def test_bad_files_name_the_row(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        from_file(tmp_path / "t.csv")


def test_unknown_formats_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        from_file(tmp_path / "absent.csv")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(InputError, match="unknown format"):
        from_file(tmp_path / "t.json")
