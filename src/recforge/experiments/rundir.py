"""The run folder: what a run needs to be repeated exactly, and its results.

::

    <run>/config.resolved.toml   the experiment with every default filled in (runnable)
    <run>/environment.json       Python, platform, package versions, data checksums, seeds
    <run>/summary.json           per model, seed and protocol: means, 95% intervals, seconds;
                                 and a leaderboard averaged over seeds
    <run>/metrics/<label>-seed<k>-<protocol>.parquet   per-user metric arrays
    <run>/report.md, report.html, figures/             written by `recforge.report`
    <run>/.recforge.json         recforge's marker: the folder's kind and its files' sums

The folder is written as one unit (`run_output`): an earlier run's folder is replaced only
when its marker says recforge wrote it, never a folder that merely holds a ``summary.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import re
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.evaluation.evaluator import EvaluationResult
from recforge.evaluation.metrics import parse_metric
from recforge.experiments import tomlw
from recforge.experiments.record import ExperimentRecord, ModelRecord
from recforge.io import atomic_dir, atomic_path

PACKAGES = ("recforge", "numpy", "scipy", "pandas", "pyarrow", "numba", "torch", "rich",
            "matplotlib", "optuna")


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``runs/<name>-<UTC timestamp>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{name}-{stamp}"


def run_output(path: str | Path, kind: str = "run") -> contextlib.AbstractContextManager[Path]:
    """`recforge.io.atomic_dir` for a run (or ``tune``) folder: checked and locked on entry,
    so enter it before the experiment runs; only an absent or empty folder or an earlier
    recforge folder of ``kind`` (by its marker, not by a common file name) is replaced."""
    return atomic_dir(path, kind)


def write_run(record: ExperimentRecord, run_dir: str | Path) -> dict[str, Any]:
    """Write the run folder as one unit (`run_output`); returns the summary."""
    with run_output(run_dir) as tmp:
        return write_run_files(record, tmp)


def write_run_files(record: ExperimentRecord, folder: Path) -> dict[str, Any]:
    """Write the configuration, environment, per-user metrics and summary into ``folder``
    (the temporary folder of a `run_output`); returns the summary."""
    results = summary(record)
    (folder / "config.resolved.toml").write_text(tomlw.dumps(record.config))
    write_json(folder / "environment.json", environment(record))
    (folder / "metrics").mkdir()
    for model in record.models:
        for protocol, result in model.results.items():
            path = folder / "metrics" / metrics_file_name(model.label, model.seed, protocol)
            per_user_frame(result, record.train).to_parquet(path, index=False)
    write_json(folder / "summary.json", results)
    return results


def write_json(path: Path, value: Any) -> None:
    """JSON with NaN written as null, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(value), indent=2) + "\n")


def metrics_file_name(label: str, seed: int, protocol: str) -> str:
    """``<label>-seed<k>-<protocol>.parquet`` with unsafe characters replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", f"{label}-seed{seed}-{protocol}") + ".parquet"


def per_user_frame(result: EvaluationResult, train: Interactions) -> pd.DataFrame:
    """One row per evaluated user: dense index, external id, cold flag, each metric (and its
    weight where the metric is weighted, as ``<metric> weight``)."""
    frame = pd.DataFrame({"user": result.users,
                          "user_id": train.user_map.to_external(result.users),
                          "cold": result.cold})
    for name, values in result.per_user.items():
        frame[name] = values
        if name in result.weights:
            frame[f"{name} weight"] = result.weights[name]
    return frame


# ---------------------------------------------------------------------- environment
def environment(record: ExperimentRecord) -> dict[str, Any]:
    """Python, platform, package versions, data checksums and seeds of the run."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "seeds": {"split": record.config["split"]["seed"],
                  "runs": record.config["experiment"]["seeds"]},
        "data": data_checksums(record),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def data_checksums(record: ExperimentRecord) -> dict[str, Any]:
    """SHA-256 of the dataset's files (none for generated data) and of the train and test
    interactions as loaded."""
    return {"dataset": record.dataset, "files": dataset_file_checksums(record.dataset),
            "train_sha256": interactions_sha256(record.train),
            "test_sha256": interactions_sha256(record.test)}


