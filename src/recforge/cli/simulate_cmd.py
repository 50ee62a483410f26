"""``recforge simulate``: bandit policies in a simulator built from a rating dataset
(`recforge.bandits.simulator`), several seeds each; per policy the mean and spread of the
cumulative reward and regret, written as JSON with regret and reward curve figures (PNG).

Every run ``i`` of ``--seeds K`` uses seed ``--seed + i`` for the arrivals, the clicks and
the policy; the simulated world (its reward model) is built once with ``--seed``. Policies are
updated every ``--batch`` rounds (1: after every round)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from recforge.cli.common import check_output_file, console, parse_value, phase
from recforge.cli.options import option_type, positive_int, seed_option
from recforge.errors import InputError, OutputExistsError
from recforge.io import atomic_path, json_written_by, read_json
from recforge.params import Integer, Real

SIMULATE = "recforge simulate"
DEFAULT_POLICIES = "random,epsilon-greedy,ucb1,thompson,linucb,lin-ts"


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of ``recforge simulate``."""
    parser.add_argument("--dataset", default="ml-100k",
                        help="a registered rating dataset or a rating file (with --columns)")
    parser.add_argument("--columns", default=None,
                        help="for a file: field=column pairs, e.g. user=userId,item=movieId")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    parser.add_argument("--no-download", action="store_true")
    parser.add_argument("--policies", default=DEFAULT_POLICIES,
                        help="comma-separated: random, epsilon-greedy, decaying-epsilon-greedy, "
                             "ucb1, thompson, gaussian-thompson, linucb, lin-ts")
    parser.add_argument("--rounds", type=positive_int, default=10_000)
    parser.add_argument("--seeds", type=option_type(Integer(1, 1000)), default=1,
                        help="runs per policy (seeds --seed, --seed+1, ...)")
    parser.add_argument("--seed", type=seed_option, default=0)
    parser.add_argument("--batch", type=option_type(Integer(1, 1_000_000)), default=10,
                        help="rounds between policy updates")
    parser.add_argument("--arms", type=positive_int, default=50,
                        help="the most rated items that are the arms")
    parser.add_argument("--slate-size", type=option_type(Integer(1, 1000)), default=1)
    parser.add_argument("--position-bias", type=option_type(Real(0), float), default=1.0,
                        help="slot j is examined with probability (j+1)^-bias")
    parser.add_argument("--param", action="append", default=[], metavar="POLICY.NAME=VALUE",
                        help="a policy hyperparameter, e.g. linucb.alpha=0.5 (repeatable)")
    parser.add_argument("--json", required=True, help="file to write the results to")
    parser.add_argument("--figures", default=None, metavar="PREFIX",
                        help="figure path prefix (default: --json without .json); writes "
                             "PREFIX-regret.png and PREFIX-reward.png")
    parser.set_defaults(func=cmd_simulate)


def parse_policy_params(pairs: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``["linucb.alpha=0.5"]`` -> ``{"linucb": {"alpha": 0.5}}`` (policies in ``names``)."""
    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        policy, dot, param = key.strip().partition(".")
        if not sep or not dot or not param:
            raise InputError(f"--param expects POLICY.NAME=VALUE, got {pair!r}")
        if policy not in out:
            raise InputError(f"--param {key}: {policy!r} is not in --policies")
        out[policy][param.replace("-", "_")] = parse_value(value)
    return out


def _figure_paths(args: argparse.Namespace) -> dict[str, Path]:
    prefix = args.figures or str(Path(args.json).with_suffix(""))
    return {what: Path(f"{prefix}-{what}.png") for what in ("regret", "reward")}


def _previous_figures(path: str) -> set[str]:
    """Figures listed by an earlier ``recforge simulate`` JSON at ``path`` (replaceable)."""
    file = Path(path)
    if not file.is_file() or not json_written_by(file, SIMULATE):
        return set()
    return {str(Path(p).resolve()) for p in read_json(file).get("figures", {}).values()}


def cmd_simulate(args: argparse.Namespace) -> int:
    from recforge.bandits.simulator import Simulator, make_policy, plot_curves, summarise
    from recforge.data.readers import parse_column_spec
    from recforge.experiments.steps import load_data

    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise InputError(f"--policies must name distinct policies, got {args.policies!r}")
    params = parse_policy_params(args.param, names)
    for name in names:  # every name and hyperparameter checked before the data is loaded
        make_policy(name, 2, 2, args.seed, params[name])
    check_output_file(args.json, "--json")
    figures = _figure_paths(args)
    owned = _previous_figures(args.json)
    for path in figures.values():
        check_output_file(str(path), "--figures")
        if path.exists() and str(path.resolve()) not in owned:
            raise OutputExistsError(f"{path} exists and was not written by recforge simulate; "
                                    "refusing to replace it (choose another --figures prefix)")
    columns = parse_column_spec(args.columns) if args.columns else None
    data = load_data(args.dataset, columns=columns, data_dir=args.data_dir,
                     download=not args.no_download)
    with phase("building the simulator"):
        sim = Simulator.from_interactions(data, n_arms=args.arms, slate_size=args.slate_size,
                                          position_bias=args.position_bias, seed=args.seed)
    summaries = {}
    for name in names:
        with phase(f"{name}: {args.seeds} x {args.rounds:,} rounds"):
            runs = [sim.run(make_policy(name, sim.n_arms, sim.dim, seed, params[name]),
                            args.rounds, args.batch, seed, name)
                    for seed in range(args.seed, args.seed + args.seeds)]
        summaries[name] = summarise(runs)
        s = summaries[name]
        console.print(f"{name}: cumulative reward {s['cumulative_reward']['mean']:,.1f} "
                      f"± {s['cumulative_reward']['std']:,.1f}, regret "
                      f"{s['cumulative_regret']['mean']:,.1f} ± "
                      f"{s['cumulative_regret']['std']:,.1f}")
    for what, path in figures.items():
        with atomic_path(path) as tmp:
            plot_curves(summaries, tmp, what)
    record = {"written_by": SIMULATE, "dataset": args.dataset, "rounds": args.rounds,
              "seeds": args.seeds, "seed": args.seed, "batch": args.batch,
              "n_arms": sim.n_arms, "slate_size": sim.slate_size,
              "position_bias": args.position_bias, "params": params,
              "world": {"best_slate_value": float(sim.arrival @ sim.best),
                        "best_fixed_arm_like_probability": float((sim.arrival @ sim.truth).max())},
              "policies": summaries, "figures": {k: str(v) for k, v in figures.items()}}
    with atomic_path(args.json, owned=lambda path: json_written_by(path, SIMULATE)) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    console.print(f"wrote {args.json}, {figures['regret']} and {figures['reward']}")
    return 0
