"""`write_report`: assemble the report's sections and write report.md, report.html, figures/."""

from __future__ import annotations

import time
from pathlib import Path

from recforge.experiments.record import ExperimentRecord
from recforge.io import atomic_dir, atomic_path
from recforge.report.document import Document, Section
from recforge.report.html import render_html
from recforge.report.markdown import render_markdown
from recforge.report.tables import INTERVAL_RULE, leaderboard, primary_metric

FIGURES = "figures"


def _lead(record: ExperimentRecord) -> list[str]:
    split = record.split.get("split", record.split.get("method", "?"))
    primary = primary_metric(record)
    return [(f"Dataset {record.dataset}, split {split}; "
            f"{len(record.test_users):,} test users, {record.train.n_users:,} users x "
            f"{record.train.n_items:,} items, {len(record.train):,} training interactions. "
            f"Protocols: {', '.join(record.protocols)}. Primary metric: {primary.name} "
            f"({primary.protocol}).")]


def _sections(record: ExperimentRecord, figures: Path) -> list[Section]:
    return [Section("Leaderboard", [INTERVAL_RULE], [leaderboard(record)])]


def write_report(record: ExperimentRecord, out_dir: Path) -> dict[str, Path]:
    """Write ``report.md``, a self-contained ``report.html`` and ``figures/*.png`` under
    ``out_dir``; returns ``{"markdown", "html", "figures", <figure stem>...}`` paths."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    with atomic_dir(out_dir / FIGURES) as tmp:
        sections = _sections(record, tmp)
        stems = sorted(path.stem for path in tmp.glob("*.png"))
    seconds = time.perf_counter() - start
    doc = Document(f"recforge report: {record.name}",
                   _lead(record) + [f"Report generated in {seconds:.1f} s."], sections)
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(render_markdown(doc), encoding="utf-8")
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(render_html(doc, out_dir), encoding="utf-8")
    return paths | {"figures": out_dir / FIGURES} | {
        stem: out_dir / FIGURES / f"{stem}.png" for stem in stems}
