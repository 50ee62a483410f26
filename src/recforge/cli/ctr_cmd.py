"""``recforge evaluate --format libfm|criteo|events``: a click model on any CTR file.

The file is read as `Events` (`read_libfm`, `read_criteo`, or `Events.read` with the label
column ``--label``) and cut into train / validation / test parts: with ``--test FILE`` (and
``--valid FILE``) the published split, the extra files read with the training file's field
ranges (``CTRData.ranges``) so that an index means the same field in each; without
``--valid`` the training file gives a tenth of its rows to validation. Without ``--test``,
`recforge.evaluation.ctr.split_parts`: 80/10/10, in time order when the events have
timestamps, else a random split seeded by ``--seed``. The validation part stops training
early. Field boundaries of a libFM file are inferred unless ``--fields 0:943,943:2625,2625:``
gives them (half-open ranges; an empty stop means no upper bound).

The model gets the file's field declarations (``fields``) and, for anonymous rows (libFM,
Criteo), no history (``history_length=0``) unless ``--param`` sets them.

The other choices of ``--format`` (``sequence``, ``sessions``, ``adjacency``:
`recforge.data.seq_formats`) are interaction files, evaluated by `recforge.cli.evaluate_cmd`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.cli.common import check_output_file, console, metrics_table, parse_params, phase
from recforge.data.events import Events
from recforge.data.interactions import IdMap
from recforge.data.readers import parse_column_spec
from recforge.data.seq_formats import FORMATS as INTERACTION_FORMATS
from recforge.errors import InputError, UnknownNameError
from recforge.evaluation.ctr import (
    CTR_METRICS,
    DEFAULT_METRICS,
    check_click_model,
    check_ctr_metrics,
    evaluate_clicks,
    split_parts,
)
from recforge.experiments.steps import build_model
from recforge.io import atomic_path, json_written_by

FORMATS = ("libfm", "criteo", "events")
#: the validation share of the training file when only ``--test`` is given
VALID_SHARE = 0.1
#: the options of the interaction-data path that a CTR file does not take
_NOT_FOR_CTR = {"ties": "--ties", "rating_range": "--rating-range",
                "test_fraction": "--test-fraction"}
#: the options only a CTR file takes
_CTR_ONLY = ("label", "test", "valid", "fields")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The CTR options of ``recforge evaluate``."""
    parser.add_argument("--format", default=None, choices=(*FORMATS, *INTERACTION_FORMATS),
                        help="read --dataset as a CTR file: libfm, criteo (TSV) or events "
                             "(CSV/Parquet with --label), metrics auc, logloss, gauc, "
                             "calibration; or as interactions in a published format: "
                             "sequence, sessions or adjacency (see below)")
    parser.add_argument("--label", default=None,
                        help="--format events: the 0/1 label column (required)")
    parser.add_argument("--test", default=None, metavar="FILE",
                        help="the published test part, a file of --dataset's format, used as "
                             "it is (no re-splitting)")
    parser.add_argument("--valid", default=None, metavar="FILE",
                        help="a CTR file holding the published validation part (with --test)")
    parser.add_argument("--fields", default=None, metavar="START:STOP,...",
                        help="--format libfm: the fields' index ranges, e.g. 0:943,943:2625,2625:")


def check_ctr_options(args: argparse.Namespace) -> None:
    """Refuse CTR options without a CTR ``--format`` (``--test`` also takes an interaction
    format) and interaction options with one."""
    if args.format not in FORMATS:
        given = [f"--{name}" for name in _CTR_ONLY if getattr(args, name) is not None
                 and not (name == "test" and args.format in INTERACTION_FORMATS)]
        if given and args.format is not None:
            raise InputError(f"{given[0]} applies to CTR files (--format {', '.join(FORMATS)}), "
                             f"not to --format {args.format}")
        if given:
            test = given[0] == "--test"
            also = f" and to --format {', '.join(INTERACTION_FORMATS)}" if test else ""
            formats = (*FORMATS, *INTERACTION_FORMATS) if test else FORMATS
            raise InputError(f"{given[0]} applies to CTR files{also}: add --format (one of "
                             f"{', '.join(formats)})")
        return
    for name, option in _NOT_FOR_CTR.items():
        if getattr(args, name) is not None:
            raise InputError(f"{option} does not apply to --format {args.format}")
    if args.split is not None or args.protocol is not None:
        raise InputError(f"--split and --protocol do not apply to --format {args.format} (the "
                         "parts are --test/--valid files, a time split or a seeded random one)")
    if args.columns is not None and args.format != "events":
        raise InputError(f"--columns applies to --format events, not {args.format}")
    if args.fields is not None and args.format != "libfm":
        raise InputError(f"--fields applies to --format libfm, not {args.format}")
    if (args.label is None) == (args.format == "events"):
        raise InputError("--format events needs --label COLUMN" if args.label is None else
                         f"--label applies to --format events (a {args.format} file's label "
                         "is its first column)")
    if args.valid is not None and args.test is None:
        raise InputError("--valid needs --test (a published split gives both)")


def parse_fields(text: str) -> list[tuple[int, int | None]]:
    """``--fields 0:943,943:2625,2625:`` as half-open ranges (an empty stop: unbounded);
    their order and overlaps are checked by `read_libfm`."""
    ranges = []
    for part in text.split(","):
        start, sep, stop = (s.strip() for s in part.partition(":"))
        try:
            if not sep:
                raise ValueError
            ranges.append((int(start), int(stop) if stop else None))
        except ValueError:
            raise InputError(f"--fields expects START:STOP ranges separated by commas (e.g. "
                             f"0:943,943:2625,2625:), got {part.strip()!r} in {text!r}") from None
    return ranges


