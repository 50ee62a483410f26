"""``recforge experiment analyze|power``: the statistics of an A/B test, and its sample size."""

from __future__ import annotations

import argparse
import json
import sqlite3
import warnings
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from recforge.cli.common import check_output_file, console, err_console
from recforge.cli.options import option_type, seed_option
from recforge.errors import InputError
from recforge.params import Integer, Real

#: the ``written_by`` of the JSON files (an existing one is replaced only if it has it)
ANALYZE = "recforge experiment analyze"
POWER = "recforge experiment power"
_probability = option_type(Real(0, 1, low_open=True, high_open=True), float)
_number = option_type(Real(), float)
_positive = option_type(Real(0, low_open=True), float)
_resamples = option_type(Integer(100, 1_000_000))


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge experiment``."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    analyze = actions.add_parser(
        "analyze", help="per-arm means, lifts with intervals, tests, CUPED, SRM check",
        description="Analyse an A/B test from a per-user file (--data) or from the exposure "
                    "and event logs (--exposures, --events, --experiment).")
    source = analyze.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="CSV/TSV/Parquet with user_id, arm and the metric")
    source.add_argument("--exposures", help="the exposure log (SQLite) of the service")
    analyze.add_argument("--events", help="the event log (SQLite), with --exposures")
    analyze.add_argument("--experiment", help="the experiment's name, with --exposures")
    analyze.add_argument("--metric", required=True,
                         help="the metric column (--data) or event type (--exposures)")
    analyze.add_argument("--pre", default=None, help="pre-period column or event type: CUPED")
    analyze.add_argument("--binary", action="store_true",
                         help="0/1 metric (with --exposures: converted = any event after "
                              "the first exposure); adds the two-proportion z-test")
    analyze.add_argument("--control", default=None, help="control arm (default 'control')")
    analyze.add_argument("--bootstrap", type=_resamples, default=0, metavar="N",
                         help="add a percentile bootstrap with N resamples (needs --seed)")
    analyze.add_argument("--seed", type=seed_option, default=None)
    analyze.add_argument("--alpha", type=_probability, default=0.05)
    analyze.add_argument("--expected-split", default=None, metavar="A:B[:...]",
                         help="expected users per arm, arms in sorted order (or "
                              "arm=w,arm=w); default equal")
    analyze.add_argument("--srm-alpha", type=_probability, default=0.001,
                         help="p-value below which the sample ratio is a mismatch")
    analyze.add_argument("--json", default=None, help="write the result here")
    analyze.set_defaults(func=cmd_analyze)
    power = actions.add_parser(
        "power", help="users per arm to detect an effect (proportions or means)",
        description="Sample size of a two-arm test: --baseline for a proportion (z-test), "
                    "--sd for a mean (t-test); --mde is the absolute difference.")
    kind = power.add_mutually_exclusive_group(required=True)
    kind.add_argument("--baseline", type=_probability, help="control conversion rate")
    kind.add_argument("--sd", type=_positive, help="standard deviation of the metric")
    power.add_argument("--mde", type=_number, required=True,
                       help="minimum detectable (absolute) difference")
    power.add_argument("--alpha", type=_probability, default=0.05)
    power.add_argument("--power", type=_probability, default=0.8)
    power.add_argument("--ratio", type=_positive, default=1.0,
                       help="users of arm 2 per user of arm 1")
    power.add_argument("--json", default=None, help="write the result here")
    power.set_defaults(func=cmd_power)


