"""`recforge quickstart`: the reduced (CI) run on synthetic data writes the run folder and the
report; the packaged lineup; unregistered models are left out with a note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recforge.cli import main
from recforge.cli.quickstart_cmd import quickstart_experiment, registered_models
from recforge.experiments.steps import default_dataset


def test_reduced_quickstart_writes_report_figures_and_leaderboard(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "qs"
    assert main(["quickstart", "--reduced", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and str(out) in printed
    for name in ("report.md", "report.html", "summary.json", "config.resolved.toml",
                 "environment.json"):
        assert (out / name).stat().st_size > 0, name
    figures = [p for p in (out / "figures").iterdir() if p.is_file()]
    assert figures and all(p.stat().st_size > 0 for p in figures)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "synthetic" and summary["protocols"] == ["full", "sampled-99"]
    full = {row["label"]: row["metrics"]["HR@10"] for row in summary["leaderboard"]["full"]}
    assert set(full) == {"most-popular", "item-knn-implicit", "ials", "ease"}
    assert full["ease"] > full["most-popular"]


def test_packaged_lineup_runs_on_the_chosen_dataset() -> None:
    exp = quickstart_experiment(dataset="synthetic", seed=3)
    assert exp.data.dataset == "synthetic" and exp.experiment.seeds == [3]
    assert exp.split.method == "leave-last-out" and exp.split.ties == "file-order"
    assert exp.evaluation.protocols == ["full", "sampled-99"]
    assert {"most-popular", "item-knn-implicit", "biased-mf", "ials", "ease",
            "neumf"} <= {m.name for m in exp.models}


def test_unregistered_models_are_left_out_with_a_note(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("recforge.models.registry.model_names", lambda: ["ease"])
    kept = registered_models([{"name": "ease"}, {"name": "two-tower"}])
    assert kept == [{"name": "ease"}]
    assert "two-tower not available" in capsys.readouterr().out


def test_default_dataset_falls_back_to_synthetic_with_a_notice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECFORGE_DOWNLOAD_URL", "http://127.0.0.1:9/")  # refused at once
    notices: list[str] = []
    assert default_dataset(notify=notices.append) == "synthetic"
    assert len(notices) == 1 and "synthetic dataset" in notices[0]
