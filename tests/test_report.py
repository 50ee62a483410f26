"""The experiment report: files, figures, self-contained HTML and the leaderboard."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from recforge.data import synthetic
from recforge.data.splits import make_split
from recforge.evaluation import Evaluator, early_stopping
from recforge.experiments.record import ExperimentRecord, ModelRecord
from recforge.models import create_model
from recforge.report import analysis, figures, write_report
from recforge.report.tables import leaderboard, primary_metric, protocol_label, ranked_labels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = {"metrics_full", "metrics_sampled-20", "cutoff_curves", "activity", "popularity",
           "beyond_accuracy", "mmr_tradeoff", "tsne", "training_curves"}
LINEUP = {"most-popular": {}, "ease": {"reg": 50.0}, "bpr": {"epochs": 4, "factors": 16}}


def _run(label: str, seed: int, train, test, users: np.ndarray) -> ModelRecord:
    params = LINEUP[label] | ({"seed": seed} if label == "bpr" else {})
    valid = early_stopping(train, test) if label == "bpr" else None
    model = create_model(label, **params).fit(train, valid)
    full = Evaluator(train, test, ["ndcg@10", "recall@10", "coverage@10"])
    results = {"full": full.evaluate(model),
               "sampled-20": Evaluator(train, test, ["hr@10"], protocol="sampled-20",
                                       seed=seed).evaluate(model)}
    top, _ = model.recommend(users, 50)
    return ModelRecord(label, model, seed, 0.01, results, top, list(getattr(model, "history_", [])))


@pytest.fixture(scope="module")
def record() -> ExperimentRecord:
    data = synthetic.generate(n_users=150, n_items=120, n_interactions=4000, seed=3)
    data.item_features = data.item_features.align(data.item_map)
    split = make_split(data, "random", seed=0)
    users = np.unique(split.test.users)
    runs = [_run(label, seed, split.train, split.test, users)
            for label in LINEUP for seed in ((0, 1) if label == "bpr" else (0,))]
    return ExperimentRecord("test", "synthetic", {"method": "random"}, split.train, split.test,
                            users, ["ndcg@10", "recall@10", "coverage@10", "hr@10"],
                            ["full", "sampled-20"], runs, {})


@pytest.fixture(scope="module")
def written(record: ExperimentRecord, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(record, tmp_path_factory.mktemp("report"))


def test_report_files_and_figures_exist_and_are_non_empty(written: dict[str, Path]) -> None:
    for key in ("markdown", "html"):
        assert written[key].is_file() and written[key].stat().st_size > 0
    assert {path.stem for path in written["figures"].glob("*.png")} == FIGURES
    markdown = written["markdown"].read_text()
    for stem in FIGURES:
        assert written[stem].read_bytes()[:8] == PNG_SIGNATURE
        assert written[stem].stat().st_size > 5000
        assert f"](figures/{stem}.png)" in markdown


def test_html_is_self_contained(written: dict[str, Path]) -> None:
    html = written["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html and "<link" not in html
    assert html.count('src="data:image/png;base64,') == len(list(written["figures"].glob("*.png")))


def test_leaderboard_lists_every_label_with_intervals(record: ExperimentRecord,
                                                     written: dict[str, Path]) -> None:
    table = leaderboard(record)
    assert sorted(row[1] for row in table.rows) == sorted(record.labels())
    ndcg = table.header.index("NDCG@10 (full)")
    cell = re.compile(r"[\d.]+( ±[\d.]+)? \[[\d.]+, [\d.]+\]")
    assert all(cell.fullmatch(row[ndcg]) for row in table.rows)
    text = written["markdown"].read_text()
    assert all(f"| {label} |" in text for label in record.labels())


def test_full_ranking_is_primary_and_sampled_figures_are_labelled(
        record: ExperimentRecord, written: dict[str, Path]) -> None:
    assert "Protocols: full, sampled-20 (optimistic; see Krichene & Rendle)." in written[
        "markdown"].read_text()
    sampled_first = dataclasses.replace(record, protocols=["sampled-20", "full"])
    assert primary_metric(sampled_first).protocol == "full"
    header = leaderboard(sampled_first).header
    assert header.index("NDCG@10 (full)") < header.index(
        "HR@10 (sampled-20 (optimistic; see Krichene & Rendle))")
    assert ranked_labels(sampled_first) == ranked_labels(record)
    only_sampled = dataclasses.replace(record, protocols=["sampled-20"])
    assert primary_metric(only_sampled).protocol == "sampled-20"
    assert protocol_label("next-item-sampled-99").endswith("(optimistic; see Krichene & Rendle)")
    assert protocol_label("next-item") == "next-item"


def test_best_model_ranks_first_and_others_are_tested(record: ExperimentRecord) -> None:
    order = ranked_labels(record)
    means = {label: np.mean([r.results["full"].metrics["NDCG@10"] for r in record.models
                             if r.label == label]) for label in order}
    assert list(means.values()) == sorted(means.values(), reverse=True)
    rows = {row[1]: row for row in leaderboard(record).rows}
    assert rows[order[0]][-4] == "best"
    assert all(re.match(r"[+-]\d", rows[label][-4]) for label in order[1:])


def test_cutoff_curves_and_beyond_accuracy_match_the_evaluator(record: ExperimentRecord) -> None:
    ctx = analysis.Context(record)
    curves = analysis.cutoff_curves(ctx)
    beyond = analysis.beyond_accuracy(ctx)
    for label, run in ctx.first.items():
        evaluated = run.results["full"].metrics
        assert curves[label]["NDCG"][9] == pytest.approx(evaluated["NDCG@10"])
        assert curves[label]["Recall"][9] == pytest.approx(evaluated["Recall@10"])
        assert beyond[label]["Coverage@10"] == pytest.approx(evaluated["Coverage@10"])
        assert len(curves[label]["Precision"]) == record.max_k


def test_popularity_shares_sum_to_one_and_popular_model_sits_in_the_head(
        record: ExperimentRecord) -> None:
    catalogue, shares = analysis.popularity_deciles(analysis.Context(record))
    assert catalogue.sum() == pytest.approx(1.0)
    assert all(share.sum() == pytest.approx(1.0) for share in shares.values())
    assert shares["most-popular"][0] > shares["ease"][0] > catalogue[0]


def test_tradeoff_ends_at_the_plain_lists(record: ExperimentRecord) -> None:
    ctx = analysis.Context(record)
    curves = analysis.tradeoff(ctx, ["ease"])["ease"].set_index("lambda")
    assert curves.loc[1.0, "NDCG@10"] == pytest.approx(ctx.first["ease"].results["full"]
                                                       .metrics["NDCG@10"])
    assert curves.loc[0.0, "Diversity@10"] > curves.loc[1.0, "Diversity@10"]


def test_examples_show_titles_next_to_rated_items(record: ExperimentRecord,
                                                 written: dict[str, Path]) -> None:
    ctx = analysis.Context(record)
    titles = analysis.item_titles(ctx)
    text = written["markdown"].read_text()
    assert text.count(": rated |") == 3
    for row in analysis.example_users(ctx):
        user = record.test_users[row]
        assert all(titles[i] in text for run in ctx.first.values() for i in run.top_items[row, :10])
        assert all(titles[i] in text for i, _ in analysis.top_rated(ctx, user))


def _digests(paths: dict[str, Path]) -> dict[str, str]:
    return {key: hashlib.sha256(path.read_bytes()).hexdigest() for key, path in paths.items()
            if path.suffix == ".png"}


def test_report_without_item_features_and_deterministic_figures(
        record: ExperimentRecord, written: dict[str, Path], tmp_path: Path) -> None:
    train = copy.copy(record.train)
    train.item_features = None
    bare = write_report(dataclasses.replace(record, train=train), tmp_path / "bare")
    assert "mmr_tradeoff" in bare and "tsne" in bare  # bpr's item vectors stand in for genres
    text = bare["markdown"].read_text()
    assert "similarity on item vectors" in text and "popularity decile" in text
    again = write_report(record, tmp_path / "again")
    assert _digests(again) == _digests(written)


@pytest.mark.parametrize(("key", "expected"), [
    ("ndcg@10", True), ("neg_rmse", True), ("HR@5", True),
    ("samples_per_second", False), ("seconds", False), ("lr", False)])
def test_training_curves_plot_validation_metrics_only(key: str, expected: bool) -> None:
    assert figures.is_validation_metric(key) is expected