def cmd_analyze(args: argparse.Namespace) -> int:
    from recforge.abtest.analysis import SampleRatioMismatchWarning, analyze

    if args.json:
        check_output_file(args.json, "--json")
    table, info = _load(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SampleRatioMismatchWarning)
        result = analyze(table, control=args.control, binary=args.binary, alpha=args.alpha,
                         bootstrap_resamples=args.bootstrap, seed=args.seed,
                         expected_split=_split(args.expected_split, table),
                         srm_alpha=args.srm_alpha)
    record = {"metric": args.metric, "pre": args.pre, **info, **result}
    _print_analysis(record)
    for w in caught:
        err_console.print(f"[bold red]WARNING: {escape(str(w.message))}[/]", soft_wrap=True)
    _write_json(args.json, ANALYZE, record)
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The per-user table from ``--data`` or from the logs."""
    from recforge.abtest import data

    if args.data is not None:
        for option in ("events", "experiment"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option} goes with --exposures, not --data")
        return data.from_file(args.data, args.metric, args.pre)
    for option in ("events", "experiment"):
        if getattr(args, option) is None:
            raise InputError(f"--exposures needs --{option}")
    from recforge.abtest.exposure import ExposureLog
    from recforge.serving.events import EventLog

    _check_event_log(Path(args.events))
    with ExposureLog(args.exposures, readonly=True) as exposures, EventLog(args.events) as events:
        return data.from_logs(exposures, events, args.experiment, args.metric, pre=args.pre,
                              binary=args.binary)


def _check_event_log(path: Path) -> None:
    """Refuse an ``--events`` path that is not an existing event log (opening one would
    create it, or add a table to another database)."""
    if not path.is_file():
        raise InputError(f"--events {path}: no such file")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
                               "'event_log'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"--events {path}: not a SQLite database ({exc})") from None
    if found is None:
        raise InputError(f"--events {path}: the database holds no event log")


def _split(text: str | None, table: Any) -> dict[str, float] | None:
    """``--expected-split``: ``a:b[:c]`` (weights of the arms in sorted order) or
    ``arm=w,arm=w``."""
    if text is None:
        return None
    arms = sorted(set(table["arm"]))
    try:
        if "=" in text:
            pairs = [(name.strip(), float(weight))
                     for name, weight in (part.split("=", 1) for part in text.split(","))]
        else:
            weights = [float(weight) for weight in text.split(":")]
    except ValueError:
        raise InputError(f"--expected-split expects weights like 50:50 or "
                         f"control=1,treatment=1, got {text!r}") from None
    if "=" not in text:
        if len(weights) != len(arms):
            raise InputError(f"--expected-split gives {len(weights)} weights, the data has "
                             f"{len(arms)} arms ({', '.join(arms)})")
        pairs = list(zip(arms, weights))
    split = dict(pairs)
    if len(split) != len(pairs):
        raise InputError(f"--expected-split names an arm twice: {text!r}")
    return split


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _ci(pair: list[float | None]) -> str:
    return f"[{_fmt(pair[0])}, {_fmt(pair[1])}]"


def _print_analysis(record: dict[str, Any]) -> None:
    arms = Table(title=f"Arms ({escape(record['metric'])}; * control)")
    for column in ("arm", "users", "mean", "sd", *(["pre mean"] if record["pre"] else [])):
        arms.add_column(column, justify="left" if column == "arm" else "right")
    for name, arm in record["arms"].items():
        label = f"{escape(name)} *" if name == record["control"] else escape(name)
        pre = [_fmt(arm["pre_mean"])] if record["pre"] else []
        arms.add_row(label, f"{arm['n']:,}", _fmt(arm["mean"]), _fmt(arm["sd"]), *pre)
    console.print(arms)
    level = f"{100 * (1 - record['alpha']):g}%"
    table = Table(title=f"Each arm vs {escape(record['control'])} ({level} intervals)")
    for column in ("treatment", "test", "lift [interval]", "relative [interval]", "p"):
        table.add_column(column, justify="left" if column in ("treatment", "test") else "right")
    for comp in record["comparisons"]:
        for test, diff, ci, rel, p in _rows(comp):
            table.add_row(escape(comp["treatment"]), test, f"{_fmt(diff)} {_ci(ci)}",
                          f"{_fmt(rel['lift'])} {_ci(rel['ci'])}" if rel else "-", _fmt(p))
    console.print(table)
    if "cuped" in record:
        console.print(f"CUPED: theta {record['cuped']['theta']:.4g}, variance reduced by "
                      f"{100 * (record['cuped']['variance_reduction'] or 0):.1f}%")
    srm = record["srm"]
    colour = "bold red" if srm["mismatch"] else "green"
    console.print(f"sample ratio: chi-square {srm['chi2']:.3g}, p = {srm['p']:.3g} "
                  f"[{colour}]{'MISMATCH' if srm['mismatch'] else 'ok'}[/]")


def _rows(comp: dict[str, Any]) -> list[tuple[str, Any, Any, Any, Any]]:
    """(test, lift, interval, relative, p) per test of one comparison."""
    welch = comp["welch"]
    rows = [("Welch t", welch["diff"], welch["ci"], comp["relative"], welch["p"])]
    if "ztest" in comp:
        z = comp["ztest"]
        rows.append(("z (2 prop.)", z["diff"], z["ci"], None, z["p"]))
    if "bootstrap" in comp:
        boot = comp["bootstrap"]
        rows.append((f"bootstrap ({boot['n_resamples']:,})", welch["diff"], boot["diff_ci"],
                     {"lift": comp["relative"]["lift"], "ci": boot["relative_ci"]}, None))
    if "cuped" in comp:
        cw = comp["cuped"]["welch"]
        rows.append(("CUPED Welch", cw["diff"], cw["ci"], comp["cuped"]["relative"], cw["p"]))
    return rows


def cmd_power(args: argparse.Namespace) -> int:
    from recforge.abtest.analysis import sample_size_means, sample_size_proportions

    if args.json:
        check_output_file(args.json, "--json")
    design = {"alpha": args.alpha, "power": args.power, "ratio": args.ratio}
    if args.baseline is not None:
        result = sample_size_proportions(args.baseline, args.mde, **design)
    else:
        result = sample_size_means(args.mde, args.sd, **design)
    console.print(f"{result['kind']}: effect size {result['effect_size']:.4g}; users needed "
                  f"at alpha {args.alpha:g}, power {args.power:g}: arm 1 "
                  f"{result['n1_users']:,}, arm 2 {result['n2_users']:,}, total "
                  f"{result['total_users']:,}", soft_wrap=True)
    _write_json(args.json, POWER, result)
    return 0


def _write_json(path: str | None, writer: str, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (replacing only a file this command wrote)."""
    if not path:
        return
    from recforge.io import atomic_path, json_default, json_written_by

    with atomic_path(path, owned=lambda p: json_written_by(p, writer)) as tmp:
        tmp.write_text(json.dumps({"written_by": writer, **record}, indent=2,
                                  default=json_default))
    console.print(f"wrote {escape(path)}")
