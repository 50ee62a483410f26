"""`recforge run`: a tiny experiment end to end, its run folder, repeatability and early errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.cli import main
from recforge.experiments.config import load_experiment, parse_experiment, resolved_config
from recforge.experiments.rundir import metrics_file_name, write_run
from recforge.experiments.runner import load_split, run_experiment
from recforge.models.base import Recommender

TINY = """
[experiment]
name = "tiny"
seeds = [0, 1]

[data]
dataset = "synthetic"
options = { n_users = 120, n_items = 150, n_interactions = 3000 }

[split]
method = "leave-last-out"

[evaluation]
protocols = ["sampled-49", "full"]
metrics = ["hr", "ndcg", "mrr", "coverage"]
cutoffs = [5, 10]

[[models]]
name = "most-popular"

[[models]]
name = "ials"
params = { factors = 8, epochs = 2 }

[[models]]
name = "gmf"
label = "GMF tiny"
params = { factors = 4, epochs = 1 }

[report]
enabled = false
max_k = 15
"""


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exp") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def run_dir(tiny_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny-run"
    assert main(["run", str(tiny_file), "--out", str(out)]) == 0
    return out


def test_record_has_every_model_seed_and_protocol() -> None:
    record = run_experiment(parse_experiment(TINY))
    assert [(m.label, m.seed) for m in record.models] == [
        (label, seed) for seed in (0, 1) for label in ("most-popular", "ials", "GMF tiny")]
    assert record.protocols == ["sampled-49", "full"]
    assert record.metrics == ["HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR", "Coverage@5",
                              "Coverage@10"]
    for model in record.models:
        assert set(model.results) == {"sampled-49", "full"}
        assert "Coverage@10" in model.results["full"].metrics
        assert "Coverage@10" not in model.results["sampled-49"].metrics
        assert model.top_items.shape == (len(record.test_users), 15)
        seen = record.train.binary_csr[record.test_users].toarray()
        assert not np.take_along_axis(seen, np.maximum(model.top_items, 0), axis=1).any()
    ials = next(m for m in record.models if m.label == "ials")
    assert len(ials.history) == 2 and ials.history[0]["epoch"] == 1
    assert record.models[0].history == []
    assert np.array_equal(record.test_users, np.unique(record.test.users))


def test_same_file_and_seed_give_identical_metrics(run_dir: Path, tiny_file: Path,
                                                   tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["run", str(tiny_file), "--out", str(again)]) == 0
    first = json.loads((run_dir / "summary.json").read_text())
    second = json.loads((again / "summary.json").read_text())
    for a, b in zip(first["results"], second["results"], strict=True):
        assert (a["label"], a["seed"], a["protocol"]) == (b["label"], b["seed"], b["protocol"])
        assert a["metrics"] == b["metrics"] and a["intervals"] == b["intervals"]
    by_seed = {r["seed"]: r["metrics"] for r in first["results"]
               if r["label"] == "ials" and r["protocol"] == "full"}
    assert by_seed[0] != by_seed[1]  # the seed reaches the model


def test_run_folder_holds_config_environment_metrics_and_summary(run_dir: Path) -> None:
    resolved = load_experiment(run_dir / "config.resolved.toml")
    assert resolved_config(resolved) == resolved_config(parse_experiment(TINY))
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["packages"]["numpy"] == np.__version__ and env["python"]
    assert env["seeds"] == {"split": 0, "runs": [0, 1]}
    assert len(env["data"]["train_sha256"]) == 64 and env["data"]["files"] == {}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["results"]) == 3 * 2 * 2
    board = summary["leaderboard"]["full"]
    assert [row["seeds"] for row in board] == [2, 2, 2]
    firsts = [row["metrics"]["HR@5"] for row in board]
    assert firsts == sorted(firsts, reverse=True)
    frame = pd.read_parquet(run_dir / "metrics" / metrics_file_name("GMF tiny", 1, "full"))
    assert list(frame.columns[:3]) == ["user", "user_id", "cold"]
    entry = next(r for r in summary["results"]
                 if (r["label"], r["seed"], r["protocol"]) == ("GMF tiny", 1, "full"))
    assert frame["NDCG@10"].mean() == pytest.approx(entry["metrics"]["NDCG@10"])
    assert len(list((run_dir / "metrics").glob("*.parquet"))) == 12


def test_file_dataset_checksum_is_recorded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, 40, 800), "item": rng.integers(0, 60, 800),
                          "timestamp": rng.integers(0, 10**6, 800)})
    frame.to_csv(tmp_path / "log.csv", index=False)
    exp = parse_experiment('[data]\ndataset = "log.csv"\n[[models]]\nname = "most-popular"\n',
                           base_dir=tmp_path)
    summary = write_run(run_experiment(exp), tmp_path / "run")
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    from recforge.data.download import sha256_file

    assert env["data"]["files"] == {"log.csv": sha256_file(tmp_path / "log.csv")}
    assert summary["dataset"].endswith("log.csv")


def test_malformed_file_stops_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was trained")

    monkeypatch.setattr(Recommender, "fit", no_training)
    cases = {'name = "ials"': ('name = "ials-x"', "unknown model 'ials-x'"),
             "cutoffs = [5, 10]": ("cutof = [5]", "evaluation.cutof: unknown key"),
             "factors = 8": ('factors = "big"', "models[1].params.factors: must be an integer")}
    for old, (new, message) in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(TINY.replace(old, new))
        assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "bad.toml" in err and message in err
    assert not (tmp_path / "out").exists()


def test_rating_models_on_implicit_data_stop_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    exp = parse_experiment(TINY.replace("n_interactions = 3000",
                                        'n_interactions = 3000, feedback = "implicit"')
                           .replace('name = "most-popular"', 'name = "biased-mf"'))
    monkeypatch.setattr(Recommender, "fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="biased-mf need ratings"):
        run_experiment(exp)


def test_split_seed_is_shared_by_every_run_seed() -> None:
    exp = parse_experiment(TINY.replace('method = "leave-last-out"',
                                        'method = "random"\nseed = 4\ntest_fraction = 0.3'))
    split = load_split(exp)
    assert len(split.test) == round(0.3 * (len(split.train) + len(split.test)))
    assert split.seed == 4


def test_an_unrelated_folder_is_never_replaced(tiny_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["run", str(tiny_file), "--out", str(tmp_path / "mine")]) == 2
    assert "a folder recforge did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
