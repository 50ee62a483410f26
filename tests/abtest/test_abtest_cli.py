"""``recforge experiment analyze|power``: tables, JSON, the loud sample-ratio warning, and one
line with exit status 2 for bad input."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_abtest_logs import write_logs

from recforge.abtest.analysis import SampleRatioMismatchWarning, analyze, sample_size_proportions
from recforge.abtest.exposure import Exposure, ExposureLog
from recforge.cli import main


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 2000
    arm = np.where(np.arange(n) % 2 == 0, "control", "treatment")
    pre = rng.gamma(2.0, 2.0, n)
    frame = pd.DataFrame({"user_id": np.arange(n), "arm": arm,
                          "clicks": 0.8 * pre + rng.normal(0, 2, n) + 0.4 * (arm == "treatment"),
                          "pre": pre, "converted": (rng.random(n) < 0.2).astype(int)})
    frame.to_csv(tmp_path / "ab.csv", index=False)
    return tmp_path / "ab.csv"


def test_analyze_prints_and_writes_the_library_result(data_file: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "result.json"
    assert main(["experiment", "analyze", "--data", str(data_file), "--metric", "clicks",
                 "--pre", "pre", "--bootstrap", "200", "--seed", "1", "--json", str(out)]) == 0
    text = capsys.readouterr()
    assert "CUPED Welch" in text.out and "bootstrap (200)" in text.out and not text.err
    record = json.loads(out.read_text())
    frame = pd.read_csv(data_file).rename(columns={"clicks": "metric", "pre": "pre_metric"})
    expected = analyze(frame, bootstrap_resamples=200, seed=1)
    assert record["comparisons"] == expected["comparisons"]
    assert record["written_by"] == "recforge experiment analyze" and record["pre"] == "pre"
    assert record["srm"]["mismatch"] is False
    # a second run replaces its own file; a foreign file is never replaced
    assert main(["experiment", "analyze", "--data", str(data_file), "--metric", "converted",
                 "--binary", "--json", str(out)]) == 0
    assert "ztest" in json.loads(out.read_text())["comparisons"][0]
    foreign = tmp_path / "mine.json"
    foreign.write_text("{}")
    assert main(["experiment", "analyze", "--data", str(data_file), "--metric", "clicks",
                 "--json", str(foreign)]) == 2
    assert foreign.read_text() == "{}"


def test_a_sample_ratio_mismatch_is_loud(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frame = pd.DataFrame({"user_id": range(1000), "arm": ["control"] * 560 + ["b"] * 440,
                          "metric": np.arange(1000) % 7})
    frame.to_csv(tmp_path / "srm.csv", index=False)
    out = tmp_path / "srm.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleRatioMismatchWarning)  # shown, not raised
        code = main(["experiment", "analyze", "--data", str(tmp_path / "srm.csv"),
                     "--metric", "metric", "--json", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "WARNING: SAMPLE RATIO MISMATCH" in err and "control 560 (expected 500)" in err
    assert json.loads(out.read_text())["srm"]["mismatch"] is True
    assert main(["experiment", "analyze", "--data", str(tmp_path / "srm.csv"), "--metric",
                 "metric", "--expected-split", "56:44"]) == 0  # b sorts before control
    assert "MISMATCH" in capsys.readouterr().err
    assert main(["experiment", "analyze", "--data", str(tmp_path / "srm.csv"), "--metric",
                 "metric", "--expected-split", "b=44,control=56"]) == 0
    assert "MISMATCH" not in capsys.readouterr().err


def test_analyze_from_the_exposure_and_event_logs(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    exposures, events = write_logs(tmp_path)
    out = tmp_path / "logs.json"
    assert main(["experiment", "analyze", "--exposures", str(exposures), "--events",
                 str(events), "--experiment", "x", "--metric", "click", "--binary",
                 "--json", str(out)]) == 2  # the treatment arm has one user
    assert "arm 'treatment' has 1 user" in capsys.readouterr().err
    with ExposureLog(exposures) as log:
        log.log([Exposure("u7", "x", "treatment", 100.0)])
    assert main(["experiment", "analyze", "--exposures", str(exposures), "--events",
                 str(events), "--experiment", "x", "--metric", "click", "--binary",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["arms"]["control"]["n"] == 2 and record["arms"]["treatment"]["n"] == 2
    assert record["arms"]["control"]["mean"] == 0.5 and record["multi_arm_users"] == 1


def test_power_matches_the_library(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "power.json"
    assert main(["experiment", "power", "--baseline", "0.1", "--mde", "0.01", "--ratio", "2",
                 "--json", str(out)]) == 0
    expected = sample_size_proportions(0.1, 0.01, ratio=2.0)
    assert f"arm 1 {expected['n1_users']:,}" in capsys.readouterr().out
    assert json.loads(out.read_text())["n1"] == expected["n1"]
    assert main(["experiment", "power", "--sd", "2", "--mde", "0.5", "--power", "0.9"]) == 0
    assert "means: effect size 0.25" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["analyze", "--data", "{data}", "--metric", "clik"], "no column 'clik'"),
    (["analyze", "--data", "{tmp}/absent.csv", "--metric", "m"], "no such file"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--binary"], "must be 0 or 1"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--bootstrap", "500"], "--seed"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--bootstrap", "5", "--seed", "0"],
     "--bootstrap"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--alpha", "1.5"], "--alpha"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--control", "c"], "control arm"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--expected-split", "1:2:3"],
     "3 weights"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--expected-split", "a=1,b"],
     "--expected-split"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--expected-split", "1:-1"],
     "expected split"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--experiment", "x"],
     "--experiment goes with --exposures"),
    (["analyze", "--exposures", "{tmp}/e.db", "--metric", "clicks"], "--exposures needs"),
    (["analyze", "--exposures", "{tmp}/e.db", "--events", "{tmp}/ev.db", "--experiment", "x",
      "--metric", "click"], "no such file"),
    (["analyze", "--data", "{data}", "--metric", "clicks", "--json", "{tmp}/no/r.json"],
     "does not exist"),
    (["analyze", "--metric", "clicks"], "one of the arguments --data --exposures"),
    (["power", "--baseline", "0.1"], "--mde"),
    (["power", "--baseline", "0.1", "--sd", "1", "--mde", "0.1"], "not allowed with"),
    (["power", "--baseline", "0.99", "--mde", "0.1"], "baseline \\+ mde"),
    (["power", "--baseline", "0.1", "--mde", "0.01", "--power", "1"], "--power"),
    (["power", "--sd", "0", "--mde", "0.01"], "--sd"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, data_file: Path,
                                          tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [a.format(data=data_file, tmp=tmp_path) for a in argv]
    assert main(["experiment", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_logs_that_are_not_logs_are_refused_untouched(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    exposures, _ = write_logs(tmp_path)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    before = other.read_bytes()
    for argv, message in (
            (["--exposures", str(exposures), "--events", str(other)], "holds no event log"),
            (["--exposures", str(other), "--events", str(tmp_path / "events.db")],
             "holds no exposure log")):
        assert main(["experiment", "analyze", *argv, "--experiment", "x", "--metric",
                     "click"]) == 2
        assert message in capsys.readouterr().err
    assert other.read_bytes() == before
