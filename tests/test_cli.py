"""The `recforge` command line: the evaluate contract, datasets, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.cli import main
from recforge.cli.common import parse_params, parse_value
from recforge.data.movielens import read_ml100k
from recforge.data.splits import leave_last_out


def test_parse_params_types() -> None:
    params = parse_params(["factors=64", "reg=0.01", "verbose=true", "name=abc", "seed=None"])
    assert params == {"factors": 64, "reg": 0.01, "verbose": True, "name": "abc", "seed": None}
    assert parse_value("[1, 2]") == [1, 2]
    with pytest.raises(ValueError, match="name=value"):
        parse_params(["factors"])


def test_evaluate_u1_baseline_only_json(ml100k_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(ml100k_dir.parent))
    out = tmp_path / "out.json"
    code = main(["evaluate", "--dataset", "ml-100k", "--split", "u1", "--model", "baseline-only",
                 "--metrics", "rmse,mae", "--json", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    for key in ("model", "dataset", "split", "protocol", "seed", "params", "metrics",
                "fit_seconds", "eval_seconds", "n_users", "n_items"):
        assert key in record
    assert record["model"] == "baseline-only" and record["split"] == "u1"
    assert record["n_users"] == 943 and record["n_items"] == 1682
    assert record["metrics"]["RMSE"] <= 0.96  # Surprise's BaselineOnly: 0.9599
    assert 0.70 < record["metrics"]["MAE"] < 0.80


def test_evaluate_csv_file_with_column_mapping(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({
        "userId": rng.integers(1, 80, n), "movieId": rng.integers(1, 120, n),
        "stars": rng.integers(1, 6, n).astype(float), "ts": rng.integers(1, 10**6, n),
    })
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "r.json"
    code = main(["evaluate", "--dataset", str(path), "--columns",
                 "user=userId,item=movieId,rating=stars,timestamp=ts", "--split", "random",
                 "--model", "item-mean", "--metrics", "rmse", "--param", "damping=2",
                 "--json", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    assert record["params"] == {"damping": 2}
    assert 0.5 < record["metrics"]["RMSE"] < 2.5


def test_bad_input_exits_2_with_a_message(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["evaluate", "--model", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["evaluate", "--model", "most-popular", "--param", "alpha=1"]) == 2
    assert "no parameter" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,4\n1,3\n")
    assert main(["evaluate", "--dataset", str(bad), "--model", "most-popular"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "line 3" in err


def test_split_writes_parquet(tmp_path: Path) -> None:
    out = tmp_path / "split"
    code = main(["split", "--dataset", "synthetic", "--split", "leave-last-out", "--out", str(out)])
    assert code == 0
    train = pd.read_parquet(out / "train.parquet")
    test = pd.read_parquet(out / "test.parquet")
    summary = json.loads((out / "split.json").read_text())
    assert summary["test_interactions"] == len(test) == test["user"].nunique()
    assert len(train) == summary["train_interactions"]


def test_split_ties_option_picks_the_tie_rule(ml100k_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(ml100k_dir.parent))
    data = read_ml100k(ml100k_dir)
    for ties in ("item-id", "file-order"):
        out = tmp_path / ties
        assert main(["split", "--dataset", "ml-100k", "--split", "leave-last-out", "--ties",
                     ties, "--out", str(out)]) == 0
        written = pd.read_parquet(out / "test.parquet")
        expected = leave_last_out(data, ties=ties).test.to_pandas()
        assert sorted(zip(written["user"], written["item"])) == sorted(
            zip(expected["user"], expected["item"])), ties


@pytest.mark.parametrize(("args", "message"), [
    (["--split", "random", "--ties", "random"], "--ties applies to --split leave-last-out"),
    (["--split", "leave-last-out", "--ties", "latest"], "must be one of 'file-order'"),
])
def test_split_ties_option_errors(args: list[str], message: str,
                                  capsys: pytest.CaptureFixture) -> None:
    assert main(["split", "--dataset", "synthetic", *args]) == 2
    assert message in capsys.readouterr().err


def test_datasets_list_runs(capsys: pytest.CaptureFixture) -> None:
    assert main(["datasets", "list"]) == 0
    assert "ml-100k" in capsys.readouterr().out
