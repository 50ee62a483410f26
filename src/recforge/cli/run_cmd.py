"""``recforge run`` (an experiment file to a run folder) and ``recforge tune``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recforge.cli.common import console, metrics_table, phase
from recforge.cli.options import positive_int, positive_seconds
from recforge.experiments.config import Experiment, load_experiment
from recforge.experiments.record import ExperimentRecord
from recforge.experiments.rundir import default_run_dir, run_output, write_run_files
from recforge.report.tables import protocol_label


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge run`` and ``recforge tune``."""
    if name == "run":
        parser.add_argument("experiment", help="the experiment TOML file")
        parser.add_argument("--out", default=None,
                            help="run folder (default: runs/<name>-<time>)")
        parser.add_argument("--no-report", action="store_true", help="skip the report")
        parser.set_defaults(func=cmd_run)
        return
    tune = parser
    tune.add_argument("experiment", help="the experiment TOML file (its [tune] section)")
    tune.add_argument("--trials", type=positive_int, default=None, help="number of trials")
    tune.add_argument("--timeout", type=positive_seconds, default=None,
                      help="stop after this many seconds")
    tune.add_argument("--out", default=None, help="output folder (default: runs/<name>-tune-<time>)")
    tune.add_argument("--storage", default=None, metavar="URL",
                      help="share the study through this database (sqlite:///study.db, "
                           "postgresql://...): several processes search together")
    tune.add_argument("--study-name", default=None,
                      help="the study's name in --storage (default: the experiment's name)")
    tune.add_argument("--worker", action="store_true",
                      help="run trials of the shared study and write nothing (the command "
                           "without --worker writes the result, once)")
    tune.add_argument("--pruner", default="none", choices=("none", "median", "hyperband"),
                      help="stop hopeless trials from per-epoch validation (iterative models)")
    tune.set_defaults(func=cmd_tune)


def cmd_run(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.experiment)
    if args.no_report:
        experiment.report.enabled = False
    execute(experiment, args.out)
    return 0


def execute(experiment: Experiment, out: str | Path | None) -> Path:
    """Run ``experiment``, write its run folder and report as one unit (the folder is
    checked and locked before the experiment runs), print the leaderboard."""
    from recforge.experiments.runner import run_experiment

    run_dir = Path(out) if out else default_run_dir(experiment.experiment.name)
    with run_output(run_dir) as folder:
        record = run_experiment(experiment, step=phase)
        with phase(f"writing {run_dir}"):
            results = write_run_files(record, folder)
        report = write_report(record, folder) if experiment.report.enabled else None
    print_leaderboard(record, results)
    console.print(f"run folder: [bold]{run_dir}[/]")
    if report is not None:
        console.print(f"report: [bold]{run_dir / report.relative_to(folder)}[/]")
    return run_dir


def write_report(record: ExperimentRecord, folder: Path) -> Path | None:
    """Write the report into ``folder`` (a run folder being written); its HTML (else
    Markdown) path, or None with a notice when `recforge.report` is not installed."""
    try:
        from recforge.report.writer import write_report_files
    except ImportError:
        console.print("[yellow]note:[/] recforge.report is not available; no report written")
        return None
    with phase("writing the report"):
        paths = write_report_files(record, folder)
    return paths.get("html") or paths.get("markdown") or next(iter(paths.values()), None)


def print_leaderboard(record: ExperimentRecord, results: dict[str, Any]) -> None:
    """One table per protocol, best first, from the run's summary."""
    for protocol, rows in results["leaderboard"].items():
        entries: list[dict[str, Any]] = [
            {"model": row["label"], "metrics": row["metrics"],
             "intervals": row.get("intervals", {}), "fit_seconds": row["fit_seconds"],
             "eval_seconds": row["eval_seconds"]} for row in rows]
        title = (f"{record.name}: {record.dataset}, {record.split.get('split', '')}, "
                 f"{protocol_label(protocol)}")
        console.print(metrics_table(entries, title=title))


def cmd_tune(args: argparse.Namespace) -> int:
    import os

    from recforge.experiments.tune import (
        Search,
        format_params,
        require_optuna,
        tune_experiment,
        write_tune_files,
    )

    experiment = load_experiment(args.experiment)
    require_optuna()
    # a worker's sampler is seeded by its process id, so concurrent workers differ
    search = Search(args.storage, args.study_name, os.getpid() if args.worker else None,
                    args.pruner)
    if args.worker:
        if args.out:
            raise ValueError("--out: a --worker writes nothing; the command without "
                             "--worker writes the result")
        tune_experiment(experiment, trials=args.trials, timeout=args.timeout, step=phase,
                        notify=console.print, search=search)
        console.print(f"worker done: study {args.study_name or experiment.experiment.name} "
                      f"in {args.storage}")
        return 0
    out = Path(args.out) if args.out else default_run_dir(f"{experiment.experiment.name}-tune")
    with run_output(out, "tune") as folder:
        result = tune_experiment(experiment, trials=args.trials, timeout=args.timeout,
                                 step=phase, notify=console.print, search=search)
        write_tune_files(result, folder)
    console.print(f"best {result.metric} on the validation split: {result.best_value:.4f} "
                  f"with {format_params(result.best_params)}")
    console.print(f"wrote {out}/best.toml, trials.csv, tune.json")
    return 0