def check_click_metrics(text: str) -> list[str]:
    """``--metrics`` for a CTR file: click metrics only (a ranking metric is named as one)."""
    from recforge.evaluation.metrics import parse_metric

    names = [m.strip() for m in text.split(",") if m.strip()]
    try:
        return check_ctr_metrics(names)
    except UnknownNameError:
        ranking = []
        for name in (n for n in names if n.lower() not in CTR_METRICS):
            try:
                parse_metric(name)
                ranking.append(name)
            except ValueError:
                pass
        if ranking:
            raise InputError(f"--metrics {ranking[0]} is a ranking metric; a CTR file takes "
                             "auc, logloss, gauc, calibration") from None
        raise


# ---------------------------------------------------------------------- reading
def _read(args: argparse.Namespace, path: str, ranges: Any = None) -> tuple[Events, Any, Any]:
    """One file as (events, field declarations or None, libFM ranges or None)."""
    from recforge.data.ctr_formats import read_criteo, read_libfm

    if args.format == "libfm":
        data = read_libfm(path, fields=ranges)
        return data.events, data.fields, data.ranges
    if args.format == "criteo":
        data = read_criteo(path)
        return data.events, data.fields, None
    columns = parse_column_spec(args.columns) if args.columns else {}
    if "rating" in columns:
        raise InputError("--columns rating= does not apply to --format events (use --label)")
    events = Events.read(path, [args.label], user=columns.get("user", "user"),
                         item=columns.get("item", "item"), timestamp=columns.get("timestamp"))
    return events, None, None


def _same_ids(parts: list[Events]) -> list[Events]:
    """Events files read apart, re-indexed over one user map and one item map."""
    users, u = IdMap.from_values(np.concatenate([p.user_map.ids[p.users] for p in parts]))
    items, i = IdMap.from_values(np.concatenate([p.item_map.ids[p.items] for p in parts]))
    timed = all(p.timestamps is not None for p in parts)
    label = next(iter(parts[0].labels))
    whole = Events(u, i, user_map=users, item_map=items,
                   labels={label: np.concatenate([p.label(label) for p in parts])},
                   timestamps=np.concatenate([p.timestamps for p in parts]) if timed else None,
                   context=pd.concat([p.context for p in parts], ignore_index=True),
                   name=parts[0].name)
    cuts = np.cumsum([0, *(len(p) for p in parts)])
    return [whole.subset(np.arange(lo, hi)) for lo, hi in itertools.pairwise(cuts)]


def load_parts(args: argparse.Namespace) -> tuple[tuple[Events, ...], Any, str]:
    """(train, valid, test), the field declarations (None: the model's defaults) and how the
    parts were made."""
    ranges = parse_fields(args.fields) if args.fields else None
    events, fields, ranges = _read(args, args.dataset, ranges)
    if args.test is None:
        parts, how = split_parts(events, seed=args.seed)
        return parts, fields, how
    extra = [_read(args, path, ranges)[0] for path in (args.valid, args.test) if path]
    if args.valid is None:
        (train, valid), how = split_parts(events, (1 - VALID_SHARE, VALID_SHARE), args.seed)
        read = [train, valid, *extra]
        how = f"test file; validation {how} {VALID_SHARE:.0%} of the training file"
    else:
        read, how = [events, *extra], "files"
    if args.format == "events":
        read = _same_ids(read)
    return tuple(read), fields, how


# ---------------------------------------------------------------------- the command
def cmd_evaluate_ctr(args: argparse.Namespace, json_by: str) -> int:
    """Fit a click model on a CTR file's parts and print (and write) the test metrics."""
    check_ctr_options(args)
    params = parse_params(args.param)
    model = build_model(args.model, params, args.seed)
    check_click_model(model)
    metrics = check_click_metrics(",".join(DEFAULT_METRICS) if args.metrics is None
                                  else args.metrics)
    if args.json:
        check_output_file(args.json, "--json")
    with phase(f"reading {args.dataset} ({args.format})"):
        parts, fields, how = load_parts(args)
    defaults: dict[str, Any] = {}
    if fields is not None:
        defaults = {"fields": [dataclasses.asdict(f) for f in fields], "history_length": 0}
    model.set_params(**{k: v for k, v in defaults.items() if k not in params})
    with phase(f"fitting and evaluating {args.model}"):
        result = evaluate_clicks(model, parts[0], parts[2], parts[1], metrics=metrics,
                                 label=args.label)
    record = {"model": model.name, "dataset": args.dataset, "format": args.format,
              "split": how, "seed": args.seed, "label": result["label"],
              "rows": dict(zip(("train", "valid", "test"), map(len, parts))),
              "test_users": result["users"], "gauc_users": result["gauc_users"],
              "best_epoch": result["best_epoch"], "params": params,
              "metrics": result["metrics"], "fit_seconds": result["fit_seconds"],
              "eval_seconds": result["eval_seconds"]}
    console.print(metrics_table([record], title=f"{Path(args.dataset).name} / {how} split"))
    console.print(f"test: {len(parts[2])} rows, {result['users']} users "
                  f"({result['gauc_users']} with both classes)")
    if args.json:
        with atomic_path(args.json, owned=lambda path: json_written_by(path, json_by)) as tmp:
            tmp.write_text(json.dumps({"written_by": json_by, **record}, indent=2))
        console.print(f"wrote {args.json}")
    return 0
