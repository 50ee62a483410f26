"""A/B assignment throughput: users per second through `Assigner.assign` (global holdout,
two layers, three experiments: four SHA-256 hashes per user), the bare `unit_hash`, and the
exposure log's append rate (one row per call, as the service logs one request at a time, and
batches of 100), on one thread.

    .venv/bin/python benchmarks/abtest_assign.py --users 200000 --json benchmarks/results/abtest_assign.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from recforge.abtest.assignment import Assigner, unit_hash
from recforge.abtest.exposure import Exposure, ExposureLog

CONFIG = {
    "holdout": 0.05,
    "experiments": [
        {"name": "ranker", "layer": "ranking", "arms": {"control": 0.3, "treatment": 0.3}},
        {"name": "reranker", "layer": "ranking", "arms": {"control": 0.2, "mmr": 0.2}},
        {"name": "ui", "layer": "page", "arms": {"control": 0.5, "cards": 0.5}},
    ]}


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def time_assign(users: list[str]) -> dict[str, float]:
    assigner = Assigner.from_config(CONFIG)
    start = time.perf_counter()
    for user in users:
        assigner.assign(user)
    assign_s = time.perf_counter() - start
    start = time.perf_counter()
    for user in users:
        unit_hash("salt", user)
    hash_s = time.perf_counter() - start
    return {"assign_users_per_s": rate(len(users), assign_s),
            "assign_us_per_user": round(1e6 * assign_s / len(users), 2),
            "unit_hash_per_s": rate(len(users), hash_s)}


def time_exposure_log(rows: int) -> dict[str, float]:
    batch = [Exposure(f"u{i}", "ranker", "control", request_id=f"r{i}",
                      items=tuple(str(j) for j in range(10))) for i in range(rows)]
    with tempfile.TemporaryDirectory() as folder, ExposureLog(Path(folder) / "x.db") as log:
        start = time.perf_counter()
        for row in batch:
            log.log([row])
        single_s = time.perf_counter() - start
        start = time.perf_counter()
        for lo in range(0, rows, 100):
            log.log(batch[lo:lo + 100])
        batched_s = time.perf_counter() - start
    return {"exposure_rows_per_s_single": rate(rows, single_s),
            "exposure_rows_per_s_batch100": rate(rows, batched_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--log-rows", type=int, default=5_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    users = [str(i) for i in range(args.users)]
    result = {"users": args.users, "log_rows": args.log_rows, **time_assign(users),
              **time_exposure_log(args.log_rows), "python": platform.python_version()}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
