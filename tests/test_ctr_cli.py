"""`recforge evaluate --format libfm|criteo|events`: click models on CTR files, and
`recforge.evaluation.ctr` (parts, metrics, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.cli import main
from recforge.cli.ctr_cmd import parse_fields
from recforge.data.ctr_formats import read_libfm
from recforge.data.synthetic_ctr import write_criteo_tsv
from recforge.errors import InputError, UnknownNameError
from recforge.evaluation.ctr import check_ctr_metrics, random_parts, split_parts

FAST = ["--param", "epochs=2", "--param", "threads=1"]
#: small embeddings for the factorization models, and a small DNN for the deep ones
EMB = ["--param", "embedding_dim=4"]
SMALL = [*EMB, "--param", "layers=[16]"]
#: one-hot fields of the test files: index blocks [0, 8), [8, 20), [20, 26)
SIZES = (8, 12, 6)


def libfm_lines(n: int, seed: int) -> list[str]:
    """``n`` libFM rows, one index per field; the label follows the first two fields."""
    rng = np.random.default_rng(seed)
    starts = np.cumsum([0, *SIZES[:-1]])
    values = np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)
    values[: max(SIZES)] = np.arange(max(SIZES))[:, None] % np.array(SIZES)  # every index
    logit = 3.0 * (values[:, 0] >= 4) - 2.0 * (values[:, 1] % 3 == 0) - 0.5
    labels = rng.random(n) < 1 / (1 + np.exp(-logit))
    index = values + starts
    return [f"{int(y)} " + " ".join(f"{i}:1" for i in row) for y, row in zip(labels, index)]


def write_libfm(path: Path, n: int, seed: int = 0) -> Path:
    path.write_text("\n".join(libfm_lines(n, seed)) + "\n")
    return path


def run_json(args: list[str], tmp_path: Path, name: str = "out.json") -> dict:
    out = tmp_path / name
    assert main(["evaluate", *args, *FAST, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_libfm_inferred_fields_random_split(tmp_path: Path) -> None:
    path = write_libfm(tmp_path / "train.libfm", 1500)
    record = run_json(["--dataset", str(path), "--format", "libfm", "--model", "fm",
                       "--metrics", "auc,logloss,gauc,calibration", "--param",
                       "learning_rate=0.05", *EMB], tmp_path)
    assert record["rows"] == {"train": 1200, "valid": 150, "test": 150}
    assert record["split"] == "random" and record["format"] == "libfm"
    metrics = record["metrics"]
    assert set(metrics) == {"auc", "logloss", "gauc", "calibration"}
    assert all(0 <= v <= 1 for v in metrics.values())
    assert metrics["auc"] > 0.7  # the label follows fields 0 and 1 strongly
    assert metrics["gauc"] == pytest.approx(metrics["auc"])  # one anonymous user
    assert record["test_users"] == 1 and record["gauc_users"] == 1


def test_libfm_published_split_reads_with_training_ranges(tmp_path: Path) -> None:
    train = write_libfm(tmp_path / "train.libfm", 1200, seed=1)
    valid = write_libfm(tmp_path / "valid.libfm", 200, seed=2)
    # a test file whose rows never use the first index of fields 1 and 2: inferring its own
    # boundaries would shift them; it must be read with the training file's
    lines = [ln for ln in libfm_lines(600, 3) if " 8:1" not in ln and " 20:1" not in ln]
    test = tmp_path / "test.libfm"
    test.write_text("\n".join(lines) + "\n")
    assert read_libfm(test).ranges != read_libfm(train).ranges
    record = run_json(["--dataset", str(train), "--format", "libfm", "--model", "deepfm",
                       "--test", str(test), "--valid", str(valid), "--param",
                       "learning_rate=0.05", *SMALL], tmp_path)
    assert record["rows"] == {"train": 1200, "valid": 200, "test": len(lines)}
    assert record["split"] == "files"
    assert set(record["metrics"]) == {"auc", "logloss", "gauc"}
    assert record["metrics"]["auc"] > 0.7


def test_libfm_test_file_only_validates_on_a_tenth_of_training(tmp_path: Path) -> None:
    train = write_libfm(tmp_path / "train.libfm", 1000, seed=1)
    test = write_libfm(tmp_path / "test.libfm", 300, seed=3)
    record = run_json(["--dataset", str(train), "--format", "libfm", "--model",
                       "logistic-regression", "--test", str(test)], tmp_path)
    assert record["rows"] == {"train": 900, "valid": 100, "test": 300}


def test_libfm_explicit_fields(tmp_path: Path) -> None:
    path = write_libfm(tmp_path / "train.libfm", 1000)
    record = run_json(["--dataset", str(path), "--format", "libfm", "--model", "fm",
                       "--fields", "0:8,8:20,20:", "--metrics", "auc", *EMB], tmp_path)
    assert list(record["metrics"]) == ["auc"] and 0 <= record["metrics"]["auc"] <= 1
    # one field over all indices: a multi-hot field, not three one-hot ones
    single = run_json(["--dataset", str(path), "--format", "libfm", "--model", "fm",
                       "--fields", "0:", "--metrics", "auc", *EMB], tmp_path, "single.json")
    assert single["rows"] == record["rows"]
    assert parse_fields("0:943,943:2625,2625:") == [(0, 943), (943, 2625), (2625, None)]


def test_criteo_tsv(tmp_path: Path) -> None:
    path = write_criteo_tsv(tmp_path / "day.tsv", 1000, seed=0, vocab_max=50)
    record = run_json(["--dataset", str(path), "--format", "criteo", "--model", "dcn",
                       "--metrics", "auc,logloss", "--seed", "3", *SMALL], tmp_path)
    assert record["rows"] == {"train": 800, "valid": 100, "test": 100}
    assert all(0 <= v <= 1 for v in record["metrics"].values())


def test_events_file_time_split_and_table_output(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    n = 1000
    frame = pd.DataFrame({"user": rng.integers(0, 30, n), "item": rng.integers(0, 40, n),
                          "ts": rng.permutation(n), "device": rng.choice(["a", "b"], n)})
    frame["clicked"] = ((frame["device"] == "a") ^ (rng.random(n) < 0.2)).astype(int)
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    code = main(["evaluate", "--dataset", str(path), "--format", "events", "--label",
                 "clicked", "--columns", "timestamp=ts", "--model", "logistic-regression",
                 *FAST])
    out = capsys.readouterr().out
    assert code == 0
    assert "auc" in out and "gauc" in out and "time split" in out


def test_split_helpers() -> None:
    from recforge.data.ctr_formats import anonymous_events

    events = anonymous_events({"label": np.arange(10) % 2}, pd.DataFrame({"x": np.arange(10)}),
                              "t")
    parts = random_parts(events, (0.6, 0.2, 0.2), seed=1)
    rows = np.concatenate([p.context["x"].to_numpy() for p in parts])
    assert [len(p) for p in parts] == [6, 2, 2] and sorted(rows) == list(range(10))
    again = random_parts(events, (0.6, 0.2, 0.2), seed=1)
    assert all((a.context["x"].to_numpy() == b.context["x"].to_numpy()).all()
               for a, b in zip(parts, again))
    assert split_parts(events)[1] == "random"
    with pytest.raises(InputError, match="a part would be empty"):
        random_parts(events.subset(np.arange(3)), (0.8, 0.1, 0.1))
    with pytest.raises(UnknownNameError, match="did you mean 'logloss'"):
        check_ctr_metrics(["auc", "log_loss"])


@pytest.mark.parametrize(("args", "expected"), [
    (["--metrics", "auc,aucc"], "unknown click metric 'aucc' (did you mean 'auc'?)"),
    (["--metrics", "ndcg@10"], "--metrics ndcg@10 is a ranking metric"),
    (["--fields", "0:8,8-20"], "--fields expects START:STOP"),
    (["--fields", "0:10,8:20,20:"], "overlap"),
    (["--model", "ease"], "ease is not a click model"),
    (["--test", "MISSING"], "MISSING: no such file"),
    (["--format", "criteo"], "line 1"),
    (["--format", "events"], "--format events needs --label"),
    (["--split", "u1"], "--split and --protocol do not apply"),
])
def test_errors_are_one_line_exit_2(args: list[str], expected: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    path = write_libfm(tmp_path / "train.libfm", 200)
    base = {"--dataset": str(path), "--format": "libfm", "--model": "fm"}
    given = dict(zip(args[::2], args[1::2]))
    argv = [x for k, v in {**base, **given}.items() for x in (k, v)]
    assert main(["evaluate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in " ".join(err.split()) and len(err.splitlines()) == 1, err


def test_ctr_options_need_a_format(capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--model", "ease", "--test", "x.libfm"]) == 2
    assert "--test applies to CTR files" in capsys.readouterr().err


def test_evaluate_clicks_scores_the_label_asked_for() -> None:
    from recforge.data.ctr_formats import anonymous_events
    from recforge.evaluation.ctr import evaluate_clicks
    from recforge.models.registry import create_model

    rng = np.random.default_rng(0)
    n = 1200
    x = rng.integers(0, 6, n)
    # "click" is noise, "like" follows x: only scoring "like" gives a high AUC
    events = anonymous_events({"click": rng.random(n) < 0.5, "like": x >= 3},
                              pd.DataFrame({"x": x.astype(str)}), "two labels")
    train, valid, test = random_parts(events, seed=0)
    model = create_model("logistic-regression", epochs=3, learning_rate=0.05, threads=1,
                         history_length=0)
    result = evaluate_clicks(model, train, test, valid, metrics=["auc"], label="like")
    assert result["label"] == "like" and model.tasks_ == ["like"]
    assert result["metrics"]["auc"] > 0.95 and result["rows"] == len(test) == 120
    with pytest.raises(InputError, match="is not a click model"):
        evaluate_clicks(create_model("ease"), train, test)
    with pytest.raises(UnknownNameError, match="no label 'clicks'"):
        evaluate_clicks(create_model("logistic-regression"), train, test, label="clicks")


def test_events_files_share_one_id_space(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def log(n: int, users: int) -> pd.DataFrame:
        frame = pd.DataFrame({"user": rng.integers(0, users, n), "item": rng.integers(0, 20, n),
                              "device": rng.choice(["a", "b"], n)})
        frame["clicked"] = ((frame["device"] == "a") ^ (rng.random(n) < 0.1)).astype(int)
        return frame

    log(800, 30).to_csv(tmp_path / "train.csv", index=False)
    log(200, 40).to_csv(tmp_path / "test.csv", index=False)  # ten users only in the test file
    record = run_json(["--dataset", str(tmp_path / "train.csv"), "--format", "events",
                       "--label", "clicked", "--test", str(tmp_path / "test.csv"), "--model",
                       "logistic-regression", "--param", "learning_rate=0.05"], tmp_path)
    assert record["rows"] == {"train": 720, "valid": 80, "test": 200}
    assert record["split"].startswith("test file; validation random")
    assert record["gauc_users"] <= record["test_users"] <= 40
    assert record["metrics"]["auc"] > 0.8
