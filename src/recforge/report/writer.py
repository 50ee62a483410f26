"""`write_report`: assemble the report's sections and write report.md, report.html, figures/."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recforge.experiments.record import ExperimentRecord
from recforge.io import atomic_dir, atomic_path, marker_kind
from recforge.report import analysis, figures
from recforge.report.document import Document, Figure, Section, Table
from recforge.report.html import render_html
from recforge.report.markdown import render_markdown
from recforge.report.tables import (
    INTERVAL_RULE,
    Intervals,
    frame_table,
    intervals,
    leaderboard,
    primary_metric,
    protocol_label,
    report_protocols,
    runs_by_label,
    seed_mean,
)
from recforge.rerank.mmr import DEFAULT_CANDIDATES

FIGURES = "figures"
#: models re-ranked for the MMR trade-off (the best ones with a similarity available)
TRADEOFF_MODELS = 2
EXAMPLE_USERS = 3


class _Builder:
    """Builds the sections, writing each figure into ``folder`` (the future figures/)."""

    def __init__(self, record: ExperimentRecord, folder: Path):
        self.ctx = analysis.Context(record)
        self.record = record
        self.folder = folder
        self.colours = figures.palette(record.labels())

    def figure(self, name: str, caption: str) -> tuple[Path, Figure]:
        """Where to write figure ``name`` and its document entry."""
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
        return self.folder / f"{stem}.png", Figure(Path(FIGURES) / f"{stem}.png", caption)

    def leaderboard(self) -> Section:
        summaries = intervals(self.record)
        section = Section("Leaderboard", [INTERVAL_RULE], [leaderboard(self.record, summaries)])
        for protocol in report_protocols(self.record):
            frames = self._interval_frames(protocol, summaries)
            if frames[0].empty:
                continue
            path, fig = self.figure(f"metrics_{protocol}",
                                    f"Metrics under the {protocol_label(protocol)} protocol: "
                                    "mean over seeds, 95% bootstrap interval of the first seed.")
            figures.metric_bars(frames[0], self.colours, path, frames[1], frames[2])
            section.figures.append(fig)
        return section

    def _interval_frames(self, protocol: str, summaries: Intervals) -> list[pd.DataFrame]:
        """Mean over seeds, low and high (models x per-user metrics) under ``protocol``."""
        by_label = runs_by_label(self.record)
        groups = {label: by_label[label] for label in self.ctx.order}
        per_label = {label: summaries.get((label, protocol), {}) for label in groups}
        names = list(dict.fromkeys(n for s in per_label.values() for n in s))
        mean = pd.DataFrame({n: [seed_mean(groups[lb], protocol, n) for lb in groups]
                             for n in names}, index=list(groups))
        bounds = [pd.DataFrame({n: [per_label[lb].get(n, {}).get(key, float("nan"))
                                    for lb in groups] for n in names}, index=list(groups))
                  for key in ("low", "high")]
        return [mean, *bounds]

    def cutoffs(self) -> Section:
        path, fig = self.figure("cutoff_curves", "Precision, Recall and NDCG at K = 1.."
                                f"{self.record.max_k} (full ranking, first seed).")
        figures.cutoff_curves(analysis.cutoff_curves(self.ctx), self.colours, path)
        return Section("Accuracy at every cutoff", [
            ("Computed from each model's full-ranking top lists (seen items excluded) against "
            "all test items of each test user; mean over test users.")], figures=[fig])

    def activity(self) -> Section | None:
        primary = primary_metric(self.record)
        table = analysis.by_activity(self.ctx, primary.protocol, primary.name)
        if table.empty:
            return None
        path, fig = self.figure("activity", f"{primary.name} ({primary.protocol}) by the "
                                "user's number of training interactions.")
        figures.activity_buckets(table, primary.name, self.colours, path)
        return Section("Accuracy by user activity (cold start)", [
            ("Buckets are half-open intervals [lo, hi) of training interactions: quartiles of "
            "the test users with history, after a cold-start bucket [0, 1) when some test "
            "users have none. First seed per model.")],
            [frame_table(table, "activity")], [fig])

    def popularity(self) -> Section:
        catalogue, shares = analysis.popularity_deciles(self.ctx)
        path, fig = self.figure("popularity", "Share of top-10 recommendations per popularity "
                                "decile of the catalogue, against training interactions.")
        figures.popularity_deciles(catalogue, shares, self.colours, path)
        frame = pd.DataFrame({"training interactions": catalogue} | shares,
                             index=range(1, len(catalogue) + 1)).T
        return Section("Popularity and the long tail", [
            ("Items are ranked by training popularity and cut into ten deciles of the catalogue "
            "(1 = most popular). Cells: share of all top-10 recommendations (or of training "
            "interactions) in each decile.")],
            [frame_table(frame, "decile →", 3)], [fig])

    def beyond(self) -> Section:
        table = pd.DataFrame(analysis.beyond_accuracy(self.ctx)).T
        path, fig = self.figure("beyond_accuracy", "Catalogue coverage, intra-list diversity, "
                                "novelty and average popularity of the top-10 lists.")
        figures.metric_bars(table, self.colours, path, cols=len(table.columns))
        return Section("Coverage, diversity and novelty", [
            ("Top-10 lists of the first seed. Diversity: mean pairwise cosine distance on "
             f"{self.ctx.diversity_basis}. Novelty: mean -log2(pop / active users). ARP: mean "
             "training popularity.")],
            [frame_table(table, "model")], [fig])

    def tradeoff(self) -> Section | None:
        curves = analysis.tradeoff(self.ctx, self._tradeoff_labels())
        if not curves:
            return None
        path, fig = self.figure("mmr_tradeoff", "NDCG@10 against intra-list diversity@10 as "
                                "MMR's lambda varies (lambda = 1: the model's own order).")
        figures.tradeoff(curves, self.colours, path)
        frame = pd.concat(curves, names=["model", None]).reset_index(level=0)
        frame["lambda"] = frame["lambda"].map("{:g}".format)
        return Section("Diversity re-ranking (MMR)", [
            (f"Maximal marginal relevance (recforge.rerank) re-orders each model's top "
             f"{DEFAULT_CANDIDATES}: lambda * relevance - (1 - lambda) * max cosine similarity "
             "to the items already chosen, relevance min-max scaled per user, similarity on "
             f"{self.ctx.diversity_basis}. Full ranking, first seed, "
             f"{min(len(self.record.test_users), analysis.TRADEOFF_USERS):,} test users (a "
             "seeded sample when there are more).")],
            [frame_table(frame.set_index("model"), "model")], [fig])

    def _tradeoff_labels(self) -> list[str]:
        usable = [label for label, run in self.ctx.first.items()
                  if self.ctx.diversity_features(run) is not None]
        return usable[:TRADEOFF_MODELS]

    def embeddings(self) -> Section | None:
        maps = analysis.tsne_maps(self.ctx)
        if not maps:
            return None
        genres = analysis.primary_genres(self.ctx)
        groups = genres if genres is not None else analysis.popularity_groups(self.ctx)
        legend = "rarest genre" if genres is not None else "popularity decile"
        path, fig = self.figure("tsne", f"t-SNE of item vectors, coloured by {legend}.")
        figures.tsne_maps(maps, groups, legend, path)
        return Section("Item embeddings", [
            (f"t-SNE (seed 0, perplexity 30, PCA start) of the item vectors of the best "
            f"{len(maps)} model(s) that have them, first seed. An item's colour is its "
            f"{legend} (a multi-genre item takes its least common genre, the most specific).")],
            figures=[fig])

    def training(self) -> Section | None:
        histories = {label: run.history for label, run in self.ctx.first.items() if run.history}
        if not histories:
            return None
        path, fig = self.figure("training_curves", "Training loss and validation figures per "
                                "epoch (first seed).")
        figures.training_curves(histories, self.colours, path)
        return Section("Training curves", figures=[fig])

    def examples(self) -> Section:
        titles = analysis.item_titles(self.ctx)
        section = Section("Example recommendations", [
            ("Test users drawn with seed 0 among those with at least 5 training interactions. "
            "Left: the user's highest-rated training items; then each model's top 10 "
            "(first seed); ✓ marks an item in the user's test set.")])
        for row in analysis.example_users(self.ctx, EXAMPLE_USERS):
            section.tables.append(self._example(row, titles))
        return section

    def _example(self, row: int, titles: np.ndarray) -> Table:
        user = int(self.record.test_users[row])
        relevant = set(self.ctx.relevance[row].indices.tolist())
        rated = [f"{titles[i]} ({v:g})" for i, v in analysis.top_rated(self.ctx, user)]
        lists = [[titles[i] + (" ✓" if i in relevant else "") if i >= 0 else ""
                  for i in run.top_items[row, :analysis.CUTOFF]] for run in self.ctx.first.values()]
        external = self.record.train.user_map.to_external([user])[0]
        header = [f"user {external}: rated", *self.ctx.first]
        columns = [rated, *lists]
        depth = max(map(len, columns))
        return Table(header, [[c[j] if j < len(c) else "" for c in columns]
                              for j in range(depth)])

    def sections(self) -> list[Section]:
        built = [self.leaderboard(), self.cutoffs(), self.activity(), self.popularity(),
                 self.beyond(), self.tradeoff(), self.embeddings(), self.training(),
                 self.examples()]
        return [section for section in built if section is not None]


def _lead(record: ExperimentRecord) -> list[str]:
    split = record.split.get("split", record.split.get("method", "?"))
    primary = primary_metric(record)
    return [(f"Dataset {record.dataset}, split {split}; "
             f"{len(record.test_users):,} test users, {record.train.n_users:,} users x "
             f"{record.train.n_items:,} items, {len(record.train):,} training interactions. "
             f"Protocols: {', '.join(map(protocol_label, report_protocols(record)))}. "
             f"Primary metric: {primary.name} ({primary.protocol}).")]


def write_report(record: ExperimentRecord, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, a self-contained ``report.html`` and ``figures/*.png`` under
    ``out_dir``; returns ``{"markdown", "html", "figures", <figure stem>...}`` paths.

    ``out_dir`` is written as one unit (`recforge.io.atomic_dir`): a new report folder, or
    an earlier recforge report or run folder updated with its other files kept; a folder
    recforge did not write is refused."""
    out_dir = Path(out_dir)
    kind = "run" if marker_kind(out_dir) == "run" else "report"
    with atomic_dir(out_dir, kind, update=True) as tmp:
        paths = write_report_files(record, tmp)
    return {name: out_dir / path.relative_to(tmp) for name, path in paths.items()}


def write_report_files(record: ExperimentRecord, out_dir: Path) -> dict[str, Path]:
    """`write_report` into ``out_dir``, a folder being written (the temporary folder of a
    run or report output)."""
    start = time.perf_counter()
    with atomic_dir(out_dir / FIGURES) as tmp:
        sections = _Builder(record, tmp).sections()
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
