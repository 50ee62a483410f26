"""The experiment report: files, figures, self-contained HTML and the leaderboard."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from recforge.data import synthetic
from recforge.data.splits import make_split
from recforge.evaluation import Evaluator
from recforge.experiments.record import ExperimentRecord, ModelRecord
from recforge.models import create_model
from recforge.report import write_report
from recforge.report.tables import leaderboard, ranked_labels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LINEUP = {"most-popular": {}, "ease": {"reg": 50.0}, "bpr": {"epochs": 4, "factors": 16}}


def _run(label: str, seed: int, train, test, users: np.ndarray) -> ModelRecord:
    params = LINEUP[label] | ({"seed": seed} if label == "bpr" else {})
    model = create_model(label, **params).fit(train, test if label == "bpr" else None)
    results = {"full": Evaluator(train, test, ["ndcg@10", "recall@10", "coverage@10"]).evaluate(model),
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


def test_report_files_exist_and_are_non_empty(written: dict[str, Path]) -> None:
    for key in ("markdown", "html"):
        assert written[key].is_file() and written[key].stat().st_size > 0
    for path in written["figures"].glob("*.png"):
        assert path.read_bytes()[:8] == PNG_SIGNATURE


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
    assert all(re.fullmatch(r"[\d.]+( ±[\d.]+)? \[[\d.]+, [\d.]+\]", row[ndcg]) for row in table.rows)
    text = written["markdown"].read_text()
    assert all(f"| {label} |" in text for label in record.labels())


def test_best_model_ranks_first_and_others_are_tested(record: ExperimentRecord) -> None:
    order = ranked_labels(record)
    means = {label: np.mean([r.results["full"].metrics["NDCG@10"] for r in record.models
                             if r.label == label]) for label in order}
    assert list(means.values()) == sorted(means.values(), reverse=True)
    rows = {row[1]: row for row in leaderboard(record).rows}
    assert rows[order[0]][-4] == "best"
    assert all(re.match(r"[+-]\d", rows[label][-4]) for label in order[1:])
