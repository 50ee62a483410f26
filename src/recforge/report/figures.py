"""One function per plot; each draws with matplotlib's object API (Agg canvas, no pyplot
state) and writes a PNG. Colours follow the lineup order so a model keeps its colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from recforge.evaluation.metrics import parse_metric

DPI = 100
OTHER = "other"
MAX_GROUPS = 8


def palette(labels: list[str]) -> dict[str, tuple[float, ...]]:
    """A fixed colour per label (tab10, cycling)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def _grid(n: int, cols: int = 3) -> tuple[int, int]:
    cols = min(cols, max(n, 1))
    return -(-n // cols), cols


def metric_bars(values: pd.DataFrame, colours: dict, path: Path, low: pd.DataFrame | None = None,
                high: pd.DataFrame | None = None, cols: int = 3) -> Path:
    """A panel per metric (columns), a bar per model (rows), whiskers from ``low``/``high``."""
    rows, cols = _grid(len(values.columns), cols)
    fig = new_figure(4 * cols, (0.3 * len(values) + 1.4) * rows)
    y = np.arange(len(values))[::-1]
    for i, name in enumerate(values.columns):
        ax = fig.add_subplot(rows, cols, i + 1)
        err = (None if low is None or high is None else
               np.nan_to_num(np.vstack([values[name] - low[name], high[name] - values[name]])))
        ax.barh(y, values[name].fillna(0), xerr=err, capsize=3,
                color=[colours[label] for label in values.index])
        ax.set_yticks(y, values.index if i % cols == 0 else [])
        ax.set_xlabel(name)
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def cutoff_curves(curves: dict[str, dict[str, np.ndarray]], colours: dict, path: Path) -> Path:
    """Precision, Recall and NDCG against the cutoff K, one line per model."""
    names = list(next(iter(curves.values())))
    fig = new_figure(13, 3.8)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for label, by_name in curves.items():
            ks = np.arange(1, len(by_name[name]) + 1)
            ax.plot(ks, by_name[name], color=colours[label], label=label)
        ax.set_xlabel("K")
        ax.set_ylabel(f"{name}@K")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="small")
    return _save(fig, path)


def _grouped_bars(ax, table: pd.DataFrame, colours: dict) -> None:
    """Bars grouped by the table's rows, one bar per column (model)."""
    width = 0.8 / max(len(table.columns), 1)
    x = np.arange(len(table))
    for j, label in enumerate(table.columns):
        ax.bar(x + (j - (len(table.columns) - 1) / 2) * width, table[label], width,
               color=colours[label], label=label)
    ax.set_xticks(x, table.index)
    ax.grid(axis="y", alpha=0.3)


def activity_buckets(table: pd.DataFrame, name: str, colours: dict, path: Path) -> Path:
    """A metric per bucket of users' training activity (grouped bars per model)."""
    fig = new_figure(10, 4)
    ax = fig.add_subplot()
    models = table.drop(columns="users")
    models.index = [f"{bucket}\n{users} users"
                    for bucket, users in zip(table.index, table["users"])]
    _grouped_bars(ax, models, colours)
    ax.set_xlabel("training interactions of the user")
    ax.set_ylabel(name)
    ax.legend(fontsize="small", ncols=2)
    return _save(fig, path)


def popularity_deciles(catalogue: np.ndarray, shares: dict[str, np.ndarray], colours: dict,
                       path: Path) -> Path:
    """Share of recommendations per catalogue popularity decile, beside training's share."""
    fig = new_figure(10, 4)
    ax = fig.add_subplot()
    x = np.arange(1, len(catalogue) + 1)
    ax.plot(x, catalogue, "k--", marker="s", label="training interactions")
    for label, share in shares.items():
        ax.plot(x, share, marker="o", color=colours[label], label=label)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(x, [f"{d}" for d in x])
    ax.set_xlabel("item popularity decile (1 = the 10% most popular items, 10 = the long tail)")
    ax.set_ylabel("share of top-10 recommendations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncols=2)
    return _save(fig, path)


def _group_colours(groups: np.ndarray) -> tuple[list[str], dict]:
    """The most frequent ``MAX_GROUPS`` groups (others become `OTHER`) and their colours."""
    from matplotlib import colormaps

    names, counts = np.unique(groups, return_counts=True)
    top = list(names[np.lexsort((names, -counts))][:MAX_GROUPS])
    cmap = colormaps["tab10"]
    return top, {g: cmap(i) for i, g in enumerate(top)} | {OTHER: (0.75, 0.75, 0.75, 1.0)}


def tsne_maps(maps: dict[str, tuple[np.ndarray, np.ndarray]], groups: np.ndarray,
              legend: str, path: Path) -> Path:
    """Scatter of each model's 2-D item map, items coloured by their group (e.g. genre)."""
    rows, cols = _grid(len(maps), 2)
    fig = new_figure(6 * cols, 5.5 * rows)
    for i, (label, (xy, items)) in enumerate(maps.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        top, colours = _group_colours(groups[items])
        named = np.where(np.isin(groups[items], top), groups[items], OTHER)
        for group in [OTHER, *top[::-1]]:
            sel = named == group
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=colours[group], label=group)
        ax.set_title(f"{label}: {len(items)} most popular items")
        ax.set_xticks([])
        ax.set_yticks([])
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], title=legend, fontsize="small", markerscale=2)
    return _save(fig, path)


def is_validation_metric(key: str) -> bool:
    """True for an epoch record's validation metric: a metric name such as ``ndcg@10``, or
    ``neg_<metric>`` (the early-stopping score of rating models)."""
    try:
        parse_metric(key.removeprefix("neg_"))
    except ValueError:
        return False
    return True


def training_curves(histories: dict[str, list[dict]], colours: dict, path: Path) -> Path:
    """Training loss (log scale) and each validation metric per epoch, one line per model;
    other per-epoch figures (throughput, sample counts) are left out."""
    keys = {key for history in histories.values() for record in history for key in record}
    panels = ["loss", *sorted(filter(is_validation_metric, keys))]
    fig = new_figure(5 * len(panels), 3.8)
    for i, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for label, history in histories.items():
            points = [(r["epoch"], r[key]) for r in history if key in r]
            if points:
                ax.plot(*zip(*points), marker=".", color=colours[label], label=label)
        if key == "loss":
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key if key == "loss" else f"validation {key}")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="small")
    return _save(fig, path)


def tradeoff(curves: dict[str, pd.DataFrame], colours: dict, path: Path) -> Path:
    """NDCG@10 against intra-list diversity as MMR's lambda varies, points labelled."""
    fig = new_figure(7, 5)
    ax = fig.add_subplot()
    for label, table in curves.items():
        ax.plot(table["Diversity@10"], table["NDCG@10"], marker="o", color=colours[label],
                label=label)
        for _, row in table.iterrows():
            ax.annotate(f"λ={row['lambda']:g}", (row["Diversity@10"], row["NDCG@10"]),
                        textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax.set_xlabel("intra-list diversity@10")
    ax.set_ylabel("NDCG@10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)
