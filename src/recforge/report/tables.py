"""The leaderboard: mean over seeds, bootstrap intervals and paired tests against the best.

Full ranking is the primary protocol: it ranks the models and comes first; sampled protocols
stay beside it, labelled as such (`protocol_label`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recforge.evaluation.evaluator import EvaluationResult
from recforge.evaluation.metrics import parse_metric
from recforge.experiments.record import ExperimentRecord, ModelRecord
from recforge.report.document import Table

ALPHA = 0.05
#: the label of sampled figures: they overstate full-ranking figures and can reorder models
#: (Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020)
SAMPLED_NOTE = "optimistic; see Krichene & Rendle"
INTERVAL_RULE = ("Each cell is the mean over a label's seeds (± their standard deviation when "
                 "there are several); the bracket is the 95% percentile "
                 "bootstrap interval (1,000 resamples of users) of the first seed's run (lowest "
                 "seed). Paired tests (t-test and Wilcoxon signed-rank over the users both runs "
                 "evaluated) compare each model's first-seed run with the best model's on the "
                 f"primary metric; * marks p < {ALPHA:g}.")


@dataclass(frozen=True)
class Primary:
    """The metric that ranks the models: the first metric under the first protocol."""

    protocol: str
    name: str
    lower_is_better: bool


def runs_by_label(record: ExperimentRecord) -> dict[str, list[ModelRecord]]:
    """Each label's runs, sorted by seed, labels in lineup order."""
    groups = {label: [] for label in record.labels()}
    for run in record.models:
        groups[run.label].append(run)
    return {label: sorted(runs, key=lambda r: r.seed) for label, runs in groups.items()}


def is_sampled(protocol: str) -> bool:
    """Whether ``protocol`` ranks against sampled negatives (``sampled-N``,
    ``next-item-sampled-N``) rather than the whole catalogue."""
    return re.search(r"(^|-)sampled-\d+$", protocol) is not None


def protocol_label(protocol: str) -> str:
    """The protocol's name as reports show it: sampled protocols carry `SAMPLED_NOTE`."""
    return f"{protocol} ({SAMPLED_NOTE})" if is_sampled(protocol) else protocol


def report_protocols(record: ExperimentRecord) -> list[str]:
    """The record's protocols, primary first: the first full-ranking protocol leads (the
    first protocol when every one is sampled); the rest keep their order."""
    primary = next((p for p in record.protocols if not is_sampled(p)), record.protocols[0])
    return [primary, *(p for p in record.protocols if p != primary)]


def primary_metric(record: ExperimentRecord) -> Primary:
    """The first metric under the primary protocol (`report_protocols`)."""
    spec = parse_metric(record.metrics[0])
    return Primary(report_protocols(record)[0], spec.name, spec.lower_is_better)


def seed_mean(runs: list[ModelRecord], protocol: str, name: str) -> float:
    """Mean over seeds of a metric's value (NaN where no run has it)."""
    values = [run.results[protocol].metrics.get(name, np.nan) for run in runs
              if protocol in run.results]
    return float(np.nanmean(values)) if values and not np.all(np.isnan(values)) else np.nan


def ranked_labels(record: ExperimentRecord) -> list[str]:
    """Labels best first on the primary metric (NaN last, ties in lineup order)."""
    primary = primary_metric(record)
    groups = runs_by_label(record)
    sign = 1.0 if primary.lower_is_better else -1.0
    key = {label: sign * seed_mean(runs, primary.protocol, primary.name)
           for label, runs in groups.items()}
    return sorted(groups, key=lambda label: (np.isnan(key[label]), np.nan_to_num(key[label])))


def metric_names(record: ExperimentRecord, protocol: str) -> list[str]:
    """Display names of the metrics evaluated under ``protocol``, in order, each once."""
    names = [name for run in record.models if protocol in run.results
             for name in run.results[protocol].names]
    return list(dict.fromkeys(names))


def _cell(runs: list[ModelRecord], protocol: str, name: str,
          intervals: dict[str, dict[str, float]]) -> str:
    mean = seed_mean(runs, protocol, name)
    if np.isnan(mean):
        return "–"
    text = f"{mean:.4f}"
    if len(runs) > 1:
        values = [run.results[protocol].metrics[name] for run in runs if protocol in run.results]
        text += f" ±{np.std(values, ddof=1):.4f}"
    interval = intervals.get(name)
    if interval is not None:
        text += f" [{interval['low']:.4f}, {interval['high']:.4f}]"
    return text


def _pvalue(p: float) -> str:
    return f"{p:.2g}{'*' if p < ALPHA else ''}"


def paired_against_best(record: ExperimentRecord) -> dict[str, dict[str, float]]:
    """Paired tests of each label's first-seed run against the best label's, primary metric."""
    primary = primary_metric(record)
    groups = runs_by_label(record)
    best = groups[ranked_labels(record)[0]][0].results.get(primary.protocol)
    out = {}
    for label, runs in groups.items():
        result: EvaluationResult | None = runs[0].results.get(primary.protocol)
        if result is None or best is None or primary.name not in result.per_user:
            continue
        out[label] = result.compare(best, primary.name)
    return out


Intervals = dict[tuple[str, str], dict[str, dict[str, float]]]


def intervals(record: ExperimentRecord, n_boot: int = 1000) -> Intervals:
    """``{(label, protocol): summary}``: bootstrap intervals of each label's first-seed run."""
    return {(label, p): runs[0].results[p].summary(n_boot=n_boot)
            for label, runs in runs_by_label(record).items() for p in record.protocols
            if p in runs[0].results}


def leaderboard(record: ExperimentRecord, summaries: Intervals | None = None) -> Table:
    """One row per label, best first: every metric per protocol and the paired p-values."""
    primary = primary_metric(record)
    groups = runs_by_label(record)
    order = ranked_labels(record)
    columns = [(p, name) for p in report_protocols(record) for name in metric_names(record, p)]
    summaries = intervals(record) if summaries is None else summaries
    tests = paired_against_best(record)
    multi = len(record.protocols) > 1
    header = (["rank", "model", "seeds"]
              + [f"{n} ({protocol_label(p)})" if multi else n for p, n in columns]
              + [f"Δ {primary.name} vs best", "t-test p", "Wilcoxon p", "fit s"])
    rows = []
    for rank, label in enumerate(order, 1):
        runs = groups[label]
        test = tests.get(label)
        same = label == order[0] or test is None
        rows.append([str(rank), label, str(len(runs))]
                    + [_cell(runs, p, n, summaries.get((label, p), {})) for p, n in columns]
                    + (["best" if label == order[0] else "–", "–", "–"] if same else
                       [f"{test['mean_diff']:+.4f}", _pvalue(test["t_pvalue"]),
                        _pvalue(test["wilcoxon_pvalue"])])
                    + [f"{np.mean([r.fit_seconds for r in runs]):.1f}"])
    return Table(header, rows)


def frame_table(frame: pd.DataFrame, index_name: str, digits: int = 4) -> Table:
    """A `Table` of a data frame: the index first, floats to ``digits`` decimals."""
    def fmt(value: object) -> str:
        if isinstance(value, (float, np.floating)):
            return "–" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    rows = [[str(index), *map(fmt, row)]
            for index, row in zip(frame.index, frame.itertuples(index=False))]
    return Table([index_name, *map(str, frame.columns)], rows)