def dataset_file_checksums(dataset: str) -> dict[str, str]:
    """``{file: sha256}`` of a registered dataset's files, or of the interaction file."""
    from recforge.data.datasets import dataset_names, get_spec, resolve_dataset
    from recforge.data.download import sha256_file

    if dataset.lower() not in dataset_names():
        return {Path(dataset).name: sha256_file(dataset)}
    spec = get_spec(dataset)
    if spec.archive is None:
        return {}
    folder = resolve_dataset(dataset, download=False)
    return {name: sha256_file(folder / name) for name in spec.files}


def interactions_sha256(data: Interactions) -> str:
    """SHA-256 over the interaction columns and the external ids (the data as loaded)."""
    digest = hashlib.sha256()
    for column in (data.users, data.items, data.ratings, data.timestamps, data.weights):
        digest.update(b"-" if column is None else np.ascontiguousarray(column).tobytes())
    for ids in (data.user_map.ids, data.item_map.ids):
        digest.update("\x1f".join(map(str, ids)).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------- summary
def summary(record: ExperimentRecord) -> dict[str, Any]:
    """Per model, seed and protocol results, and the leaderboard (means over seeds)."""
    results = [_result_entry(model, protocol, result)
               for model in record.models for protocol, result in model.results.items()]
    return {"name": record.name, "dataset": record.dataset, "split": record.split,
            "protocols": record.protocols, "metrics": record.metrics,
            "seeds": record.config["experiment"]["seeds"],
            "results": results, "leaderboard": leaderboard(record.protocols, results)}


def _result_entry(model: ModelRecord, protocol: str, result: EvaluationResult) -> dict[str, Any]:
    stats = result.summary(seed=model.seed)
    return {"label": model.label, "model": model.model.name, "seed": model.seed,
            "protocol": protocol, "metrics": result.metrics,
            "intervals": {name: [s["low"], s["high"]] for name, s in stats.items()},
            "fit_seconds": round(model.fit_seconds, 4),
            "eval_seconds": round(result.eval_seconds, 4), "n_users": len(result.users)}


def leaderboard(protocols: list[str], results: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """Per protocol, one entry per label: metrics averaged over seeds (with the across-seed
    standard deviation; the bootstrap interval when there is one seed), best first by the
    protocol's first metric."""
    board: dict[str, list[dict]] = {}
    for protocol in protocols:
        entries = [r for r in results if r["protocol"] == protocol]
        labels = list(dict.fromkeys(r["label"] for r in entries))
        rows = [_board_row([r for r in entries if r["label"] == label]) for label in labels]
        board[protocol] = sorted(rows, key=_sort_key)
    return board


def _board_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(runs[0]["metrics"])
    values = {n: np.array([r["metrics"][n] for r in runs], dtype=np.float64) for n in names}
    row = {"label": runs[0]["label"], "model": runs[0]["model"], "seeds": len(runs),
           "metrics": {n: float(np.nanmean(v)) if not np.isnan(v).all() else math.nan
                       for n, v in values.items()},
           "fit_seconds": float(np.mean([r["fit_seconds"] for r in runs])),
           "eval_seconds": float(np.mean([r["eval_seconds"] for r in runs]))}
    if len(runs) == 1:
        row["intervals"] = runs[0]["intervals"]
    else:
        row["std"] = {n: float(np.std(v, ddof=1)) for n, v in values.items()}
    return row


def _sort_key(row: dict[str, Any]) -> float:
    name, value = next(iter(row["metrics"].items()))
    if math.isnan(value):
        return math.inf
    return value if parse_metric(name).lower_is_better else -value


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite floats replaced by None, numpy scalars as Python."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
